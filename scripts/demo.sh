#!/usr/bin/env bash
# The main job of the quick start: start vfio-emud (CUSE where the kernel has it, else FUSE),
# run the type1 example of Linux's vfio.rst against its nodes while it holds its mapping, and
# show with the vfio-emu tool what the program mapped, the page table and a translation; then (FUSE)
# drive the emulated I/OAT DMA engine through its mapped BAR, with a copy and an IOMMU fault.
#
#   scripts/demo.sh [BUILD_DIR]        (./dev.sh demo builds first, then runs this)
set -euo pipefail
build=${1:-build}
emud=$build/cuse/vfio-emud
tool=$build/tools/vfio-emu
example=$build/examples/type1

work=$(mktemp -d /tmp/vfio-emu-demo.XXXXXX)
sock=$work/control.sock
export VFIO_EMU_CONTROL=$sock
daemon_pid='' client_pid=''
cleanup() {
  [ -n "$client_pid" ] && kill "$client_pid" 2>/dev/null || true
  exec 7>&- 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  mountpoint -q "$work/dev" 2>/dev/null && umount -l "$work/dev" || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

# ---- 1. the daemon ----------------------------------------------------------------------------
if [ -c /dev/cuse ] && [ -w /dev/cuse ]; then
  transport=cuse prefix=vfio-emu-demo.$$/ nodes=/dev/vfio-emu-demo.$$
  args=(--transport cuse --cuse-prefix "$prefix")
else
  transport=fuse nodes=$work/dev
  args=(--transport fuse --dev-dir "$nodes")
fi
step "1. vfio-emud ($transport: $( [ $transport = cuse ] && echo "/dev/cuse is here" || echo "this kernel has no CUSE"))"
"$emud" "${args[@]}" --control "$sock" --foreground --log-level warn 2>"$work/daemon.log" &
daemon_pid=$!
for _ in $(seq 100); do
  grep -q 'vfio-emud: ready' "$work/daemon.log" 2>/dev/null && break
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q 'vfio-emud: ready' "$work/daemon.log"; then
  echo "vfio-emud did not start:" >&2
  cat "$work/daemon.log" >&2
  exit 1
fi
echo "vfio-emud (pid $daemon_pid) serves its nodes under $nodes:"
(cd "$nodes" && find . -mindepth 1 | sort | sed 's|^\./|  |')
show "$tool" status

# ---- 2. the type1 example, holding its mapping ------------------------------------------------
step "2. examples/type1.c: the type1 flow of Documentation/driver-api/vfio.rst"
mkfifo "$work/stdin"
"$example" --hold "$nodes" 1 0000:00:01.0 <"$work/stdin" >"$work/client.out" 2>&1 &
client_pid=$!
exec 7>"$work/stdin"  # the example's stdin stays open until we let it go
for _ in $(seq 100); do
  grep -q '^holding the mapping' "$work/client.out" && break
  kill -0 "$client_pid" 2>/dev/null || break
  sleep 0.1
done
sed 's/^/  | /' "$work/client.out"
grep -q '^holding the mapping' "$work/client.out" || { echo "type1 failed" >&2; exit 1; }

# ---- 3. what the tool sees while the mapping is held ------------------------------------------
step "3. vfio-emu: what that program holds right now"
show "$tool" list
show "$tool" maps
domain=$("$tool" --json list | python3 -c '
import json, sys
print([d for d in json.load(sys.stdin)["domains"] if d["owner"].startswith("container")][0]["id"])')
iova=$("$tool" --json maps | python3 -c '
import json, sys
print(json.load(sys.stdin)["mappings"][0]["iova"])')
show "$tool" pt --domain "$domain" --iova "$(printf '%#x..%#x' "$iova" $((iova + 0x3fff)))"
show "$tool" translate --domain "$domain" "$(printf '%#x' $((iova + 0x1234)))"
show "$tool" translate --domain "$domain" --write "$(printf '%#x' $((iova + 0x100000)))"
show "$tool" check

# ---- 4. the program unmaps and exits ----------------------------------------------------------
step "4. the example goes on: UNMAP_DMA, close"
exec 7>&-
wait "$client_pid"
client_pid=''
sed -n '/^holding the mapping/,$p' "$work/client.out" | tail -n +2 | sed 's/^/  | /'
show "$tool" maps
show "$tool" trace
show "$tool" stats

# ---- 5. a device that does DMA: the I/OAT engine -----------------------------------------------
if [ "$transport" = fuse ]; then
  step "5. examples/ioat_memcpy.c: a user-space driver of the I/OAT engine (group 5, vfio4)"
  show "$build/examples/ioat_memcpy" "$nodes" vfio4 | sed 's/^/  | /'
  step "   ... and a copy to an IOVA nothing is mapped at: an IOMMU fault, the channel halts"
  show "$build/examples/ioat_memcpy" "$nodes" vfio4 --fault | sed 's/^/  | /'
  show "$tool" faults
  "$tool" list | sed -n '/^Devices/,/^$/p'
fi
echo
echo "Everything above went through the real kernel ($transport) into vfio-emud."
echo "Try your own program: $build/tools/vfio-emu run -- ./my-vfio-program"
