// Command ferretdb runs FerretDB v1.24 on SQLite for Pollen's embedded mode, built with
// Pollen's patch (ferretdb.patch beside this file, see README.md).
//
// It binds the given address (port 0 picks a free one), prints one line
// "ready mongodb://HOST:PORT/" on stdout once it accepts connections, and exits
// cleanly on SIGINT/SIGTERM or when its stdin closes, so that it never outlives
// the Pollen process that started it (even one killed with SIGKILL).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listenAddr := flag.String("listen-addr", "127.0.0.1:0", "TCP address to listen on")
	sqliteDir := flag.String("sqlite-dir", "", "directory of the SQLite store (required)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	disablePushdown := flag.Bool("disable-pushdown", false, "evaluate every filter, sort and limit in FerretDB, none in SQLite (for tests)")
	flag.Parse()

	if *sqliteDir == "" {
		fmt.Fprintln(os.Stderr, "ferretdb: --sqlite-dir is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*sqliteDir, 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: bad --log-level: %v\n", err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// The parent holds our stdin open; EOF means it is gone.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		stop()
	}()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + *sqliteDir + "/",

		DisablePushdown: *disablePushdown,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}

	fmt.Printf("ready %s\n", f.MongoDBURI())

	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "ferretdb: %v\n", err)
		os.Exit(1)
	}
}
