#!/usr/bin/env bash
# Install the system packages the tests need (Debian/Ubuntu): Debian's chromium for the browser
# test, and redis-server for the tests of several API instances. A quick no-op when present.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# command -> Debian package
declare -A NEEDED=([chromium]=chromium [redis-server]=redis-server)
missing=()
for command in "${!NEEDED[@]}"; do
  if command -v "$command" >/dev/null 2>&1; then
    step "$command is installed ($(command -v "$command"))"
  else
    missing+=("${NEEDED[$command]}")
  fi
done
(( ${#missing[@]} == 0 )) && exit 0

if [[ "$(id -u)" -ne 0 ]]; then
  die "${missing[*]} missing and installing needs root: run 'sudo bash scripts/install-test-deps.sh'"
fi
command -v apt-get >/dev/null 2>&1 ||
  die "${missing[*]} missing and apt-get is not available; install them with your package manager"

step "installing ${missing[*]} with apt-get (takes a few minutes)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
for command in "${!NEEDED[@]}"; do
  command -v "$command" >/dev/null 2>&1 || die "apt-get install did not provide a '$command' command"
done
step "installed ${missing[*]}"
