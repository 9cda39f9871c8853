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

# pyversion PYTHON — print "CPython 3.11.7": what a venv made by PYTHON runs.
pyversion() {
  "$1" -c 'import platform; print(platform.python_implementation(), platform.python_version())'
}

# venv_current VENV WANT — true when VENV has a Python and its stamp says WANT (see stamp_venv).
venv_current() {
  [[ -x "$1/bin/python" && -f "$1/.pollen-stamp" && "$(<"$1/.pollen-stamp")" == "$2" ]]
}

# install_venv VENV PYTHON REQUIREMENTS — (re)create VENV with PYTHON when it is missing, broken or
# made by another interpreter, clear its stamp, and pip-install REQUIREMENTS into it.
install_venv() {
  local venv="$1" py="$2" reqs="$3" version
  version="$(pyversion "$py")" || die "'$py' does not run"
  if [[ ! -x "$venv/bin/python" ]] || [[ "$(pyversion "$venv/bin/python" 2>/dev/null)" != "$version" ]]; then
    step "creating $venv with $py ($version)"
    rm -rf "$venv"
    "$py" -m venv "$venv" ||
      die "'$py -m venv' failed (on Debian/Ubuntu system Python: apt-get install python3-venv)"
  fi
  rm -f "$venv/.pollen-stamp"
  local pip_args=(--disable-pip-version-check)
  [[ -t 1 ]] || pip_args+=(--progress-bar off) # keep CI logs free of progress bars
  "$venv/bin/python" -m pip install "${pip_args[@]}" -r "$reqs"
}

# stamp_venv VENV WANT — mark VENV up to date with WANT, once its checks have passed.
stamp_venv() {
  printf '%s\n' "$2" >"$1/.pollen-stamp.tmp" && mv -f "$1/.pollen-stamp.tmp" "$1/.pollen-stamp"
}
