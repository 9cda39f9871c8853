"""App processes for Pollen's LOCAL federations, forked from one that has imported Flower.

flwr 1.42's SuperExec starts a new process for every app it runs: a `flwr-serverapp` per run on
the SuperLink, and a `flwr-clientapp` for every message a SuperNode gets. Each one spends about
1.5-1.8 s of CPU importing Flower before it does anything: with 2 SuperNodes and 2 messages a
round, 6 s of every LOCAL round. Pollen's flower-superexec runs this process beside it instead. It
imports Flower once; then for each line on its stdin (a JSON object: `command`, `flwr-clientapp` or
`flwr-serverapp`; `args`, its arguments; `quiet`, for output sent nowhere) it forks a child that
runs the command with those arguments, as the command would, on the modules already imported.
The child reseeds Python's and NumPy's random generators (a fork would share their state). This
process ends when its stdin closes (its SuperExec is gone); its children end as the commands do
(they watch the SuperExec, named by --parent-pid).
"""

import json
import os
import random
import signal
import sys

from flwr.superlink.cli import flwr_serverapp
from flwr.supernode.cli import flwr_clientapp
from pollen_forked import exit_with, name_as

COMMANDS = {"flwr-clientapp": flwr_clientapp, "flwr-serverapp": flwr_serverapp}


def _run_child(command, args, quiet):
    """In the forked child: never returns."""

    def run_command():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        name_as(command)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        if quiet:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
        random.seed()
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        sys.argv = [command, *args]
        COMMANDS[command]()

    exit_with(run_command)


def main():
    # Children are reaped as they end: nobody waits for them, as for the command's processes.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        request = json.loads(line)
        if os.fork() == 0:
            _run_child(request["command"], request["args"], request["quiet"])


if __name__ == "__main__":
    main()
