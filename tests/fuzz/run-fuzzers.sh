#!/usr/bin/env bash
# Builds every libFuzzer target (clang, ASan + UBSan) in build/fuzz and runs each for a bounded time.
# usage: tests/fuzz/run-fuzzers.sh [SECONDS_PER_TARGET]   (CI runs it briefly; crashes fail the run)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
SECONDS_PER_TARGET="${1:-60}"
cd "$ROOT"
export CCACHE_BASEDIR="$(dirname "$ROOT")" CCACHE_NOHASHDIR=1
# Fuzzers that need real tokenizers and templates read them from the shared models beside the checkout.
export BMSERVER_SHARED_MODELS="${BMSERVER_SHARED_MODELS:-$(dirname "$ROOT")/shared/models}"
CC=clang CXX=clang++ cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBMSERVER_CUDA=OFF \
  -DBMSERVER_BUILD_FUZZERS=ON -DCMAKE_CXX_COMPILER_LAUNCHER=ccache >/dev/null
targets=$(ninja -C build/fuzz -t targets all | grep -oE '^[a-z0-9_]+_fuzz:' | tr -d ':' | grep -v '^cmake_' | sort -u)
if [ -z "$targets" ]; then
  echo "run-fuzzers: no fuzz targets"
  exit 0
fi
ninja -C build/fuzz $targets
for target in $targets; do
  corpus="build/fuzz/corpus/$target"
  mkdir -p "$corpus"
  [ -d "tests/fuzz/corpus/$target" ] && cp -n tests/fuzz/corpus/$target/* "$corpus"/ 2>/dev/null || true
  dict=()
  [ -f "tests/fuzz/$target.dict" ] && dict=(-dict="tests/fuzz/$target.dict")
  echo "run-fuzzers: $target for ${SECONDS_PER_TARGET}s"
  set +e
  "build/fuzz/bin/$target" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "${dict[@]}" "$corpus" 2>&1 | tail -n 12
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "run-fuzzers: $target FAILED (exit $status); the crashing input is in the working directory (crash-*)"
    exit 1
  fi
done
echo "run-fuzzers: all targets ran clean"
