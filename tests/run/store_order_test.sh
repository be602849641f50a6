#!/usr/bin/env bash
# vfio-emu run: stores to the I/OAT engine's mapped BAR0 take effect before the program's next
# load (tools/store_watch.h), from threads and a forked child; and without the watcher
# (--no-store-watch) the same program sees loads that missed its stores, so the check can fail.
#   store_order_test.sh VFIO_EMU STORE_ORDER_PROG
set -uo pipefail
tool=$1 prog=$2
out=$(timeout 120 "$tool" run -- "$prog" vfio4 2>&1); rc=$?
echo "$out"
[ $rc -eq 77 ] && exit 77
if [ $rc -ne 0 ]; then echo "FAIL: with the store watch: exit $rc"; exit 1; fi
out=$(timeout 120 "$tool" run --no-store-watch -- "$prog" vfio4 2>&1); rc=$?
echo "$out" | tail -3
if [ $rc -ne 2 ]; then echo "FAIL: without the store watch: exit $rc, expected 2 (stale loads)"; exit 1; fi
out=$(timeout 60 "$tool" run -- "$prog" vfio4 rmw 2>&1); rc=$?
echo "$out" | tail -2
if [ $rc -ne 139 ] || ! grep -q "cannot carry out" <<<"$out"; then
  echo "FAIL: a read-modify-write store: exit $rc, expected 139 (SIGSEGV) and run's line"; exit 1
fi
echo "ok: ordered with the watch, stale loads without it, an unknown store instruction SIGSEGV"
