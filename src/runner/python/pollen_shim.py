"""Pollen ServerApp shim: run the user's ServerApp unchanged, report metrics live.

Pollen copies this file into the root of the unpacked Flower App and points
``[tool.flwr.app.components] serverapp`` at ``pollen_shim:app``. When
``flwr-serverapp`` loads it, the shim

1. reads its configuration (see ``_load_config``): the user's original
   component (``target = "module:attr"``) and where to send events
   (``address = "127.0.0.1:PORT"``, ``token``);
2. installs the metric hooks (below) and a logging handler;
3. imports the user's ServerApp and exposes ``app``, a ServerApp whose main
   simply calls the user's app, so its ``@app.main()`` / ``@app.lifespan()`` /
   legacy ``server_fn`` run exactly as they would without Pollen.

Configuration: ``pollen_shim.json`` next to this file
(``{"target": "pkg.module:attr", "address": "127.0.0.1:PORT", "token": "..."}``
and the run settings below; .json files travel in the FAB, so each run on a
long-lived SuperLink carries its own). Without a target the shim raises
ImportError (run fails loudly); without an address it only runs the user's app.

Event channel: one TCP connection to ``address``; the first line is
``{"token": ...}``, every further line is one JSON event::

    {"type": "start",  "run_id": "<uint64 as string>", "run_config": {...}, "at": ms}
    {"type": "round",  "round": n, "total": N, "at": ms}
    {"type": "metric", "round": n, "phase": "TRAIN"|"EVALUATE"|"SERVER_EVALUATE",
     "values": {...}, "at": ms}
    {"type": "replies", "round": n, "phase": "TRAIN"|"EVALUATE", "sent": int,
     "ok": int, "failed": int, "errors": [{"node_id": "<uint64>", "reason": "..."}],
     "at": ms}
    {"type": "log",    "line": "...", "level": "INFO"|...|"stdout"|"stderr", "at": ms}
    {"type": "checkpoint", "round": n, "file": "<checkpoints_dir>/round-n.npz", "at": ms}
    {"type": "end",    "status": "completed"|"failed"|"stopped", "error": str|null,
     "dropped": int, "at": ms}

Run settings: ``checkpoints_dir`` (each round's global
model is written there as round-N.npz, then announced), ``round_offset`` (a
fork goes on with its parent's round numbers), ``initial_arrays`` (an .npz to
start from instead of the app's initial arrays) and ``ask_before_round``: before
each round after the first, the shim asks on a connection of its own
(``{"token"}`` then ``{"type": "ask", "question": "continue", "round": n,
"after": events written}``) and ends ``start()`` early, with what it has, when
Pollen answers ``{"continue": false, "reason": ...}`` (a stop rule fired).

``at`` is ``time.time() * 1000`` taken when the value was produced (for a
metric: right after aggregation), so Pollen can measure delivery latency. The
same (round, phase) may be reported more than once by the legacy API (loss and
metrics arrive separately): merge ``values``.

Metric hook, and why: the Message API's ``Strategy.start()`` (1.42:
flwr/serverapp/strategy/strategy.py) is the one place that knows the round and
the phase of every aggregate. For the duration of ``start()`` the shim shadows
``configure_*`` / ``aggregate_train`` / ``aggregate_evaluate`` on the
*instance* and wraps the ``evaluate_fn`` argument, so it sees exactly the
values ``start()`` stores in its ``Result`` (round 0 = initial server-side
evaluation), with ``server_round`` as an argument, not parsed from text. Only
the outermost calls made by ``start()`` are wrapped (``super()`` calls inside a
user's subclass or a wrapping DP strategy are not), so nothing is reported
twice. Legacy apps (``flwr.server`` strategies through ``server_fn``) are caught
through ``flwr.server.history.History``, which receives every aggregate with
its round. The ``flwr`` log records (``└──> Aggregated MetricRecord: %s``,
whose ``record.args`` *is* the real MetricRecord: logging unwraps a lone
Mapping argument) were the other candidate, but train and
evaluate aggregates share one template, so their phase (and round) would
have to be inferred from the order of surrounding records, which breaks as
soon as a phase yields no metrics. They are used only as a fallback, when
neither hook applies (a custom loop that logs like ``start()``).

The shim must never break the user's app: every hook is wrapped in
try/except, events go through a bounded in-memory queue to a daemon thread (a
slow or missing listener never blocks training), and a missing channel only
costs the live events. Stdlib + flwr only.
"""

