#!/usr/bin/env bash
# vfio-emu run: sysfs and debugfs files as Linux answers them, and lspci reading them.
#   sysfs_test.sh VFIO_EMU SYSFS_FILES_PROG
set -euo pipefail
tool=$1 prog=$2
fail() { echo "FAIL: $*" >&2; exit 1; }

# open/read/write with Linux's errnos, per-open debugfs contents (root: kernfs refuses it too).
out=$(timeout 60 "$tool" run -- "$prog" 0000:00:05.0 2>&1) || fail "sysfs files: $out"
echo "$out"

# lspci (pciutils) shows the I/OAT model from its config space and resource file: ids, driver,
# BAR and the capabilities of its 4 KiB config space.
if ! command -v lspci >/dev/null; then
  echo "lspci not installed (pciutils): skipping its checks"; exit 77
fi
out=$(timeout 60 "$tool" run -- lspci -vvnn -s 0000:00:05.0 2>&1) || fail "lspci: $out"
echo "$out"
for want in '^0000:00:05.0 .*\[8086:2021\]' 'Kernel driver in use: vfio-pci' \
            'Region 0: Memory at .* \(64-bit, non-prefetchable\).* \[size=16K\]' \
            'Capabilities: \[[0-9a-f]+\] Power Management' \
            'Capabilities: \[[0-9a-f]+\] MSI-X: Enable- Count=1' \
            'Capabilities: \[[0-9a-f]+\] Express'; do
  grep -Eq "$want" <<<"$out" || fail "lspci: no line matching '$want'"
done
# Only the emulated devices are there.
out=$(timeout 60 "$tool" run -- lspci -n 2>&1) || fail "lspci -n: $out"
echo "$out"
[ "$(grep -c . <<<"$out")" = 5 ] || fail "lspci -n: not the 5 devices of the built-in machine"
grep -q '^0000:00:05.0 ' <<<"$out" || fail "lspci -n lists no 0000:00:05.0"
grep -q '^0000:00:01.0 ' <<<"$out" || fail "lspci -n lists no 0000:00:01.0"
echo "run sysfs: all checks passed"
