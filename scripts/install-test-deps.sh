#!/usr/bin/env bash
# Install the system packages the tests need (Debian/Ubuntu): chromium for the
# browser tests, at /usr/bin/chromium. A quick no-op when already present.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if command -v chromium >/dev/null 2>&1; then
  step "chromium is installed ($(command -v chromium))"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  die "chromium is missing and installing it needs root: run 'sudo bash scripts/install-test-deps.sh'"
fi
command -v apt-get >/dev/null 2>&1 ||
  die "chromium is missing and apt-get is not available; install chromium with your package manager"

step "installing chromium with apt-get (takes a few minutes)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium
command -v chromium >/dev/null 2>&1 || die "apt-get install chromium did not provide a 'chromium' command"
step "chromium installed: $(chromium --version 2>/dev/null || echo "$(command -v chromium)")"
