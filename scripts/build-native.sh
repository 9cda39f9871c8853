#!/usr/bin/env bash
# Build Pollen's native helpers from src/runner/native/ into .tools/lib/ (needs a C compiler).
# Idempotent: a library is rebuilt only when its source is newer.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC="$REPO_ROOT/src/runner/native/loopback_bind.c"
OUT="$REPO_ROOT/.tools/lib/libpollen-loopback.so"
if [[ -f "$OUT" && "$OUT" -nt "$SRC" ]]; then
  step "native helpers are up to date (.tools/lib)"
  exit 0
fi
command -v cc >/dev/null 2>&1 || die "no C compiler (cc) on PATH: install gcc (Debian: apt-get install gcc) and re-run"
mkdir -p "$(dirname "$OUT")"
cc -shared -fPIC -O2 -Wall -Werror -o "$OUT.tmp" "$SRC" -ldl
mv "$OUT.tmp" "$OUT"
step "built .tools/lib/libpollen-loopback.so"
