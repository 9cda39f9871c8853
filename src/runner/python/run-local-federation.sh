#!/usr/bin/env bash
# Run a Flower App on a throw-away local federation (Flower 1.42 deployment
# engine, everything on 127.0.0.1), with Pollen's ServerApp shim injected.
#
#   run-local-federation.sh APP_DIR NUM_CLIENTS ROUNDS WORK_DIR [RUN_CONFIG...]
#
#   APP_DIR      a Flower App (pyproject.toml with [tool.flwr.app.components])
#   NUM_CLIENTS  SuperNodes to start (0 = none: the run waits for nodes forever)
#   ROUNDS       run-config num-server-rounds
#   WORK_DIR     created if missing; holds FLWR_HOME, state.db, logs, events
#   RUN_CONFIG   extra `flwr run --run-config` items, e.g. 'learning-rate=0.05'
#
# Environment knobs: FLWR_BIN_DIR (default: the repo's .venv/bin),
# STOP_AFTER=SECONDS (call `flwr stop` after that long), RUN_TIMEOUT=SECONDS
# (default 600; then `flwr stop`), POLL_INTERVAL (default 2; each `flwr list`
# costs ~1.5 s of CPU), SHIM_CONFIG=json|env (how the shim gets its config),
# NO_LISTENER=1 (no event listener: the shim must cope),
# FLWR_SUPEREXEC_TASK_POLL_INTERVAL (Flower's own, default 1 s; inherited).
#
# This is the reference recipe for Pollen's TypeScript runner, which performs
# the same steps itself. Every Flower process starts in its own session
# (setsid) so it can be torn down by process group; nothing binds 0.0.0.0.
#
# Verified facts (flwr 1.42.0, this machine):
# - One SuperLink HTTP port (--host/--port, default 127.0.0.1:8000) serves the
#   Control, Fleet and Runtime APIs; /health answers 200 when it is up.
#   SuperNodes: --superlink HOST:THAT_PORT, own --host/--port Runtime API
#   (default 127.0.0.1:9094, so give each its own). --clientappio-api-address
#   and --serverappio-api-address now abort ("no longer supported");
#   --control-api-address / --fleet-api-address only warn (deprecated).
# - Process tree: superlink -> flower-superexec (Flower puts it in a NEW
#   session) -> one flwr-serverapp per run (stdout/stderr to /dev/null: its
#   output only reaches `flwr log`); supernode -> flower-superexec (same
#   group) -> one flwr-clientapp per message (output in the supernode's log).
# - `flwr run|list|stop --format json` exit 0 even on failure: read
#   "success". run-id is a uint64 *string* (exceeds 2^53). Status strings:
#   pending, starting, running, finished:completed|failed|stopped; failure
#   reason in "status-details" ("N/A" otherwise).
# - A run with too few SuperNodes is "running" forever, logging "Waiting for
#   nodes to connect: 0 connected (minimum required: 2)." every second;
#   `flwr stop` ends it as finished:stopped within a few seconds.
# - Built-in strategies skip failed ClientApp replies: a run whose every
#   ClientApp raises still ends finished:completed (watch the shim's
#   "replies" events).
set -euo pipefail

