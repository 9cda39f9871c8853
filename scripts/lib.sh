# Shared helpers for Pollen's install scripts. Source it; do not run it.
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# After sourcing, REPO_ROOT is the absolute path of the repository root.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"

# step MESSAGE... — print a progress line "==> MESSAGE" to stderr.
step() {
  printf '==> %s\n' "$*" >&2
}

# die MESSAGE... — print "error: MESSAGE" to stderr and exit 1.
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# fingerprint FILE... — print one sha256 (hex) over the contents of the files,
# in the order given. Paths do not enter it, so moving the repo keeps stamps.
fingerprint() {
  local f
  for f in "$@"; do
    sha256sum <"$f" | cut -d' ' -f1
  done | sha256sum | cut -d' ' -f1
}