# pylint: disable=broad-exception-caught,global-statement,protected-access

from __future__ import annotations

import atexit
import collections.abc
import functools
import importlib
import inspect
import json
import logging
import math
import numbers
import os
import queue
import re
import socket
import sys
import threading
import time
import traceback
from typing import Any

from flwr.serverapp import ServerApp

CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pollen_shim.json")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_QUEUE_MAX = 10_000  # events kept while the listener is slow; more are dropped
_FLWR_LOGGER = logging.getLogger("flwr")


def _now_ms() -> float:
    return time.time() * 1000.0


# --------------------------------------------------------------------------- config


def _load_config() -> dict[str, Any]:
    """``pollen_shim.json`` beside this file: per run, it travels in the FAB."""
    cfg: dict[str, Any] = {}
    try:
        with open(CONFIG_FILE, encoding="utf-8") as fh:
            loaded = json.load(fh)
        if isinstance(loaded, dict):
            cfg = loaded
    except FileNotFoundError:
        pass
    except Exception as err:  # a broken file must not break the run
        print(f"pollen_shim: ignoring unreadable {CONFIG_FILE}: {err}", file=sys.stderr)
    return cfg


# -------------------------------------------------------------------------- channel


class _Channel:
    """Non-blocking JSON-lines sender (one daemon thread, bounded queue)."""

    def __init__(self, address: str | None, token: str | None) -> None:
        self.dropped = 0
        self.written = 0  # events written to the socket, in order
        self._queue: queue.Queue[str] = queue.Queue(maxsize=_QUEUE_MAX)
        self._dead = not address
        self._address = address
        self._token = token or ""
        if not self._dead:
            threading.Thread(target=self._run, name="pollen-shim", daemon=True).start()

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event; never blocks, never raises."""
        if self._dead:
            return
        try:
            self._queue.put_nowait(json.dumps(event, allow_nan=False, default=str) + "\n")
        except Exception:  # queue.Full, or a value json cannot encode
            self.dropped += 1

    def flush(self, timeout: float) -> None:
        """Wait (bounded) until every queued event is written or given up."""
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks and not self._dead:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                done.wait(remaining)

    def ask(self, question: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Asks Pollen something and waits (bounded) for the answer, on a connection of its own.
        Pollen answers once it has read the events written before the question (``after``), so
        the answer takes them into account. None: no answer (no channel, or none in time)."""
        if self._dead:
            return None
        try:
            self.flush(timeout)
            with self._connect() as sock:
                sock.settimeout(timeout)
                sock.sendall((json.dumps({**question, "after": self.written}) + "\n").encode())
                reply = b""
                while not reply.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        return None
                    reply += chunk
            answer = json.loads(reply)
            return answer if isinstance(answer, dict) else None
        except Exception:
            return None

    def _connect(self) -> socket.socket:
        host, _, port = str(self._address).rpartition(":")
        sock = socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=3)
        sock.settimeout(10)  # a stuck listener stalls this thread only
        sock.sendall((json.dumps({"token": self._token}) + "\n").encode())
        return sock

    def _run(self) -> None:
        sock = None
        failures = 0
        while True:
            line = self._queue.get()
            while True:
                try:
                    if sock is None:
                        sock = self._connect()
                    sock.sendall(line.encode("utf-8"))
                    self.written += 1
                    failures = 0
                    break
                except Exception as err:
                    if sock is not None:
                        sock.close()
                        sock = None
                    failures += 1
                    if failures < 3:
                        time.sleep(0.2 * failures)
                        continue
                    # Give up: the run goes on without live events.
                    self._dead = True
                    with self._queue.all_tasks_done:
                        self._queue.all_tasks_done.notify_all()
                    _FLWR_LOGGER.warning(
                        "Pollen shim: event channel %s unavailable (%s); "
                        "the run continues without live metrics",
                        self._address,
                        err,
                    )
                    return
            self._queue.task_done()


