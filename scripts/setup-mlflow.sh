#!/usr/bin/env bash
# Install `mlflow` (scripts/mlflow-requirements.txt) from PyPI into a venv of its own, for the tests:
# test/mlflow.test.ts starts `mlflow server` from it on loopback and has Pollen mirror jobs into it.
# Idempotent: a no-op when the venv's stamp matches mlflow-requirements.txt and the interpreter.
#   POLLEN_MLFLOW_VENV  where the venv goes (default .tools/mlflow-venv; the test looks there too)
#   POLLEN_PYTHON       the interpreter that creates it (default python3)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PY="${POLLEN_PYTHON:-python3}"
VENV="${POLLEN_MLFLOW_VENV:-$REPO_ROOT/.tools/mlflow-venv}"
REQS="$REPO_ROOT/scripts/mlflow-requirements.txt"
# MLflow reports usage unless told not to; nothing here may leave the machine.
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

want="$(fingerprint "$REQS") $(pyversion "$PY")"
if venv_current "$VENV" "$want"; then
  step "MLflow venv is up to date ($VENV)"
  exit 0
fi

step "installing scripts/mlflow-requirements.txt into $VENV (first time takes a few minutes)"
install_venv "$VENV" "$PY" "$REQS"
"$VENV/bin/mlflow" --version >/dev/null || die "$VENV/bin/mlflow --version failed"
stamp_venv "$VENV" "$want"
step "MLflow venv ready ($VENV)"
