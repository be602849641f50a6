#!/bin/bash
# Starts the real vfio-emud in FUSE mode on a fresh temporary directory, waits until its nodes
# exist, runs one client program against them, and always cleans up: the daemon is stopped (and
# killed if it does not stop), a mount that is still there is lazily unmounted, the directory is
# removed. The client always runs under `timeout`, so a hang fails the test instead of blocking it.
#
#   run_with_daemon.sh [OPTIONS] DAEMON [DAEMON ARGS...] -- PROGRAM [ARGS...]
#
# PROGRAM runs as `PROGRAM NODE_DIR ARGS...`; its exit status is the test's.
#
# Options:
#   --second-daemon   also start a second daemon (--log-level debug) on its own directory
#   --daemon-may-exit the client stops the daemon itself; do not fail when it is gone
#   --timeout SECONDS how long the client may run (default 60)
#   --daemon-nofile N the daemon runs with RLIMIT_NOFILE N (soft and hard)
#
# The client finds in its environment:
#   VFIO_EMU_DAEMON_PID, VFIO_EMU_DAEMON_LOG        the daemon and its stderr
#   VFIO_EMU_DEV2, VFIO_EMU_DAEMON2_PID, VFIO_EMU_DAEMON2_LOG   the second daemon (if started)
set -u

second=0
may_exit=0
client_timeout=60
nofile=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --second-daemon) second=1; shift ;;
    --daemon-may-exit) may_exit=1; shift ;;
    --timeout) client_timeout="$2"; shift 2 ;;
    --daemon-nofile) nofile=(prlimit "--nofile=$2:$2"); shift 2 ;;
    *) break ;;
  esac
done
if [[ $# -lt 3 ]]; then
  echo "usage: $0 [--second-daemon] [--daemon-may-exit] [--timeout S] DAEMON [ARGS] -- PROGRAM [ARGS]" >&2
  exit 2
fi
daemon="$1"
shift
daemon_args=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
  daemon_args+=("$1")
  shift
done
if [[ $# -lt 2 ]]; then
  echo "$0: no '-- PROGRAM' given" >&2
  exit 2
fi
shift  # the --
program=("$@")

work=$(mktemp -d /tmp/vfio-emu-it.XXXXXX) || exit 1
pids=()
dirs=()

mounted() {
  # From the mount table, not stat(): stat on a dead FUSE mount can block or fail.
  awk -v d="$1" '$2 == d { found = 1 } END { exit !found }' /proc/self/mounts
}

# Aborts the FUSE connection of every mount of ours, through the kernel's fusectl: a client or
# daemon thread waiting on a request of a deadlocked daemon then comes back with ENOTCONN, and
# nothing is left in D state (a regression of the daemon must fail the test, not hang the suite).
abort_connections() {
  local dir minor
  [[ -d /sys/fs/fuse/connections ]] || return
  ls /sys/fs/fuse/connections/ 2>/dev/null | grep -q . ||
    mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null
  for dir in "${dirs[@]}"; do
    minor=$(awk -v d="$dir" '$5 == d { split($3, a, ":"); m = a[2] } END { print m }' \
      /proc/self/mountinfo)
    if [[ -n $minor && -w /sys/fs/fuse/connections/$minor/abort ]]; then
      echo "run_with_daemon: aborting the FUSE connection of $dir" >&2
      echo 1 >"/sys/fs/fuse/connections/$minor/abort" 2>/dev/null
    fi
  done
}

# wait_gone PID SECONDS: true once every thread of PID has exited within SECONDS (a zombie
# leader whose other threads still wait in the kernel is not gone).
wait_gone() {
  local i states
  for ((i = 0; i < $2 * 10; i++)); do
    states=$(cat /proc/"$1"/task/*/stat 2>/dev/null | awk '$3 != "Z"' | wc -l)
    [[ $states == 0 ]] && return 0
    sleep 0.1
  done
  return 1
}

cleanup() {
  local pid dir i
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || continue
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "run_with_daemon: daemon $pid ignored SIGTERM for 5 s: SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null
      # A thread of it waiting on its own mount keeps the whole process (and the mount) alive.
      wait_gone "$pid" 5 || abort_connections
    fi
    wait "$pid" 2>/dev/null
  done
  for dir in "${dirs[@]}"; do
    if mounted "$dir"; then
      echo "run_with_daemon: $dir is still mounted after the daemon stopped: umount -l" >&2
      umount -l "$dir" 2>/dev/null || fusermount3 -uz "$dir" 2>/dev/null
    fi
  done
  for dir in "${dirs[@]}"; do
    if mounted "$dir"; then
      echo "run_with_daemon: $dir could not be unmounted; leaving $work" >&2
      return
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_daemon NAME [EXTRA ARGS]: sets started_pid; the nodes are at $work/NAME.
start_daemon() {
  local name="$1" i
  shift
  local dir="$work/$name" log="$work/$name.log"
  mkdir -p "$dir"
  : >"$log"
  dirs+=("$dir")
  "${nofile[@]}" "$daemon" --transport fuse --dev-dir "$dir" --control "$work/$name.sock" --foreground \
    "$@" 2>"$log" &
  started_pid=$!
  pids+=("$started_pid")
  for ((i = 0; i < 200; i++)); do
    if grep -q 'vfio-emud: ready' "$log"; then
      return 0
    fi
    if ! kill -0 "$started_pid" 2>/dev/null; then
      echo "run_with_daemon: the daemon exited before it was ready:" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
  echo "run_with_daemon: the daemon was not ready after 10 s:" >&2
  cat "$log" >&2
  exit 1
}

start_daemon dev "${daemon_args[@]}"
export VFIO_EMU_DAEMON_PID=$started_pid VFIO_EMU_DAEMON_LOG="$work/dev.log"
if [[ $second == 1 ]]; then
  start_daemon dev2 --log-level debug
  export VFIO_EMU_DEV2="$work/dev2" VFIO_EMU_DAEMON2_PID=$started_pid \
         VFIO_EMU_DAEMON2_LOG="$work/dev2.log"
fi

timeout -k 5 "$client_timeout" "${program[@]:0:1}" "$work/dev" "${program[@]:1}" &
client=$!
# A client killed while its threads wait on a deadlocked daemon cannot die until the requests
# end: abort the connections then, so the test fails instead of hanging.
wait_gone "$client" $((client_timeout + 10)) || abort_connections
wait "$client"
rc=$?
if [[ $rc == 124 || $rc == 137 ]]; then
  echo "run_with_daemon: ${program[0]} did not finish within ${client_timeout} s (hung?)" >&2
  rc=1
fi
if [[ $may_exit == 0 ]] && ! kill -0 "$VFIO_EMU_DAEMON_PID" 2>/dev/null; then
  echo "run_with_daemon: the daemon died while ${program[0]} ran" >&2
  rc=1
fi
if [[ $rc != 0 ]]; then
  echo "---- daemon log (last 40 lines) ----" >&2
  tail -n 40 "$work/dev.log" >&2
fi
exit "$rc"
