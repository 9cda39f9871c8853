#!/usr/bin/env bash
# Create .venv/ and install scripts/requirements.txt into it.
# Idempotent: a no-op when .venv/.pollen-stamp matches the fingerprint of
# requirements.txt and node-requirements.txt (which it includes) plus the interpreter's version.
# POLLEN_PYTHON picks the interpreter that creates the venv (default: python3).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PY="${POLLEN_PYTHON:-python3}"
VENV="$REPO_ROOT/.venv"
REQS="$REPO_ROOT/scripts/requirements.txt"
NODE_REQS="$REPO_ROOT/scripts/node-requirements.txt" # included by requirements.txt (-r)
STAMP="$VENV/.pollen-stamp"
# Flower phones home unless told not to: telemetry events (telemetry.flower.ai)
# and, in flwr/flower-superlink/flower-supernode/flower-superexec (even before
# parsing --help), an update check POSTed to api.flower.ai. Turn both off.
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1

command -v "$PY" >/dev/null 2>&1 ||
  die "'$PY' not found on PATH; install Python 3.11+ (or set POLLEN_PYTHON to one) and re-run"

pyversion() { "$1" -c 'import platform; print(platform.python_implementation(), platform.python_version())'; }

py_ver="$(pyversion "$PY")" || die "'$PY' does not run"
want="$(fingerprint "$REQS" "$NODE_REQS") $py_ver"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(<"$STAMP")" == "$want" ]]; then
  step "Python venv is up to date (.venv, $py_ver)"
  exit 0
fi

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "$PY is $py_ver; Pollen needs Python >= 3.11 (set POLLEN_PYTHON to a newer one)"

# Recreate the venv when it is missing, broken, or made by another interpreter.
if [[ ! -x "$VENV/bin/python" ]] || [[ "$(pyversion "$VENV/bin/python" 2>/dev/null)" != "$py_ver" ]]; then
  step "creating .venv with $PY ($py_ver)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV" ||
    die "'$PY -m venv' failed (on Debian/Ubuntu system Python: apt-get install python3-venv)"
fi
rm -f "$STAMP"

step "installing scripts/requirements.txt into .venv (first time takes a few minutes)"
pip_args=(--disable-pip-version-check)
[[ -t 1 ]] || pip_args+=(--progress-bar off) # keep CI logs free of progress bars
"$VENV/bin/python" -m pip install "${pip_args[@]}" -r "$REQS"

step "checking the venv"
"$VENV/bin/python" -c 'import flwr, numpy, sklearn' || die "import flwr, numpy, sklearn failed in .venv"
for cmd in flower-superlink flwr; do
  "$VENV/bin/$cmd" --help >/dev/null || die ".venv/bin/$cmd --help failed"
done

printf '%s\n' "$want" >"$STAMP.tmp" && mv -f "$STAMP.tmp" "$STAMP"
step "Python venv ready (.venv, $py_ver)"
