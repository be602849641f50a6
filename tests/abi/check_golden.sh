#!/usr/bin/env bash
# abi-golden: fails if the uAPI layouts or the command table printed by abi-dump differ from
# tests/abi/uapi.golden.
#
# Usage: check_golden.sh ABI_DUMP GOLDEN_FILE
#
# A difference means a struct, member offset or size, or a command (number, node, minimum size)
# changed. If the change is intended (for example a new uAPI struct or ioctl was added), regenerate the golden file from the top of the repository
# and commit it together with the change:
#
#   ninja -C build && build/tests/abi/abi-dump > tests/abi/uapi.golden
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 ABI_DUMP GOLDEN_FILE" >&2
  exit 2
fi
dump=$1
golden=$2

actual=$(mktemp)
trap 'rm -f "$actual"' EXIT
"$dump" > "$actual"

if ! diff -u --label "$golden (committed)" --label "abi-dump (this build)" "$golden" "$actual"; then
  echo >&2
  echo "abi-golden: the uAPI layout differs from $golden." >&2
  echo "If intended, regenerate it: build/tests/abi/abi-dump > tests/abi/uapi.golden" >&2
  exit 1
fi
echo "abi-golden: $(grep -c '^struct ' "$golden") structs and $(grep -c '^command ' "$golden") commands match $golden"
