"""How often the processes of Pollen's own federations look for work: often while the federation
serves a run, seldom while it waits for the next one.

Flower's SuperNode and SuperExec find work by polling: a SuperNode asks its SuperLink for a
message, then waits a fixed 3 s when there is none and 0.5 s between looks at its own state for a
reply to send; a SuperExec asks for an app process to start every
FLWR_SUPEREXEC_TASK_POLL_INTERVAL. On a federation on 127.0.0.1 those waits are most of a round's
time, so while the federation serves a run (Pollen keeps the file named by POLLEN_SERVING_FILE)
each wait is at most SERVING_SECONDS. While it waits for its next run (WARM_FEDERATION), the file
is gone and each wait is WAITING_SECONDS: a waiting LOCAL federation of 2 SuperNodes then costs a
fraction of the third of a core it would cost polling at full speed. Such a wait ends early when
the file appears (looked for every WAKE_SECONDS, a cheap stat): the next run is picked up at once.
"""

import os
import time as _time

SERVING_SECONDS = 0.2
WAITING_SECONDS = 1.0
WAKE_SECONDS = 0.05
_SERVING_FILE = os.environ.get("POLLEN_SERVING_FILE")


class FederationTime:
    """The `time` module as a polling loop of Flower's sees it, with Pollen's waits."""

    def __getattr__(self, name):
        return getattr(_time, name)

    @staticmethod
    def sleep(seconds):
        if _SERVING_FILE is None or os.path.exists(_SERVING_FILE):
            _time.sleep(min(seconds, SERVING_SECONDS))
            return
        until = _time.monotonic() + WAITING_SECONDS
        while not os.path.exists(_SERVING_FILE):
            left = until - _time.monotonic()
            if left <= 0:
                return
            _time.sleep(min(left, WAKE_SECONDS))
