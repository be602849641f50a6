#!/usr/bin/env bash
# vfio-emu's one entry point. Each command is complete on a fresh Debian 12 machine: it installs
# what is missing, builds, then does its job.
#
#   ./dev.sh demo     start the daemon and a client, show the mappings (the main job)
#   ./dev.sh test     build with g++ and clang++ (-Werror), run every test and the clang build's
#                     bounded fuzz run, print "N passed, N failed"
#   ./dev.sh build    just build (build/, g++)
#   ./dev.sh bench    run the benchmarks (README.md, "Performance")
#   ./dev.sh oracle   real Linux as the oracle: boot Debian's kernels under QEMU (TCG) with a
#                     device bound to vfio-pci, rewrite tests/oracle/golden/ (tests/oracle/README.md)
set -euo pipefail
cd "$(dirname "$0")"

scripts/setup.sh

configure() {  # configure DIR CXX CC
  local dir=$1
  if [ ! -f "$dir/build.ninja" ]; then
    CXX=$2 CC=$3 meson setup "$dir" --werror --buildtype=debugoptimized >/dev/null
  fi
}

build() {  # build DIR CXX CC
  configure "$@"
  ninja -C "$1" >/dev/null
}

jobs=$(nproc)
case "${1:-build}" in
  build)
    build build g++ gcc
    ;;
  test)
    extra=()
    logs=(build/meson-logs/testlog.json)
    build build g++ gcc
    clang_ok=0
    if build build-clang clang++ clang; then
      extra+=("build with clang++ -Werror:ok")
      clang_ok=1
    else
      ninja -C build-clang | tail -30 || true
      extra+=("build with clang++ -Werror:fail")
    fi
    meson test -C build --no-rebuild --print-errorlogs --num-processes "$jobs" || true
    # The clang build's fuzz suite: a bounded libFuzzer run (tests/fuzz/README.md). Built only
    # where clang has libFuzzer.
    if [ "$clang_ok" = 1 ] && [ -x build-clang/tests/fuzz/core-fuzzer ]; then
      meson test -C build-clang --no-rebuild --print-errorlogs --suite fuzz || true
      logs+=(build-clang/meson-logs/testlog.json)
    elif [ "$clang_ok" = 1 ]; then
      echo "fuzz suite not built: clang++ has no -fsanitize=fuzzer" >&2
    fi
    exec scripts/test_summary.py "${logs[@]}" "${extra[@]}"
    ;;
  bench)
    configure build-release g++ gcc
    meson configure build-release --buildtype=release -Db_ndebug=true >/dev/null
    ninja -C build-release >/dev/null
    meson test -C build-release --benchmark --no-rebuild --verbose
    ;;
  oracle)
    # QEMU and a static busybox, as packages; nothing already installed is upgraded.
    need=()
    command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
    [ -x /bin/busybox ] || need+=(busybox-static)
    for t in flex bison bc file; do command -v $t >/dev/null || need+=($t); done
    [ -f /usr/include/libelf.h ] || need+=(libelf-dev)
    if [ ${#need[@]} -gt 0 ]; then
      sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
      echo "oracle: installing ${need[*]}" >&2
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-upgrade \
        --no-install-recommends "${need[@]}" >/dev/null ||
        { echo "oracle: could not install ${need[*]} (apt-get failed): nothing done" >&2; exit 2; }
    fi
    configure build g++ gcc
    ninja -C build tests/oracle/oracle-transcript cuse/vfio-emud tools/vfio-emu examples/type1 \
      examples/spapr_v2 examples/iommufd_cdev examples/split_privilege examples/ioat_memcpy >/dev/null
    shift
    exec python3 tests/oracle/oracle.py --transcript build/tests/oracle/oracle-transcript \
      --daemon build/cuse/vfio-emud --tool build/tools/vfio-emu --examples build/examples "$@"
    ;;
  demo)
    build build g++ gcc
    exec scripts/demo.sh build
    ;;
  *)
    sed -n '2,11p' "$0"
    exit 2
    ;;
esac
