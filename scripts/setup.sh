#!/usr/bin/env bash
# Installs the Debian 12 packages vfio-emu needs to build, test and benchmark.
# Idempotent: installs only what is missing. Run as root (or as a user with sudo).
set -euo pipefail

packages=(
  g++ clang libclang-rt-14-dev meson ninja-build pkg-config python3
  libfuse3-dev fuse3
  libspdlog-dev libfmt-dev
  catch2 libcli11-dev nlohmann-json3-dev libtomlplusplus-dev
  libbenchmark-dev
  jq util-linux
  make uuid-dev xz-utils debian-archive-keyring  # tests/linux_selftests: building Linux's VFIO selftests
  pciutils  # tests/run/sysfs_test.sh: lspci -vv of the emulated devices under vfio-emu run
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "setup: installing ${missing[*]}" >&2
for attempt in 1 2 3; do
  if "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
     "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
       apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "setup: apt-get failed (attempt $attempt), retrying" >&2
  sleep $((attempt * 5))
done
echo "setup: could not install ${missing[*]}" >&2
exit 1
