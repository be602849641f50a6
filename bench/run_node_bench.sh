#!/usr/bin/env bash
# Starts vfio-emud in FUSE mode on a temporary directory and runs node-bench against it.
#   run_node_bench.sh VFIO_EMUD NODE_BENCH [--quick]
set -euo pipefail
daemon=$1 bench=$2
shift 2
dir=$(mktemp -d /tmp/vfio-emu-bench.XXXXXX)
cleanup() {
  [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  mountpoint -q "$dir/dev" && umount -l "$dir/dev" || true
  rm -rf "$dir"
}
trap cleanup EXIT
"$daemon" --transport fuse --dev-dir "$dir/dev" --control "$dir/control.sock" --foreground \
  --log-level ${VFIO_EMU_BENCH_LOG:-warn} 2>"$dir/daemon.log" &
pid=$!
for _ in $(seq 100); do grep -q 'vfio-emud: ready' "$dir/daemon.log" 2>/dev/null && break; sleep 0.1; done
grep -q 'vfio-emud: ready' "$dir/daemon.log" || { cat "$dir/daemon.log" >&2; exit 1; }
echo "== Through the node: FUSE, $(nproc) CPUs, $(uname -r)"
"$bench" "$dir/dev" "$pid" "$@" || { tail -20 "$dir/daemon.log" >&2; exit 1; }
