#!/bin/sh
# pollen-supernode — runs one Pollen node's Flower SuperNode and keeps it running.
# Installed by Pollen's deploy-supernode.yml as NODE_DIR/bin/pollen-supernode; NODE_DIR is found
# from this script's own path. POSIX sh, needs only coreutils, util-linux's setsid and /proc.
#
#   pollen-supernode start        start the supervisor (detached) unless it runs;
#                                 prints "started ..." or "already running ..."
#   pollen-supernode restart      stop, then start; prints "restarted ..."
#   pollen-supernode stop         stop the supervisor and the SuperNode; prints "stopped" or "not running"
#   pollen-supernode status       exit 0 when the SuperNode process runs
#   pollen-supernode check SECS   wait up to SECS for the SuperNode to register with the SuperLink;
#                                 fail at once when it exits or logs a fatal error
#   pollen-supernode run          the supervisor itself (what start runs in a new session)
#
# The supervisor runs NODE_DIR/bin/supernode-launch (which appends to NODE_DIR/logs/supernode.log,
# writes run/supernode.pid and execs flower-supernode) in a process group of its own, and when it
# exits kills what is left of that group (flower-superexec, ClientApps), waits 2 s and starts it
# again. SIGTERM stops it: the SuperNode's group gets SIGTERM, then SIGKILL after 10 s.
# Pid files: NODE_DIR/run/supervisor.pid, NODE_DIR/run/supernode.pid. Under systemd (see the
# playbook) systemd supervises the launcher instead, and only status/check are used.
set -u

NODE_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd) || exit 1
SELF=$NODE_DIR/bin/pollen-supernode
LAUNCH=$NODE_DIR/bin/supernode-launch
RUN_DIR=$NODE_DIR/run
LOG=$NODE_DIR/logs/supernode.log
SUPERVISOR_PID=$RUN_DIR/supervisor.pid
SUPERNODE_PID=$RUN_DIR/supernode.pid
LAUNCH_MARK='==> pollen-supernode: starting flower-supernode'
# Flower 1.42 logs "SuperNode ID: <id>" once the SuperLink has registered (and activated) the node.
CONNECTED='SuperNode ID:'
# ... and "ERROR : ..." plus "Exit Code: <n>" before a fatal exit (TLS, authentication, ...).
FATAL='ERROR|Exit Code:|Traceback'
ESC=$(printf '\033')

say() { printf '==> pollen-supernode: %s\n' "$*"; }

# ours PID: the process is alive and belongs to this node (its command line names NODE_DIR), so a
# pid file left behind never makes us signal an unrelated process that reused the pid.
ours() {
  [ -n "${1:-}" ] && [ -r "/proc/$1/cmdline" ] || return 1
  tr '\000' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$NODE_DIR/"
}

pid_from() { [ -f "$1" ] && head -n 1 "$1" 2>/dev/null | tr -cd '0-9'; }