if [[ $# -lt 4 ]]; then
  sed -n '2,21p' "$0"; exit 2
fi
APP_SRC=$(cd "$1" && pwd)
NUM_CLIENTS=$2
ROUNDS=$3
mkdir -p "$4"
WORK=$(cd "$4" && pwd)
shift 4
EXTRA_RUN_CONFIG=("$@")

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
BIN=${FLWR_BIN_DIR:-$REPO/.venv/bin}
PY=$BIN/python
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
POLL_INTERVAL=${POLL_INTERVAL:-2}

# --- (0) environment: no telemetry, no update check, no `uv sync`, own FLWR_HOME
export FLWR_TELEMETRY_ENABLED=0
export FLWR_DISABLE_UPDATE_CHECK=1
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
export FLWR_HOME=$WORK/flwr-home
export PATH=$BIN:$PATH          # superlink/supernode spawn flower-superexec, flwr-*app by name
export PYTHONUNBUFFERED=1
mkdir -p "$FLWR_HOME" "$WORK/logs"

log() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*" >&2; }
now_ms() { "$PY" -c 'import time; print(int(time.time()*1000))'; }

PGIDS=()   # every process group we started (pgid == pid thanks to setsid)
PIDS=()
cleanup() {
  set +e
  # The SuperLink's SuperExec runs in a session of its own (start_new_session):
  # collect it before the SuperLink goes away.
  for pid in "${PIDS[@]}"; do
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
      cpg=$(ps -o pgid= -p "$child" 2>/dev/null | tr -d ' ')
      [[ -n "$cpg" && "$cpg" != "$pid" ]] && PGIDS+=("$cpg")
    done
  done
  for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null; done
  for _ in $(seq 1 50); do
    alive=0
    for pg in "${PGIDS[@]}"; do  # zombies (already dead, not yet reaped) do not count
      ps -eo pgid=,stat= | awk -v g="$pg" '$1 == g && $2 !~ /^Z/ {f=1} END {exit !f}' && alive=1
    done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pg in "${PGIDS[@]}"; do kill -KILL -- "-$pg" 2>/dev/null; done
  wait 2>/dev/null
  log "teardown done"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_group() {  # start_group LOGFILE CMD...   -> sets LAST_PID (== its pgid)
  local logfile=$1; shift
  setsid "$@" >"$logfile" 2>&1 </dev/null &
  LAST_PID=$!
  PIDS+=("$LAST_PID"); PGIDS+=("$LAST_PID")
}

# --- free loopback ports: SuperLink HTTP, one Runtime API port per SuperNode, events
read -r -a PORTS <<<"$("$PY" - "$((NUM_CLIENTS + 2))" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)"
SUPERLINK_PORT=${PORTS[0]}
EVENTS_PORT=${PORTS[1]}
TOKEN=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')

# --- (d') event listener standing in for Pollen: checks the token, stamps lines
cat >"$WORK/listener.py" <<'EOF'
import json, socket, sys, time
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[3], "a", encoding="utf-8") as out:
    while True:
        conn, _ = srv.accept()
        lines = conn.makefile("r", encoding="utf-8")
        if json.loads(lines.readline() or "{}").get("token") != sys.argv[2]:
            conn.close(); continue
        for line in lines:
            event = json.loads(line)
            event["received_at"] = time.time() * 1000
            out.write(json.dumps(event) + "\n"); out.flush()
            if event["type"] != "log":
                print(line.strip(), flush=True)
EOF
if [[ -z "${NO_LISTENER:-}" ]]; then  # NO_LISTENER=1: prove a missing channel is harmless
  start_group "$WORK/logs/listener.log" "$PY" -u "$WORK/listener.py" "$EVENTS_PORT" "$TOKEN" "$WORK/events.jsonl"
fi

# --- (a) FLWR_HOME/config.toml: a SuperLink connection named `local`
cat >"$FLWR_HOME/config.toml" <<EOF
[superlink]
default = "local"

[superlink.local]
address = "127.0.0.1:$SUPERLINK_PORT"
insecure = true
EOF

# --- (d) the app: copy, inject the shim, point serverapp at it. The shim's
# config (original component, event address, token) goes into
# pollen_shim.json inside the app (default), or with SHIM_CONFIG=env into
# POLLEN_* variables that the SuperLink passes down to flwr-serverapp.
APP="$WORK/app"
rm -rf "$APP"; mkdir -p "$APP"
(cd "$APP_SRC" && tar --exclude=.venv --exclude=__pycache__ --exclude=.flwr -cf - .) | (cd "$APP" && tar -xf -)
cp "$HERE/pollen_shim.py" "$APP/pollen_shim.py"
TARGET=$("$PY" - "$APP" <<'EOF'
import re, sys, tomllib
path = f"{sys.argv[1]}/pyproject.toml"
text = open(path, encoding="utf-8").read()
print(tomllib.loads(text)["tool"]["flwr"]["app"]["components"]["serverapp"])
# Rewrite only the serverapp line inside [tool.flwr.app.components].
section = re.search(r"(?ms)^\[tool\.flwr\.app\.components\]\s*$.*?(?=^\[|\Z)", text)
body = re.sub(r'(?m)^(\s*serverapp\s*=\s*)(["\']).*?\2', r'\1"pollen_shim:app"',
              section.group(0), count=1)
open(path, "w", encoding="utf-8").write(text[: section.start()] + body + text[section.end():])
EOF
)
SUPERLINK_ENV=()
if [[ "${SHIM_CONFIG:-json}" == env ]]; then  # only the SuperLink's tree gets them
  SUPERLINK_ENV=("POLLEN_SHIM_TARGET=$TARGET" "POLLEN_EVENTS_ADDRESS=127.0.0.1:$EVENTS_PORT"
                 "POLLEN_EVENTS_TOKEN=$TOKEN")
else
  "$PY" -c 'import json,sys; json.dump(dict(zip(("target","address","token"), sys.argv[2:])), open(sys.argv[1],"w"))' \
    "$APP/pollen_shim.json" "$TARGET" "127.0.0.1:$EVENTS_PORT" "$TOKEN"
fi
log "shim target $TARGET (config via ${SHIM_CONFIG:-json})"

# --- (b) SuperLink: one HTTP port serves the Control, Fleet and Runtime APIs
T_START=$(now_ms)
start_group "$WORK/logs/superlink.log" env "${SUPERLINK_ENV[@]}" flower-superlink --insecure \
  --host 127.0.0.1 --port "$SUPERLINK_PORT" \
  --database "$WORK/state.db" --disable-runtime-dependency-installation
SUPERLINK_PID=$LAST_PID
for _ in $(seq 1 150); do
  "$PY" - "$SUPERLINK_PORT" <<'EOF' && break
import sys, urllib.request
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1)
except Exception:
    sys.exit(1)
EOF
  kill -0 "$SUPERLINK_PID" 2>/dev/null || { cat "$WORK/logs/superlink.log"; exit 1; }
  sleep 0.2
done
log "superlink up on 127.0.0.1:$SUPERLINK_PORT after $(( $(now_ms) - T_START )) ms (pid $SUPERLINK_PID)"

# --- (c) SuperNodes: partition I of N via node config; own Runtime API port each
for ((i = 0; i < NUM_CLIENTS; i++)); do
  start_group "$WORK/logs/supernode-$i.log" flower-supernode --insecure \
    --superlink "127.0.0.1:$SUPERLINK_PORT" \
    --host 127.0.0.1 --port "${PORTS[$((i + 2))]}" \
    --node-config "partition-id=$i num-partitions=$NUM_CLIENTS"
  log "supernode $i: pid $LAST_PID, runtime api 127.0.0.1:${PORTS[$((i + 2))]}"
done

# --- (e) submit
T_SUBMIT=$(now_ms)
RUN_CONFIG=("num-server-rounds=$ROUNDS" "${EXTRA_RUN_CONFIG[@]}")
RUN_ARGS=()
for kv in "${RUN_CONFIG[@]}"; do RUN_ARGS+=(--run-config "$kv"); done
flwr run "$APP" local "${RUN_ARGS[@]}" --format json >"$WORK/run.json" 2>"$WORK/logs/flwr-run.stderr" || {
  log "flwr run failed"; cat "$WORK/run.json" "$WORK/logs/flwr-run.stderr"; exit 1; }
RUN_ID=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["run-id"] if d.get("success") else sys.exit(d))' "$WORK/run.json")
log "run $RUN_ID submitted in $(( $(now_ms) - T_SUBMIT )) ms"
echo "RUN_ID=$RUN_ID"

