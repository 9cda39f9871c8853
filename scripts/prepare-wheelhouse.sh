#!/usr/bin/env bash
# Fill .tools/wheelhouse/ with the wheels a SuperNode host needs to run Flower and Pollen's example
# apps offline (scripts/node-requirements.txt and everything it pulls in), and pack them into
# .tools/wheelhouse.tar, which src/runner/ansible/deploy-supernode.yml copies to the node hosts and
# installs there with `pip install --no-index` (the hosts need no package registry).
#
# The wheels are downloaded with the .venv's pip, so they fit hosts with the same Python minor
# version and platform as .venv (CPython 3.11, Linux x86_64 glibc here; Debian 12's /usr/bin/python3
# qualifies). Their versions are pinned to what .venv has installed (pip freeze as constraints), so
# the SuperNodes run exactly the Flower, gRPC and protobuf versions Pollen's SuperLink runs.
# Needs .venv (scripts/setup-python.sh). Idempotent: a no-op when .tools/wheelhouse/.pollen-stamp
# matches node-requirements.txt, this script, the .venv's stamp and the Python/platform tag.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VENV_PY="$REPO_ROOT/.venv/bin/python"
REQS="$REPO_ROOT/scripts/node-requirements.txt"
TOOLS="$REPO_ROOT/.tools"
WHEELHOUSE="$TOOLS/wheelhouse"
ARCHIVE="$TOOLS/wheelhouse.tar"
STAMP="$WHEELHOUSE/.pollen-stamp"

[[ -x "$VENV_PY" && -f "$REPO_ROOT/.venv/.pollen-stamp" ]] ||
  die ".venv is missing or incomplete; run scripts/setup-python.sh first"

# e.g. "CPython 3.11 linux-x86_64": what the downloaded wheels are built for.
target="$("$VENV_PY" -c 'import platform, sys, sysconfig; print(platform.python_implementation(), "%d.%d" % sys.version_info[:2], sysconfig.get_platform())')"
want="$(fingerprint "$REQS" "${BASH_SOURCE[0]}" "$REPO_ROOT/.venv/.pollen-stamp") $target"
if [[ -f "$STAMP" && "$(<"$STAMP")" == "$want" && -f "$ARCHIVE" ]]; then
  step "node wheelhouse is up to date (.tools/wheelhouse, $target)"
  exit 0
fi

step "downloading the node hosts' wheels into .tools/wheelhouse ($target; first time takes a minute)"
mkdir -p "$TOOLS"
work="$(mktemp -d "$TOOLS/wheelhouse.new.XXXXXX")"
trap 'rm -rf "$work" "$ARCHIVE.new"' EXIT
wheels="$work/wheelhouse"
mkdir "$wheels"

# The exact versions .venv runs (name==version lines only) constrain what pip resolves.
"$VENV_PY" -m pip freeze --disable-pip-version-check | grep -E '^[A-Za-z0-9._-]+==' >"$work/constraints.txt"
pip_args=(--disable-pip-version-check --only-binary=:all: --dest "$wheels" -r "$REQS" -c "$work/constraints.txt")
[[ -t 1 ]] || pip_args+=(--progress-bar off)
"$VENV_PY" -m pip download "${pip_args[@]}"

# What the host installs (-r) and what it must run it with (the playbook checks the version).
cp "$REQS" "$wheels/requirements.txt"
"$VENV_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' >"$wheels/python-version"
(cd "$wheels" && sha256sum -- *.whl >SHA256SUMS)

# A byte-for-byte reproducible archive (sorted, fixed times and owners): the same wheels give the
# same checksum, so Ansible's copy leaves hosts that have it alone.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u+rw,go+r,go-w \
  -C "$wheels" -cf "$ARCHIVE.new" .
rm -rf "$WHEELHOUSE"
mv "$wheels" "$WHEELHOUSE"
mv -f "$ARCHIVE.new" "$ARCHIVE"
printf '%s\n' "$want" >"$STAMP.tmp" && mv -f "$STAMP.tmp" "$STAMP"
step "node wheelhouse ready: $(find "$WHEELHOUSE" -name '*.whl' | wc -l) wheels, $(du -sh "$ARCHIVE" | cut -f1) (.tools/wheelhouse.tar)"
