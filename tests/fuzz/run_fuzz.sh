#!/bin/sh
# A bounded libFuzzer run of FUZZER from the seed corpus SEEDS, for SECONDS of wall time:
#
#   run_fuzz.sh FUZZER SEEDS WORKDIR SECONDS [libFuzzer options...]
#
# SEEDS is only read; the inputs the run finds go to WORKDIR/corpus (kept for the next run) and a
# crashing input to WORKDIR/artifacts/. The dictionary next to this script is used. Exits non-zero
# when the fuzzer finds a crash, a leak, a leftover (see core_fuzzer.cc) or a slow input (10 s).
set -eu
fuzzer=$1
seeds=$2
work=$3
seconds=$4
shift 4
mkdir -p "$work/corpus" "$work/artifacts"
exec "$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -dict="$(dirname "$0")/core.dict" -artifact_prefix="$work/artifacts/" "$@" \
  "$work/corpus" "$seeds"
