#!/bin/sh
# real_cuse_examples.sh VFIO_EMUD [EXAMPLE...]
#
# Runs the example programs against real CUSE nodes: vfio-emud --transport cuse with the nodes
# under /dev/vfio-emu-test/, each example given that directory as its node directory. Needs a
# kernel with CONFIG_CUSE and access to /dev/cuse; without them the test reports skipped (77),
# never passed. No example given (none built yet) is a skip too, with a message.
set -u
emud=$1
shift
prefix=vfio-emu-test
nodes=/dev/$prefix

if [ ! -c /dev/cuse ]; then
  echo "SKIP: /dev/cuse does not exist (no CONFIG_CUSE in this kernel): nothing to run against"
  exit 77
fi
# Opening and closing /dev/cuse makes a CUSE connection that dies unanswered: harmless.
if ! (exec 3<>/dev/cuse) 2>/dev/null; then
  echo "SKIP: /dev/cuse exists but does not open read-write for uid $(id -u) (no cuse module?)"
  exit 77
fi
if [ "$#" -eq 0 ]; then
  echo "SKIP: no example programs (examples/meson.build defines no example_programs yet)"
  exit 77
fi
for p in "$@"; do
  if [ ! -x "$p" ]; then
    echo "FAIL: example $p is not an executable"
    exit 1
  fi
done
if [ -e "$nodes" ]; then
  echo "FAIL: $nodes already exists (another daemon with prefix $prefix/ running?)"
  exit 1
fi

tmp=$(mktemp -d)
log=$tmp/vfio-emud.log
"$emud" --transport cuse --cuse-prefix "$prefix/" --foreground --control "$tmp/control.sock" \
  --log-level debug 2>"$log" &
pid=$!
finish() {
  status=$1
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid"
    rc=$?
    if [ "$rc" -ne 0 ]; then
      echo "FAIL: vfio-emud exited with status $rc on SIGTERM"
      status=1
    fi
  fi
  echo "---- vfio-emud log ----"
  cat "$log"
  rm -rf "$tmp"
  exit "$status"
}

# wait_until TRIES FAILURE COMMAND...: runs COMMAND every 10 ms until it succeeds; the test fails
# with FAILURE after TRIES tries, or at once if the daemon dies. Leaves the tries it took in $waited.
wait_until() {
  tries=$1
  failure=$2
  shift 2
  waited=0
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "FAIL: vfio-emud exited while waiting: $failure"
      finish 1
    fi
    waited=$((waited + 1))
    if [ "$waited" -gt "$tries" ]; then
      echo "FAIL: $failure"
      finish 1
    fi
    sleep 0.01
  done
}
# shellcheck disable=SC2317  # both are called through wait_until
said_ready() { grep -q 'vfio-emud: ready' "$log"; }
# shellcheck disable=SC2317
nodes_exist() { [ -c "$nodes/vfio/vfio" ] && [ -c "$nodes/iommu" ]; }

# Ready: the daemon says so on stderr, and the nodes must then exist.
wait_until 1000 "vfio-emud not ready after 10 s" said_ready
wait_until 500 "$nodes/vfio/vfio and $nodes/iommu did not appear within 5 s of 'ready'" nodes_exist
if [ "$waited" -gt 0 ]; then
  echo "NOTE: the nodes appeared only after 'vfio-emud: ready' (waited $waited x 10 ms)"
fi

status=0
for p in "$@"; do
  case "$(basename "$p")" in
    ioat_memcpy)  # a driver needs its BAR: CUSE has no region offsets and no mmap (README §6)
      echo "== $(basename "$p"): not run over CUSE (it drives the device through its BAR)"
      continue ;;
  esac
  echo "== $(basename "$p") $nodes"
  if timeout 60 "$p" "$nodes"; then
    echo "== $(basename "$p"): ok"
  else
    echo "== $(basename "$p"): FAILED (status $?)"
    status=1
  fi
done
finish "$status"
