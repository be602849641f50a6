#!/usr/bin/env bash
# ioat-bench under `vfio-emu run`: there the program's stores to BAR0 trap and reach the I/OAT
# model at once (tools/store_watch.h), so the store doorbell's latency is the trap's, not the
# mirror's poll.
#   run_ioat_under_run.sh VFIO_EMU IOAT_BENCH [--quick]
set -euo pipefail
tool=$1 bench=$2
shift 2
echo "== Under vfio-emu run (BAR0 stores trapped), $(nproc) CPUs, $(uname -r)"
# The daemon run starts is the newest vfio-emud (its CPU time is measured).
exec "$tool" run -- sh -c 'exec "$0" /dev "$(pgrep -n -x vfio-emud)" "$@"' "$bench" "$@"
