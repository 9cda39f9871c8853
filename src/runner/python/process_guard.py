"""Run one command and answer for every process it ever starts.

Flower processes start others in sessions of their own (the SuperLink's SuperExec,
the ServerApp and ClientApp processes), so signalling a process group misses them,
and a dead parent leaves them behind. This guard makes itself a child subreaper:
every descendant that loses its parent is re-parented here, so it stays in this
guard's process tree. The guard stops the whole tree (SIGTERM, then SIGKILL after a
grace period) when it gets SIGTERM, when its stdin closes (Pollen is gone, even after
a SIGKILL), or when the command exits (leftovers go too).

    python process_guard.py COMMAND [ARGS...]
"""

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE_SECONDS = 5.0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                # The command name may hold spaces and parentheses: ppid follows the last ')'.
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, pending = [], [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def signal_all(sig: int) -> list[int]:
    pids = descendants(os.getpid())
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return pids


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_everything(exit_code: int) -> None:
    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        reap()
        if not descendants(os.getpid()):
            break
        time.sleep(0.05)
    signal_all(signal.SIGKILL)
    time.sleep(0.05)
    reap()
    os._exit(exit_code)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGTERM, lambda *_: stop_everything(143))
    signal.signal(signal.SIGINT, lambda *_: stop_everything(130))
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.close(0)
        os.open(os.devnull, os.O_RDONLY)
        try:
            os.execvp(sys.argv[1], sys.argv[1:])
        except OSError as error:
            print(f"process_guard: cannot run {sys.argv[1]}: {error}", file=sys.stderr)
            os._exit(127)

    def watch_parent() -> None:
        while os.read(0, 65536):
            pass
        stop_everything(137)

    threading.Thread(target=watch_parent, daemon=True).start()
    while True:
        pid, status = os.waitpid(-1, 0)  # also reaps adopted orphans
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            stop_everything(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
