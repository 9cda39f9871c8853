#!/usr/bin/env bash
# Build the embedded FerretDB wrapper (scripts/ferretdb) into .tools/bin/ferretdb, from the
# FerretDB module of the Go module proxy with Pollen's patch applied (scripts/ferretdb/ferretdb.patch,
# see scripts/ferretdb/README.md): the module is copied to .tools/ferretdb-src/FerretDB, patched
# there, and the build uses that copy through a `replace` in a generated go.mod beside it.
#   scripts/build-ferretdb.sh          build (a no-op when .tools/ferretdb.stamp matches the inputs)
#   scripts/build-ferretdb.sh --test   also run the patch's Go tests in the patched copy
# Idempotent: the copy is made afresh each time it is built, so the patch always meets the
# pristine module.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

with_test=0
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

SRC="$REPO_ROOT/scripts/ferretdb"
BIN_DIR="$REPO_ROOT/.tools/bin"
BIN="$BIN_DIR/ferretdb"
STAMP="$REPO_ROOT/.tools/ferretdb.stamp"
WORK="$REPO_ROOT/.tools/ferretdb-src"
MODULE=github.com/FerretDB/FerretDB

command -v go >/dev/null 2>&1 ||
  die "'go' not found on PATH; install Go >= 1.24 (https://go.dev/doc/install) and re-run"
command -v patch >/dev/null 2>&1 || die "'patch' not found on PATH; install it (Debian: apt-get install patch)"

# GOTOOLCHAIN=local: fail clearly on a too-old Go instead of downloading one.
# CGO_ENABLED=0: the SQLite backend is pure Go (modernc.org/sqlite); no C compiler needed.
export GOTOOLCHAIN=local CGO_ENABLED=0

want="$(fingerprint "$SRC/main.go" "$SRC/go.mod" "$SRC/go.sum" "$SRC/ferretdb.patch" "${BASH_SOURCE[0]}")"
if [[ -x "$BIN" && -f "$STAMP" && "$(<"$STAMP")" == "$want" && -d "$WORK/FerretDB" ]]; then
  step "FerretDB is up to date (.tools/bin/ferretdb)"
else
  version="$(awk -v m="$MODULE" '{ for (i = 1; i < NF; i++) if ($i == m) { print $(i + 1); exit } }' "$SRC/go.mod")"
  step "building FerretDB ${version:-?} with Pollen's patch, $(go env GOVERSION) (first time takes ~2-3 min)"

  # The module as the proxy serves it (checked against go.sum), copied out of the read-only cache.
  pristine="$(cd "$SRC" && go mod download -json "$MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$pristine" ]] || die "could not download $MODULE $version"
  rm -rf "$WORK"
  mkdir -p "$WORK"
  cp -R "$pristine" "$WORK/FerretDB"
  chmod -R u+w "$WORK/FerretDB"
  patch --quiet --directory="$WORK/FerretDB" --strip=1 --forward <"$SRC/ferretdb.patch" ||
    die "scripts/ferretdb/ferretdb.patch does not apply to $MODULE $version"

  # go.mod and go.sum of the wrapper, with the module replaced by the patched copy.
  cp "$SRC/go.mod" "$SRC/go.sum" "$WORK/"
  (cd "$WORK" && go mod edit -replace "$MODULE=$WORK/FerretDB")

  mkdir -p "$BIN_DIR"
  tmp="$(mktemp "$BIN_DIR/.ferretdb.XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  (cd "$SRC" && go build -modfile="$WORK/go.mod" -trimpath -o "$tmp" .)
  chmod 0755 "$tmp"
  mv -f "$tmp" "$BIN"
  trap - EXIT
  printf '%s\n' "$want" >"$STAMP.tmp" && mv -f "$STAMP.tmp" "$STAMP"
  step "built .tools/bin/ferretdb"
fi

if (( with_test )); then
  step "testing Pollen's FerretDB patch (go test in .tools/ferretdb-src/FerretDB)"
  (cd "$WORK/FerretDB" && go test ./internal/backends/sqlite/metadata/ -run 'TestKey' -count=1)
fi