_CFG = _load_config()
_CHANNEL = _Channel(_CFG.get("address"), _CFG.get("token"))
# Per run (pollen_shim.json): where to write each round's global model, how far the rounds are
# shifted (a fork continues its parent's numbering), the model to start from instead of the app's
# own initial arrays (a fork's), and whether to ask Pollen before each round (a stop rule).
_CHECKPOINTS_DIR: str | None = _CFG.get("checkpoints_dir")
_ROUND_OFFSET = int(_CFG.get("round_offset") or 0)
_INITIAL_ARRAYS: str | None = _CFG.get("initial_arrays")
_ASK_BEFORE_ROUND = bool(_CFG.get("ask_before_round"))
_ASK_TIMEOUT_SECONDS = 30.0


class _StopRun(Exception):
    """Pollen asked the run to end before its next round (a stop rule fired): a clean finish."""


def _emit(event: dict[str, Any]) -> None:
    event.setdefault("at", _now_ms())
    _CHANNEL.send(event)


# --------------------------------------------------------------------------- values


def _clean_values(record: Any) -> dict[str, Any]:
    """Keep JSON numbers/strings/booleans; drop lists, NaN, inf and the rest."""
    out: dict[str, Any] = {}
    try:
        items = dict(record).items()
    except Exception:
        return out
    for key, val in items:
        if isinstance(val, (bool, str)):
            out[str(key)] = val
        elif isinstance(val, numbers.Integral):
            out[str(key)] = int(val)
        elif isinstance(val, numbers.Real) and math.isfinite(float(val)):
            out[str(key)] = float(val)
    return out


def _emit_metric(server_round: Any, phase: str, record: Any) -> None:
    try:
        if record is None:
            return
        values = _clean_values(record)
        if values:
            _emit({"type": "metric", "round": int(server_round), "phase": phase, "values": values})
    except Exception:
        pass


def _emit_round(server_round: Any, total: Any) -> None:
    try:
        _emit({"type": "round", "round": int(server_round), "total": int(total)})
    except Exception:
        pass


# ------------------------------------------------------- hook 1: Message API start()

_in_start = 0  # >0 while a hooked Strategy.start() runs (log fallback is off)


