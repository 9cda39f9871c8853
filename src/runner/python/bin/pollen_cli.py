"""`flwr` commands for Pollen, forked from a process that has imported Flower's CLI.

A `flwr run` spends about 1 s of its 1.2-1.3 s importing Flower before it builds the FAB and asks
the SuperLink to start the run: a second of every launch. This process imports the CLI once; then
for each line on its stdin (a JSON object: `id`; `args`, the `flwr` arguments; `cwd`; `env`, the
whole environment; `stdout` and `stderr`, files for the command's output) it forks a child that runs
`flwr` with those arguments, in that directory and environment, as the command would. It answers
on its stdout, one JSON line each: `{"id", "pid"}` when the child started, `{"id", "code"}` when it
ended (its exit code, or minus the signal that ended it). It ends when its stdin closes (Pollen is
gone, even after a SIGKILL); its children end with it.

    python bin/pollen_cli.py
"""

import ctypes
import json
import os
import selectors
import signal
import sys

from flwr.cli.app import app
from pollen_forked import exit_with, name_as

# What `flwr run` imports only when it runs, imported here once.
import flwr.cli.run.run  # noqa: F401  pylint: disable=unused-import
import flwr.cli.utils  # noqa: F401  pylint: disable=unused-import

PR_SET_PDEATHSIG = 1


def _run_child(request):
    """In the forked child: never returns."""

    def run_flwr():
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        name_as("flwr")
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        for fd, name in ((1, request["stdout"]), (2, request["stderr"])):
            os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["flwr", *request["args"]]
        app()

    exit_with(run_flwr)


def _answer(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main():
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    pending = b""
    while True:
        for key, _ in selector.select():
            if key.fd == 0:
                chunk = os.read(0, 65536)
                if not chunk:
                    return  # Pollen is gone: the children get SIGKILL as this process ends
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    request = json.loads(line)
                    sys.stdout.flush()
                    pid = os.fork()
                    if pid == 0:
                        _run_child(request)
                    selector.register(os.pidfd_open(pid), selectors.EVENT_READ, (request["id"], pid))
                    _answer({"id": request["id"], "pid": pid})
            else:
                request_id, pid = key.data
                selector.unregister(key.fd)
                os.close(key.fd)
                _, status = os.waitpid(pid, 0)
                _answer({"id": request_id, "code": os.waitstatus_to_exitcode(status)})


if __name__ == "__main__":
    main()
