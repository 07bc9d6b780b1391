#!/usr/bin/env bash
# Builds the Debian package bmserver_<version>_<arch>.deb from a build folder (default build/release, configured
# with the release preset when missing): bmserverd, bmserver, and the CUDA plugin when that build has made it.
# Prints the path of the .deb. `cmake --build --preset release --target package` does the same after building
# everything.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build/release}"
OUT="${2:-$BUILD/package}"
export CCACHE_BASEDIR="$(dirname "$ROOT")"
export CCACHE_NOHASHDIR=1
cd "$ROOT"
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake --preset release >/dev/null
fi
cmake --build "$BUILD" --target bmserverd bmserver bm_package_docs >/dev/null
mkdir -p "$OUT"
cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$OUT" >/dev/null
ls "$OUT"/bmserver_*.deb
