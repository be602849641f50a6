#!/bin/bash
# A daemon killed with SIGKILL leaves its FUSE mount behind, dead (ENOTCONN). The next daemon on
# the same directory removes it instead of mounting on top of it; it never mounts over a live
# daemon's mount, nor over one whose daemon is stopped (SIGSTOP).
#
#   dead_mount.sh DAEMON
set -u
daemon=$1
work=$(mktemp -d /tmp/vfio-emu-dead.XXXXXX) || exit 1
dir=$work/dev
failures=0
pids=()
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok   $*"; }
mounts_at() { awk -v d="$1" '$5 == d { n++ } END { print n + 0 }' /proc/self/mountinfo; }
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill -CONT "$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null
  done
  while [[ $(mounts_at "$dir") -gt 0 ]]; do umount -l "$dir" || break; done
  rm -rf "$work"
}
trap cleanup EXIT

# start NAME: a daemon on $dir with its own control socket and log; sets pid. Returns non-zero
# if it exited before it was ready.
start() {
  "$daemon" --transport fuse --dev-dir "$dir" --control "$work/$1.sock" --foreground \
    2>"$work/$1.log" &
  pid=$!
  pids+=("$pid")
  for ((i = 0; i < 200; i++)); do
    grep -q 'vfio-emud: ready' "$work/$1.log" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

echo "-- a daemon killed with SIGKILL"
start first || { fail "the first daemon did not start"; cat "$work/first.log"; exit 1; }
kill -KILL "$pid"
wait "$pid" 2>/dev/null
[[ $(mounts_at "$dir") == 1 ]] && ok "its dead mount stays" || fail "no dead mount to test with"

echo "-- the next daemon on the same directory"
if start second; then
  ok "it starts"
  grep -q 'removed the dead vfio-emu mount' "$work/second.log" && ok "it says it removed the dead mount" ||
    fail "no log line about the dead mount"
  [[ $(mounts_at "$dir") == 1 ]] && ok "one mount at the directory" ||
    fail "$(mounts_at "$dir") mounts at the directory"
  timeout 5 stat "$dir/vfio/vfio" >/dev/null 2>&1 && ok "its nodes answer" || fail "its nodes do not answer"
  second=$pid
else
  fail "it did not start: $(tail -3 "$work/second.log")"
  second=
fi

echo "-- a third daemon while the second serves"
if start third; then
  fail "it started over a live daemon's mount"
else
  grep -q 'another vfio-emud serves' "$work/third.log" && ok "it refuses: another daemon serves" ||
    fail "unexpected: $(tail -2 "$work/third.log")"
fi

if [[ -n $second ]]; then
  echo "-- a fourth daemon while the second is stopped (SIGSTOP)"
  kill -STOP "$second"
  if timeout 20 "$daemon" --transport fuse --dev-dir "$dir" --control "$work/fourth.sock" \
      --foreground 2>"$work/fourth.log"; then
    fail "it started over a stopped daemon's mount"
  else
    grep -q 'does not answer' "$work/fourth.log" && ok "it refuses: the daemon there does not answer" ||
      fail "unexpected: $(tail -2 "$work/fourth.log")"
  fi
  kill -CONT "$second"
  kill -TERM "$second"
  wait "$second" 2>/dev/null
  [[ $(mounts_at "$dir") == 0 ]] && ok "after it stops, nothing is mounted at the directory" ||
    fail "$(mounts_at "$dir") mounts left at the directory"
fi
echo "dead_mount: $failures failed"
[[ $failures == 0 ]]
