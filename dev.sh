#!/usr/bin/env bash
# vfio-emu's one entry point. Each command is complete on a fresh Debian 12 machine: it installs
# what is missing, builds, then does its job.
#
#   ./dev.sh demo     start the daemon and a client, show the mappings (the main job)
#   ./dev.sh test     build with g++ and clang++ (-Werror), run every test, print "N passed, N failed"
#   ./dev.sh build    just build (build/, g++)
#   ./dev.sh bench    run the benchmarks (README.md, "Performance")
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
    build build g++ gcc
    if build build-clang clang++ clang; then
      extra+=("build with clang++ -Werror:ok")
    else
      ninja -C build-clang | tail -30 || true
      extra+=("build with clang++ -Werror:fail")
    fi
    meson test -C build --no-rebuild --print-errorlogs --num-processes "$jobs" || true
    exec scripts/test_summary.py build/meson-logs/testlog.json "${extra[@]}"
    ;;
  bench)
    configure build-release g++ gcc
    meson configure build-release --buildtype=release -Db_ndebug=true >/dev/null
    ninja -C build-release >/dev/null
    meson test -C build-release --benchmark --no-rebuild --verbose
    ;;
  demo)
    build build g++ gcc
    exec scripts/demo.sh build
    ;;
  *)
    sed -n '2,10p' "$0"
    exit 2
    ;;
esac
