#!/usr/bin/env bash
# Pollen's one-stop setup. Idempotent, and fast when everything is done.
#   scripts/setup.sh          build .tools/bin/ferretdb, .tools/lib (native helpers), the .venv (Flower) and the node wheelhouse
#   scripts/setup.sh --test   also install what the tests need: system packages, the MLflow venv
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,4s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

with_test=0
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $arg" ;;
  esac
done

SCRIPTS="$REPO_ROOT/scripts"
step "Pollen setup in $REPO_ROOT"
bash "$SCRIPTS/build-ferretdb.sh"
bash "$SCRIPTS/build-native.sh"
bash "$SCRIPTS/setup-python.sh"
bash "$SCRIPTS/prepare-wheelhouse.sh" # needs the .venv
if (( with_test )); then
  bash "$SCRIPTS/install-test-deps.sh"
  bash "$SCRIPTS/setup-mlflow.sh"
fi
step "setup done in ${SECONDS}s"