# stop_group PGID: SIGTERM the process group, SIGKILL what is left after 10 s.
stop_group() {
  kill -s TERM -- "-$1" 2>/dev/null || return 0
  i=0
  while kill -s 0 -- "-$1" 2>/dev/null && [ "$i" -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  kill -s KILL -- "-$1" 2>/dev/null || true
}

supervise() {
  mkdir -p "$RUN_DIR" "$NODE_DIR/logs"
  echo $$ >"$SUPERVISOR_PID"
  say "supervisor started (pid $$) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  stopping=''
  child=''
  trap 'stopping=1; [ -n "$child" ] && kill -s TERM -- "-$child" 2>/dev/null' TERM INT HUP
  while [ -z "$stopping" ]; do
    # Not a process group leader (no job control here), so setsid execs in place: $! is the
    # launcher, then flower-supernode, and the leader of a new session and process group.
    setsid "$LAUNCH" </dev/null >>"$LOG" 2>&1 &
    child=$!
    [ -n "$stopping" ] && kill -s TERM -- "-$child" 2>/dev/null
    while :; do
      wait "$child"
      status=$?
      kill -0 "$child" 2>/dev/null || break # else wait was interrupted by a signal
    done
    stop_group "$child" # flower-superexec and ClientApps outlive the SuperNode otherwise
    rm -f "$SUPERNODE_PID"
    child=''
    [ -n "$stopping" ] && break
    say "flower-supernode exited with status $status; restarting in 2 s"
    sleep 2 &
    wait $! 2>/dev/null
  done
  rm -f "$SUPERVISOR_PID" "$SUPERNODE_PID"
  say "supervisor stopped at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
}

supervisor_running() { ours "$(pid_from "$SUPERVISOR_PID")"; }
supernode_running() { ours "$(pid_from "$SUPERNODE_PID")"; }

start() {
  if supervisor_running; then
    echo "already running (supervisor $(pid_from "$SUPERVISOR_PID"), supernode $(pid_from "$SUPERNODE_PID"))"
    return 0
  fi
  [ -x "$LAUNCH" ] || { echo "missing $LAUNCH" >&2; return 1; }
  mkdir -p "$RUN_DIR" "$NODE_DIR/logs"
  # A SuperNode whose supervisor was killed (kill -9) still runs: stop it first.
  orphan=$(pid_from "$SUPERNODE_PID")
  if ours "$orphan"; then stop_group "$orphan"; fi
  rm -f "$SUPERVISOR_PID" "$SUPERNODE_PID"
  # The subshell exits at once, so the supervisor is nobody's child and setsid needs no fork.
  (setsid "$SELF" run </dev/null >>"$LOG" 2>&1 &)
  i=0
  while [ "$i" -lt 100 ]; do
    if supervisor_running && supernode_running; then
      echo "started (supervisor $(pid_from "$SUPERVISOR_PID"), supernode $(pid_from "$SUPERNODE_PID"))"
      return 0
    fi
    sleep 0.1
    i=$((i + 1))
  done
  echo "the supervisor did not start; last lines of $LOG:" >&2
  tail -n 20 "$LOG" 2>/dev/null | sed "s/$ESC\[[0-9;]*m//g" >&2
  return 1
}

stop() {
  supervisor=$(pid_from "$SUPERVISOR_PID")
  supernode=$(pid_from "$SUPERNODE_PID")
  stopped=''
  if ours "$supervisor"; then
    kill -TERM "$supervisor" 2>/dev/null
    i=0
    while ours "$supervisor" && [ "$i" -lt 150 ]; do
      sleep 0.1
      i=$((i + 1))
    done
    # Still there after 15 s: the supervisor's own group (it leads it), then the SuperNode's.
    ours "$supervisor" && kill -s KILL -- "-$supervisor" 2>/dev/null
    stopped=1
  fi
  if ours "$supernode"; then
    stop_group "$supernode"
    stopped=1
  fi
  rm -f "$SUPERVISOR_PID" "$SUPERNODE_PID"
  if [ -n "$stopped" ]; then echo stopped; else echo "not running"; fi
}

# The log since the SuperNode's latest start, without colours.
latest_run() {
  tail -n 2000 "$LOG" 2>/dev/null | sed "s/$ESC\[[0-9;]*m//g" |
    awk -v mark="$LAUNCH_MARK" 'index($0, mark) == 1 { buf = "" } { buf = buf $0 "\n" } END { printf "%s", buf }'
}

check() {
  timeout=${1:-60}
  case $timeout in '' | *[!0-9]*) echo "check: bad timeout '$timeout'" >&2; return 2 ;; esac
  waited=0
  while :; do
    run_log=$(latest_run)
    if supernode_running && printf '%s\n' "$run_log" | grep -q -- "$CONNECTED"; then
      echo "connected: $(printf '%s\n' "$run_log" | grep -o -- "$CONNECTED *[0-9]*" | tail -n 1)"
      return 0
    fi
    if printf '%s\n' "$run_log" | grep -Eq -- "$FATAL"; then
      echo "the SuperNode failed to connect to the SuperLink:" >&2
      printf '%s\n' "$run_log" | grep -v '^INFO: ' | tail -n 15 >&2
      return 1
    fi
    if ! supernode_running; then
      echo "the SuperNode is not running; last lines of its log:" >&2
      tail -n 15 "$LOG" 2>/dev/null | sed "s/$ESC\[[0-9;]*m//g" >&2
      return 1
    fi
    if [ "$waited" -ge "$timeout" ]; then
      echo "the SuperNode did not connect to the SuperLink within $timeout s; last lines of its log:" >&2
      printf '%s\n' "$run_log" | tail -n 15 >&2
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
}

case "${1:-}" in
  run) supervise ;;
  start) start ;;
  stop) stop ;;
  restart)
    stop >/dev/null
    out=$(start)
    status=$?
    printf '%s\n' "$out" | sed 's/^started/restarted/'
    exit "$status"
    ;;
  status) supernode_running ;;
  check) check "${2:-60}" ;;
  *) sed -n '2,15s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
esac