# --- (f) poll the status until it is finished:*
STATUS=""
STOPPED=0
while :; do
  sleep "$POLL_INTERVAL"
  flwr list --run-id "$RUN_ID" --format json >"$WORK/list.json" 2>/dev/null || true
  NEW=$("$PY" -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["runs"][0]["status"])
except Exception: print("unknown")' "$WORK/list.json")
  [[ "$NEW" != "$STATUS" ]] && log "status: $NEW"
  STATUS=$NEW
  [[ "$STATUS" == finished:* ]] && break
  ELAPSED=$(( ($(now_ms) - T_SUBMIT) / 1000 ))
  if [[ $STOPPED == 0 && ( ( -n "${STOP_AFTER:-}" && $ELAPSED -ge ${STOP_AFTER:-0} ) || $ELAPSED -ge $RUN_TIMEOUT ) ]]; then
    log "stopping run $RUN_ID after ${ELAPSED}s"
    flwr stop "$RUN_ID" local --format json >"$WORK/stop.json" 2>&1 || true
    cat "$WORK/stop.json" >&2
    STOPPED=1
  fi
done
T_END=$(now_ms)
log "final status: $STATUS ($(( T_END - T_SUBMIT )) ms after submit)"
cat "$WORK/list.json"

# ServerApp output only reaches `flwr log` (SuperExec discards its stdout/stderr).
flwr log "$RUN_ID" local --show >"$WORK/logs/serverapp.log" 2>&1 || true

"$PY" - "$WORK/events.jsonl" "$T_SUBMIT" <<'EOF'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])] if __import__("os").path.exists(sys.argv[1]) else []
t0 = float(sys.argv[2])
metrics = [e for e in events if e["type"] == "metric"]
print(f"events: {len(events)} ({len(metrics)} metric, "
      f"{sum(e['type'] == 'log' for e in events)} log)", file=sys.stderr)
for e in metrics:
    print(f"  +{(e['at'] - t0) / 1000:6.2f}s round {e['round']} {e['phase']:15} "
          f"{e['values']}  (delivered in {e['received_at'] - e['at']:.1f} ms)", file=sys.stderr)
for e in events:
    if e["type"] == "end":
        print(f"  end: {e}", file=sys.stderr)
EOF
