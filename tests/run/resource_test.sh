#!/usr/bin/env bash
# vfio-emu run: the testdev's sysfs resource0 as Linux's, mapped coherently with VFIO's BAR0.
#   resource_test.sh VFIO_EMU RESOURCE_FILES_PROG
set -euo pipefail
tool=$1 prog=$2
rc=0
out=$(timeout 60 "$tool" run -- "$prog" 0000:00:01.0 2>&1) || rc=$?
echo "$out"
exit $rc
