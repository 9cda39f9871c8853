#!/usr/bin/env bash
# Install the system packages the tests need (Debian/Ubuntu): Debian's chromium for the browser
# test, redis-server for the tests of several API instances, and for the remote-node tests
# (test/support/test-hosts.ts: network namespaces, each running its own sshd) iproute2,
# openssh-server and python3-venv (the node hosts build their SuperNode venv with /usr/bin/python3).
# A quick no-op when present.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Debian package -> a check that passes when what the tests use from it is there
declare -A NEEDED=(
  [chromium]='command -v chromium'
  [redis-server]='command -v redis-server'
  [iproute2]='command -v ip'
  [openssh-server]='test -x /usr/sbin/sshd'
  [python3-venv]='/usr/bin/python3 -c "import ensurepip, venv"'
)
missing=()
for package in "${!NEEDED[@]}"; do
  if eval "${NEEDED[$package]}" >/dev/null 2>&1; then
    step "$package is installed"
  else
    missing+=("$package")
  fi
done
(( ${#missing[@]} == 0 )) && exit 0

if [[ "$(id -u)" -ne 0 ]]; then
  die "${missing[*]} missing and installing needs root: run 'sudo bash scripts/install-test-deps.sh'"
fi
command -v apt-get >/dev/null 2>&1 ||
  die "${missing[*]} missing and apt-get is not available; install them with your package manager"

# The tests start their own sshd inside network namespaces. Installing openssh-server would also
# start (and enable) the system's ssh service on port 22 of this machine; Debian skips that when
# /etc/ssh/sshd_not_to_be_run exists. Only set it when we install the package ourselves, so an
# ssh service someone already runs is left alone. (Delete the file to run the system's sshd.)
if [[ " ${missing[*]} " == *" openssh-server "* ]] && ! dpkg -s openssh-server >/dev/null 2>&1; then
  mkdir -p /etc/ssh
  printf '# Written by Pollen scripts/install-test-deps.sh: keeps the system ssh service off.\n' \
    >/etc/ssh/sshd_not_to_be_run
  step "the system's ssh service stays off (/etc/ssh/sshd_not_to_be_run); tests run their own sshd"
fi

step "installing ${missing[*]} with apt-get (takes a few minutes)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
for package in "${missing[@]}"; do
  eval "${NEEDED[$package]}" >/dev/null 2>&1 || die "apt-get install $package did not provide what the tests need (${NEEDED[$package]})"
done
step "installed ${missing[*]}"
