#!/usr/bin/env bash
# vfio-emu run: programs with hard-coded paths run unmodified, and the host does not change.
#   run_test.sh VFIO_EMU TYPE1_PROG TYPE1_STATIC_PROG CDEV_PROG NOIOMMU_PROG
set -euo pipefail
tool=$1 type1=$2 type1_static=$3 cdev=$4 noiommu=$5
fail() { echo "FAIL: $*" >&2; exit 1; }

# What the host looks like, before and after: /dev and the sysfs places run overlays, mounts.
snapshot() {
  { ls -la /dev | grep -v ' pts$\| ptmx$' | awk '{print $1, $NF}';
    ls /sys/bus/pci/devices /sys/class /sys/kernel /sys/bus/pci/drivers;
    grep -v 'fuse.vfio-emu' /proc/self/mountinfo | awk '{print $5, $9}' | sort; } 2>&1
}
before=$(snapshot)
# Our runs' temporary directories go to a directory of our own: other tests may run `vfio-emu
# run` meanwhile, and theirs are in /tmp.
export TMPDIR
TMPDIR=$(mktemp -d /tmp/run-test.XXXXXX)

# GET_DEVICE_FD works for every program: dynamic, static, raw syscall() (no preload).
out=$(timeout 60 "$tool" run -- "$type1" 0000:00:01.0 libc 2>&1) || fail "type1: $out"
echo "$out"
out=$(timeout 60 "$tool" run -- "$type1" 0000:00:02.0 raw-syscall 2>&1) || fail "type1, raw syscall: $out"
echo "$out"
# ... and from a thread that is not the thread-group leader (the seccomp notification names the
# thread; Linux serves any thread of the process).
out=$(timeout 60 "$tool" run -- "$type1" 0000:00:02.0 thread 2>&1) || fail "type1, from a thread: $out"
echo "$out"
out=$(timeout 60 "$tool" run -- "$type1_static" 0000:00:01.0 raw-syscall 2>&1) ||
  fail "static type1: $out"
echo "$out"
out=$(timeout 60 "$tool" run -- "$cdev" 0000:00:02.0) || fail "cdev flow: $out"
echo "$out"
# ... and for a no-IOMMU group (enable_unsafe_noiommu_mode), whose device has a noiommu- cdev.
out=$(timeout 60 "$tool" run --enable-unsafe-noiommu-mode -- "$noiommu" /dev run 2>&1) ||
  fail "noiommu under run: $out"
echo "$out"

# The program's exit status is run's.
set +e
timeout 60 "$tool" run -- sh -c 'exit 7'
[ $? -eq 7 ] || fail "exit status not propagated"
timeout 60 "$tool" run -- sh -c 'kill -TERM $$'
[ $? -eq $((128 + 15)) ] || fail "death by signal not reported as 128+N"
timeout 60 "$tool" run -- /nonexistent/program 2>/dev/null
[ $? -eq 127 ] || fail "a missing program is not 127"
set -e

# What the program leaves running still has the nodes: run waits for it before the daemon stops.
tmp=$(mktemp -d)
# (sh forks and execs it: the seccomp filter that serves GET_DEVICE_FD survives both.)
timeout 60 "$tool" run -- sh -c "(sleep 1; '$type1_static' 0000:00:01.0 libc >'$tmp/out' 2>&1;
  echo \$? >'$tmp/rc') & exit 0" || fail "run with a background process"
[ "$(cat "$tmp/rc" 2>/dev/null)" = 0 ] ||
  fail "the program's background process did not finish with the daemon there: $(cat "$tmp/out" 2>/dev/null)"
# ... and one that would run forever is ended after --grace.
timeout 60 "$tool" run --grace 1 -- sh -c 'sleep 987654 & exit 0' 2>/dev/null ||
  fail "run with a lingering background process"
pgrep -f 'sleep 987654' >/dev/null && fail "a process the program left was not ended"
rm -rf "$tmp"

# --keep-daemon leaves it serving; --control reuses it.
log=$(mktemp)
timeout 60 "$tool" run --keep-daemon -- true 2>"$log" || fail "keep-daemon run"
ctl=$(sed -n 's/.*--control \([^,]*\), nodes in.*/\1/p' "$log")
pid=$(sed -n 's/.*pid \([0-9]*\),.*/\1/p' "$log")
[ -n "$ctl" ] && [ -n "$pid" ] && kill -0 "$pid" || fail "no daemon kept: $(cat "$log")"
out=$(timeout 60 "$tool" run --control "$ctl" -- "$cdev" 0000:00:01.0) || fail "reuse: $out"
echo "$out"
kill -TERM "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "kept daemon did not stop"
rm -rf "$(dirname "$ctl")" "$log"

after=$(snapshot)
if [ "$before" != "$after" ]; then
  diff <(echo "$before") <(echo "$after") >&2 || true
  fail "the host changed"
fi
ls "$TMPDIR" | grep -q '^vfio-emu-run\.' && fail "a temporary directory was left behind"
rmdir "$TMPDIR"
echo "run: all checks passed"
