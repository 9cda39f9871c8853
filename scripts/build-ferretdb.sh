#!/usr/bin/env bash
# Build the embedded FerretDB wrapper (scripts/ferretdb) into .tools/bin/ferretdb.
# Idempotent: a no-op when the binary exists and .tools/ferretdb.stamp matches
# the fingerprint of scripts/ferretdb/{main.go,go.mod,go.sum}.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC="$REPO_ROOT/scripts/ferretdb"
BIN_DIR="$REPO_ROOT/.tools/bin"
BIN="$BIN_DIR/ferretdb"
STAMP="$REPO_ROOT/.tools/ferretdb.stamp"

want="$(fingerprint "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum")"
if [[ -x "$BIN" && -f "$STAMP" && "$(<"$STAMP")" == "$want" ]]; then
  step "FerretDB is up to date (.tools/bin/ferretdb)"
  exit 0
fi

command -v go >/dev/null 2>&1 ||
  die "'go' not found on PATH; install Go >= 1.24 (https://go.dev/doc/install) and re-run"

version="$(awk '{ for (i = 1; i < NF; i++) if ($i == "github.com/FerretDB/FerretDB") { print $(i + 1); exit } }' "$SRC/go.mod")"
step "building FerretDB ${version:-?} with $(go env GOVERSION) (first time takes ~1-2 min)"

mkdir -p "$BIN_DIR"
tmp="$(mktemp "$BIN_DIR/.ferretdb.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

# GOTOOLCHAIN=local: fail clearly on a too-old Go instead of downloading one.
# CGO_ENABLED=0: the SQLite backend is pure Go (modernc.org/sqlite); no C compiler needed.
(
  cd "$SRC"
  GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -o "$tmp" .
)
chmod 0755 "$tmp"
mv -f "$tmp" "$BIN"
trap - EXIT
printf '%s\n' "$want" >"$STAMP.tmp" && mv -f "$STAMP.tmp" "$STAMP"
step "built .tools/bin/ferretdb"
