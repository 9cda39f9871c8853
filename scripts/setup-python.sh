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
# Flower phones home unless told not to: telemetry events (telemetry.flower.ai)
# and, in flwr/flower-superlink/flower-supernode/flower-superexec (even before
# parsing --help), an update check POSTed to api.flower.ai. Turn both off.
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1

command -v "$PY" >/dev/null 2>&1 ||
  die "'$PY' not found on PATH; install Python 3.11+ (or set POLLEN_PYTHON to one) and re-run"

py_ver="$(pyversion "$PY")" || die "'$PY' does not run"
want="$(fingerprint "$REQS" "$NODE_REQS") $py_ver"
if venv_current "$VENV" "$want"; then
  step "Python venv is up to date (.venv, $py_ver)"
  exit 0
fi

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "$PY is $py_ver; Pollen needs Python >= 3.11 (set POLLEN_PYTHON to a newer one)"

step "installing scripts/requirements.txt into .venv (first time takes a few minutes)"
install_venv "$VENV" "$PY" "$REQS"

step "checking the venv"
"$VENV/bin/python" -c 'import flwr, numpy, sklearn' || die "import flwr, numpy, sklearn failed in .venv"
for cmd in flower-superlink flwr; do
  "$VENV/bin/$cmd" --help >/dev/null || die ".venv/bin/$cmd --help failed"
done

stamp_venv "$VENV" "$want"
step "Python venv ready (.venv, $py_ver)"