def _install_strategy_hook() -> None:
    from flwr.serverapp.strategy import Strategy  # pylint: disable=import-outside-toplevel

    original = Strategy.start
    if getattr(original, "_pollen_hooked", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _in_start
        if _in_start:  # nested start(): the outer one reports
            return original(self, *args, **kwargs)
        try:
            from flwr.serverapp.strategy import Result  # pylint: disable=import-outside-toplevel

            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            total = bound.arguments["num_rounds"]
            if _INITIAL_ARRAYS:
                bound.arguments["initial_arrays"] = _load_arrays(_INITIAL_ARRAYS)
            # What start() has gathered so far, handed back if Pollen stops the run early.
            progress = Result()
            if bound.arguments.get("evaluate_fn") is not None:
                bound.arguments["evaluate_fn"] = _wrap_evaluate_fn(bound.arguments["evaluate_fn"], progress)
            shadowed = _shadow_methods(self, total, bound.arguments["initial_arrays"], progress)
        except Exception:  # unknown signature: run untouched, log fallback reports
            return original(self, *args, **kwargs)
        _in_start += 1
        try:
            return original(*bound.args, **bound.kwargs)
        except _StopRun as stop:
            # A stop rule fired between two rounds: start() returns what it has, as after its
            # last round, so the app's own code after it (saving, logging) still runs.
            _FLWR_LOGGER.info("Pollen: %s", stop)
            return progress
        finally:
            _in_start -= 1
            _restore_methods(self, shadowed)

    start._pollen_hooked = True  # type: ignore[attr-defined]
    Strategy.start = start  # type: ignore[method-assign]


def _wrap_evaluate_fn(fn: Any, progress: Any) -> Any:
    @functools.wraps(fn)
    def evaluate_fn(server_round: int, arrays: Any) -> Any:
        if server_round == 0:  # the initial model, saved when the app evaluates it
            _save_checkpoint(_ROUND_OFFSET, arrays)
        res = fn(server_round + _ROUND_OFFSET, arrays)
        _emit_metric(server_round + _ROUND_OFFSET, "SERVER_EVALUATE", res)
        if res is not None:
            progress.evaluate_metrics_serverapp[server_round] = res
        return res

    return evaluate_fn


_MISSING = object()


def _shadow_methods(strategy: Any, total: int, initial_arrays: Any, progress: Any) -> dict[str, Any]:
    """Put wrappers in the instance dict; ``start()`` calls ``self.x`` so it sees
    them, ``super().x`` inside the user's methods does not (no double reports).
    The strategy sees every round shifted by ``_ROUND_OFFSET`` (a fork goes on
    with its parent's numbering, in its messages' config too). ``progress`` gets
    what start() would put in its Result."""
    inst = vars(strategy)
    names = ("configure_train", "aggregate_train", "configure_evaluate", "aggregate_evaluate")
    saved = {n: inst.get(n, _MISSING) for n in names}
    configure_train = strategy.configure_train
    aggregate_train = strategy.aggregate_train
    configure_evaluate = strategy.configure_evaluate
    aggregate_evaluate = strategy.aggregate_evaluate
    sent = {"TRAIN": 0, "EVALUATE": 0}  # messages configured in the current phase
    held = {"arrays": initial_arrays}  # the global model, as start() holds it
    offset = _ROUND_OFFSET

    def configure_train_hook(server_round: int, *a: Any, **kw: Any) -> Any:
        if server_round > 1 and _ASK_BEFORE_ROUND:
            answer = _CHANNEL.ask({"type": "ask", "question": "continue", "round": server_round - 1 + offset},
                                  _ASK_TIMEOUT_SECONDS)
            if answer is not None and answer.get("continue") is False:
                raise _StopRun(str(answer.get("reason") or "stopped by Pollen"))
        _emit_round(server_round + offset, total + offset)
        messages = list(configure_train(server_round + offset, *a, **kw))
        sent["TRAIN"] = len(messages)
        return messages

    def configure_evaluate_hook(server_round: int, *a: Any, **kw: Any) -> Any:
        messages = list(configure_evaluate(server_round + offset, *a, **kw))
        sent["EVALUATE"] = len(messages)
        return messages

    def aggregate_train_hook(server_round: int, replies: Any, *a: Any, **kw: Any) -> Any:
        replies = _report_replies(server_round + offset, "TRAIN", replies, sent["TRAIN"])
        res = aggregate_train(server_round + offset, replies, *a, **kw)
        try:
            _emit_metric(server_round + offset, "TRAIN", res[1])
            # start() keeps the model it held when aggregation gives none.
            if res[0] is not None:
                held["arrays"] = progress.arrays = res[0]
            if res[1] is not None:
                progress.train_metrics_clientapp[server_round] = res[1]
            _save_checkpoint(server_round + offset, held["arrays"])
        except Exception:
            pass
        return res

    def aggregate_evaluate_hook(server_round: int, replies: Any, *a: Any, **kw: Any) -> Any:
        replies = _report_replies(server_round + offset, "EVALUATE", replies, sent["EVALUATE"])
        res = aggregate_evaluate(server_round + offset, replies, *a, **kw)
        _emit_metric(server_round + offset, "EVALUATE", res)
        if res is not None:
            progress.evaluate_metrics_clientapp[server_round] = res
        return res

    inst["configure_train"] = configure_train_hook
    inst["aggregate_train"] = aggregate_train_hook
    inst["configure_evaluate"] = configure_evaluate_hook
    inst["aggregate_evaluate"] = aggregate_evaluate_hook
    return saved


def _report_replies(server_round: int, phase: str, replies: Any, sent: int) -> Any:
    """Emit how many ClientApps answered, failed or never replied (timeout):
    built-in strategies skip failed replies, so a run whose every ClientApp
    raised still *completes*. Nothing is emitted for a skipped phase."""
    replies = list(replies)  # grid.send_and_receive returns a list anyway
    try:
        errors = [m for m in replies if m.has_error()]
        if not sent and not replies:
            return replies
        _emit(
            {
                "type": "replies",
                "round": int(server_round),
                "phase": phase,
                "sent": sent,
                "ok": len(replies) - len(errors),
                "failed": len(errors),
                "errors": [
                    {"node_id": str(m.metadata.src_node_id), "reason": str(m.error.reason)}
                    for m in errors[:20]
                ],
            }
        )
    except Exception:
        pass
    return replies


def _restore_methods(strategy: Any, saved: dict[str, Any]) -> None:
    inst = vars(strategy)
    for name, val in saved.items():
        if val is _MISSING:
            inst.pop(name, None)
        else:
            inst[name] = val


# -------------------------------------------------------------- global models


def _save_checkpoint(server_round: int, arrays: Any) -> None:
    """Write the global model (an ArrayRecord) as an uncompressed .npz, one array at a time, each
    C-ordered and little-endian, with the record's names in its order; tell Pollen it is there.
    Uncompressed, so Pollen can serve the same bytes as safetensors without reading them."""
    if not _CHECKPOINTS_DIR or arrays is None:
        return
    try:
        import zipfile  # pylint: disable=import-outside-toplevel

        import numpy as np  # pylint: disable=import-outside-toplevel

        os.makedirs(_CHECKPOINTS_DIR, exist_ok=True)
        path = os.path.join(_CHECKPOINTS_DIR, f"round-{int(server_round)}.npz")
        partial = path + ".partial"
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as npz:
            for name, array in arrays.items():
                values = np.ascontiguousarray(array.numpy())
                if values.dtype.byteorder == ">":
                    values = values.astype(values.dtype.newbyteorder("<"))
                # A fixed timestamp: the same model gives the same bytes, and the same sha256.
                member_info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with npz.open(member_info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, values, allow_pickle=False)
                del values
        os.replace(partial, path)
        _emit({"type": "checkpoint", "round": int(server_round), "file": path})
    except Exception as err:
        _FLWR_LOGGER.warning("Pollen: could not save the model of round %s: %s", server_round, err)


def _load_arrays(path: str) -> Any:
    """An .npz that Pollen saved, as an ArrayRecord with the same names in the same order."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    from flwr.app import Array, ArrayRecord  # pylint: disable=import-outside-toplevel

    with np.load(path, allow_pickle=False) as saved:
        return ArrayRecord({name: Array(saved[name]) for name in saved.files})


# ------------------------------------------------ hook 2: legacy flwr.server History

_legacy_total: int | None = None


def _install_legacy_hooks() -> None:
    try:
        from flwr.server.history import History  # pylint: disable=import-outside-toplevel
        from flwr.server.server import Server  # pylint: disable=import-outside-toplevel
    except Exception:
        return
    if getattr(History.add_metrics_distributed_fit, "_pollen_hooked", False):
        return

    def hook(cls: Any, name: str, phase: str, is_loss: bool) -> None:
        original = getattr(cls, name)

        @functools.wraps(original)
        def wrapper(self: Any, server_round: int, *args: Any, **kwargs: Any) -> Any:
            out = original(self, server_round, *args, **kwargs)
            value = (list(args) + list(kwargs.values()) or [None])[0]
            _emit_metric(server_round, phase, {"loss": value} if is_loss else value)
            return out

        wrapper._pollen_hooked = True  # type: ignore[attr-defined]
        setattr(cls, name, wrapper)

    hook(History, "add_metrics_distributed_fit", "TRAIN", False)
    hook(History, "add_loss_distributed", "EVALUATE", True)
    hook(History, "add_metrics_distributed", "EVALUATE", False)
    hook(History, "add_loss_centralized", "SERVER_EVALUATE", True)
    hook(History, "add_metrics_centralized", "SERVER_EVALUATE", False)

    fit, fit_round = Server.fit, Server.fit_round

    @functools.wraps(fit)
    def fit_hook(self: Any, num_rounds: int, *args: Any, **kwargs: Any) -> Any:
        global _legacy_total
        _legacy_total = num_rounds
        return fit(self, num_rounds, *args, **kwargs)

    @functools.wraps(fit_round)
    def fit_round_hook(self: Any, server_round: int, *args: Any, **kwargs: Any) -> Any:
        if _legacy_total is not None:
            _emit_round(server_round, _legacy_total)
        return fit_round(self, server_round, *args, **kwargs)

    Server.fit, Server.fit_round = fit_hook, fit_round_hook  # type: ignore[method-assign]


# --------------------------------------------------- logs (+ hook 3: log fallback)


class _LogForwarder(logging.Handler):
    """Forward every record of the root and ``flwr`` loggers as ``log`` events.

    Installed on both loggers (``flwr`` propagates to root, but user code may
    turn that off); the same record object is skipped the second time."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self._last: logging.LogRecord | None = None
        self._phase_hint: str | None = None  # for the log fallback only
        self._round: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record is self._last:
            return
        self._last = record
        try:
            at = record.created * 1000.0
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            for line in _ANSI.sub("", message).splitlines() or [""]:
                _emit({"type": "log", "line": line.expandtabs(4), "level": record.levelname, "at": at})
            if not _in_start and record.name.startswith("flwr"):
                self._fallback(record)
        except Exception:
            pass

    def _fallback(self, record: logging.LogRecord) -> None:
        """Structure from the records of a start()-like loop we could not hook."""
        msg, args = str(record.msg), record.args
        # logging unwraps a lone Mapping argument: `log(INFO, "...: %s", metric_record)`
        # leaves record.args == the MetricRecord itself, not a 1-tuple.
        if isinstance(args, collections.abc.Mapping):
            args = (args,)
        args = args if isinstance(args, tuple) else ()
        text = record.getMessage()
        if text.startswith("aggregate_train:"):
            self._phase_hint = "TRAIN"
        elif text.startswith("aggregate_evaluate:"):
            self._phase_hint = "EVALUATE"
        elif text == "Global evaluation":
            self._phase_hint = "SERVER_EVALUATE"
        elif msg == "[ROUND %s/%s]" and len(args) == 2:
            self._round = int(args[0])
            _emit_round(args[0], args[1])
        elif args and type(args[0]).__name__ == "MetricRecord":
            if msg.startswith("Initial global evaluation"):
                _emit_metric(0, "SERVER_EVALUATE", args[0])
            elif self._phase_hint and self._round is not None:
                _emit_metric(self._round, self._phase_hint, args[0])
                self._phase_hint = None


def _install_log_forwarding() -> None:
    handler = _LogForwarder()
    logging.getLogger().addHandler(handler)
    _FLWR_LOGGER.addHandler(handler)
    _tee_stream(sys.stdout, "stdout")
    _tee_stream(sys.stderr, "stderr")


def _tee_stream(stream: Any, name: str) -> None:
    """Forward print() output too (flwr-serverapp already mirrors it into
    ``flwr log``); writes coming from a logging handler are skipped because the
    record itself was forwarded above."""
    original = stream.write
    buffer: list[str] = []

    def write(text: str) -> int:
        ret = original(text)
        try:
            frame, from_logging = sys._getframe(1), False
            for _ in range(8):
                if frame is None:
                    break
                if frame.f_code.co_filename == logging.__file__:
                    from_logging = True
                    break
                frame = frame.f_back
            if not from_logging and isinstance(text, str):
                buffer.append(text)
                if "\n" in text:
                    *lines, rest = "".join(buffer).split("\n")
                    buffer[:] = [rest] if rest else []
                    for line in lines:
                        _emit({"type": "log", "line": _ANSI.sub("", line), "level": name})
        except Exception:
            pass
        return ret

    try:
        stream.write = write
    except Exception:
        pass


# -------------------------------------------------------------------- the ServerApp


def _load_target(target: str) -> ServerApp:
    """Import ``module:attr`` from the app directory (importlib, not flwr's
    ``load_app``: that holds a non-reentrant lock while it imports this shim)."""
    module_name, _, attrs = target.partition(":")
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    obj: Any = importlib.import_module(module_name)
    for attr in (attrs or "app").split("."):
        obj = getattr(obj, attr)
    if not isinstance(obj, ServerApp):
        raise TypeError(f"{target} is a {type(obj).__name__}, not a flwr ServerApp")
    return obj


# ------------------------------------------------------------- faster replies

_REPLY_POLL_SECONDS = 0.2


class _FasterPolls:
    """The `time` module as Flower's HTTP grid sees it, with shorter sleeps."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, _REPLY_POLL_SECONDS))


def _install_faster_replies() -> None:
    """flwr 1.42's grid (the ServerApp's link to its SuperLink, on this host) asks for replies every
    3 s: most of a round's time on a small federation, while a request costs a millisecond. It
    asks every 0.2 s here; nothing else about the grid changes."""
    from flwr.superlink.grid import http_grid  # pylint: disable=import-outside-toplevel

    http_grid.time = _FasterPolls()  # type: ignore[attr-defined]


for _install in (_install_log_forwarding, _install_strategy_hook, _install_legacy_hooks, _install_faster_replies):
    try:
        _install()
    except Exception as _err:  # a hook that cannot be installed costs metrics, not the run
        print(f"pollen_shim: {_install.__name__} failed: {_err!r}", file=sys.stderr)

atexit.register(_CHANNEL.flush, 1.0)

if not _CFG.get("target"):
    raise ImportError(
        f"pollen_shim: no target ServerApp; write {CONFIG_FILE} "
        f'({{"target": "module:attr", ...}}) or set {ENV_TARGET}'
    )
_USER_APP = _load_target(str(_CFG["target"]))

app = ServerApp()


@app.main()
def main(grid: Any, context: Any) -> None:
    """Run the user's ServerApp as-is (its lifespan and main, or legacy server_fn)."""
    _emit(
        {
            "type": "start",
            "run_id": str(getattr(context, "run_id", "")),
            "run_config": _clean_values(getattr(context, "run_config", {}) or {}),
        }
    )
    status, error = "failed", None
    try:
        _USER_APP(grid, context)
        status = "completed"
    except BaseException as err:
        # SystemExit/KeyboardInterrupt: Flower ended the process (`flwr stop`
        # revokes the task token, a signal handler exits).
        if not isinstance(err, Exception):
            status = "stopped"
        error = f"{type(err).__name__}: {err}"
        raise
    finally:
        _emit({"type": "end", "status": status, "error": error, "dropped": _CHANNEL.dropped})
        _CHANNEL.flush(5.0)
