#!/usr/bin/env bash
# Configures and builds with a CMake preset (default: ci = Release + tests, CUDA plugin when nvcc is found).
# ccache is keyed relative to the parent folder so that fresh clones hit the cache.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PRESET="${1:-ci}"
export CCACHE_BASEDIR="$(dirname "$ROOT")"
export CCACHE_NOHASHDIR=1
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
cd "$ROOT"
cmake --preset "$PRESET" >/dev/null
cmake --build --preset "$PRESET"
