#!/usr/bin/env bash
# The main job of the quick start: for now, a tour of the simulated IOMMU backends.
set -euo pipefail
build=${1:-build}
"$build/tools/vfio-emu-backend-demo"
