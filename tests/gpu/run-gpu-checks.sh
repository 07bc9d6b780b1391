#!/usr/bin/env bash
# The GPU checks of the CUDA backend. Nothing here has run on a GPU yet: the first GPU session runs it.
#
# A GPU session has 15 minutes of device time in all (machine start included, a few minutes) and at most 10 minutes
# per command, so the work is split into stages of bounded wall time. Run them in this order:
#
# 1. prepare (here, on the build machine, no GPU needed; ~1 min with a warm ccache, 5-15 min from cold), from the
#    repository root:
#        tests/gpu/run-gpu-checks.sh prepare
#    builds the plugin, bm_cuda_plugin_check, the kernel tests, the whole-model check and the benchmarks in build/dev
#    (configured here if it is not; BM_GPU_BUILD_DIR names another build folder), checks the plugin's dynamic dependencies (check-plugin-needed.sh: no NEEDED
#    libnccl, nothing "not found"), and stages build/gpu-bundle: the binaries (debug info stripped),
#    lib/bmserver/libbm_backend_cuda.so in the layout the engine looks for, the shared libraries the GPU machine
#    lacks (Debian's abseil; CUDA's own libraries are there), the three model configs (from ../shared/models;
#    Qwen2.5-0.5B's is derived from Qwen2.5-7B's with the published 0.5B sizes) and commit.txt (the git commit and
#    whether the tree was dirty: .git does not travel). The bundle must stay under the 64 MiB a run carries.
#
# 2. device kernels models (GPU machine; bounded by BM_GPU_CALL_BUDGET_S, default 420 s):
#        run(command="tests/gpu/run-gpu-checks.sh device kernels models", carry=["build/gpu-bundle"], timeout_s=480)
#    estimate 4-7 min: preflight <10 s, kernel tests <=180 s (they include the vision tower's encoder ops,
#    CudaBackendTest.RopeTable/Gelu/SegmentAttention*: their CPU reference adds a few seconds), checkpoints <=120 s,
#    three model checks <=45 s each (the CPU-backend baseline on Qwen2.5-0.5B only if time is left).
#
# 3. device bench (same machine while warm; bounded by BM_GPU_CALL_BUDGET_S, default 300 s):
#        run(command="tests/gpu/run-gpu-checks.sh device bench", carry=["build/gpu-bundle"], timeout_s=360)
#    estimate 3-5 min: bm_cuda_backend_bench on Qwen2.5-0.5B <=90 s and on Qwen2.5-7B (8 layers) <=120 s,
#    bm_backend_ops_bench <=90 s (its last lines time the encoder ops at one 1024x1024 image of Qwen2.5-VL's vision
#    tower: segment_attention over windows of 64 rows and over the whole 5,476-row frame, ~1 s more).
#
# 4. device tp (only where two or more GPUs are visible; elsewhere it is noted as not applicable, not failed):
#        run(command="tests/gpu/run-gpu-checks.sh device tp", carry=["build/gpu-bundle"], timeout_s=300)
#    estimate 1-3 min: bm_cuda_tensor_parallel_tests <=180 s — NCCL all-reduce on GPUs 0 and 1 (eager and from a
#    captured graph, exact sums) and the committed tiny checkpoints at tensor-parallel size 2 against size 1
#    (tests/gpu/tensor_parallel_gpu_test.cpp). Needs libnccl.so.2 on the GPU machine (the toolkit's or PyTorch's
#    nvidia.nccl wheel, found below); env.txt records the NCCL version the plugin probe reports.
#
# Every device call first writes env.txt (git commit, nvidia-smi -q excerpt: GPU, driver, CUDA version, clocks,
# ECC/MIG; ldd and readelf of the plugin; the plugin probe) and runs the preflight: the plugin's libraries resolve,
# no NEEDED libnccl, and bm_cuda_plugin_check creates a backend on device 0. A failed preflight stops the call
# before any stage, with the reason, instead of letting every test skip. BMSERVER_REQUIRE_GPU=1 is exported, so any
# GPU test that would skip fails instead, and a gtest report with skipped tests counts as a failed step.
# Each step runs under `timeout` with min(its cap, the time left in the call's budget); a step that no longer fits
# is reported as not run and counted as failed.
# Output under $OUT: env.txt, summary.txt, kernels.log, kernel-tests.xml, checkpoints.log, model-check.log,
# bench.log, tp.log, tp-tests.xml.
# Exit status: 0 all passed; the number of failed steps; 100 when no GPU is visible (nothing was checked).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUNDLE="$ROOT/build/gpu-bundle"
BUILD="${BM_GPU_BUILD_DIR:-$ROOT/build/dev}"
SHARED="${BMSERVER_SHARED_MODELS:-$ROOT/../shared/models}"
BINARIES=(bm_cuda_plugin_check bm_cuda_backend_tests bm_cuda_model_check bm_cuda_backend_bench bm_backend_ops_bench
  bm_cuda_tensor_parallel_tests)

prepare() {
  export CCACHE_BASEDIR=/work CCACHE_NOHASHDIR=1
  [[ -f "$BUILD/build.ninja" ]] || cmake --preset dev -S "$ROOT"
  cmake --build "$BUILD" -j2 --target bm_backend_cuda "${BINARIES[@]}"
  "$ROOT/tests/gpu/check-plugin-needed.sh" "$BUILD/lib/bmserver/libbm_backend_cuda.so"
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib/bmserver" "$BUNDLE/lib/deps" "$BUNDLE/configs"
  local b
  for b in "${BINARIES[@]}"; do
    strip --strip-debug -o "$BUNDLE/bin/$b" "$BUILD/bin/$b"
  done
  strip --strip-debug -o "$BUNDLE/lib/bmserver/libbm_backend_cuda.so" "$BUILD/lib/bmserver/libbm_backend_cuda.so"
  # Every shared library outside glibc/libstdc++/libgcc and CUDA's (which the GPU machine has).
  ldd "$BUNDLE"/bin/* "$BUNDLE/lib/bmserver/libbm_backend_cuda.so" | awk '/=> \// {print $3}' | sort -u |
    { grep -Ev '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux[^/]*)\.so|libcublas|libnccl|libcudart' || true; } |
    while read -r lib; do cp -L "$lib" "$BUNDLE/lib/deps/"; done
  # .git does not travel to the GPU machine: record what was built.
  {
    echo "commit $(git -C "$ROOT" rev-parse HEAD)"
    echo "branch $(git -C "$ROOT" rev-parse --abbrev-ref HEAD)"
    echo "uncommitted changes: $(git -C "$ROOT" status --porcelain --untracked-files=no | wc -l) files"
    echo "bundled $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$BUNDLE/commit.txt"
  mkdir -p "$BUNDLE/configs/Qwen2.5-7B-Instruct" "$BUNDLE/configs/DeepSeek-R1-Distill-Llama-8B" \
    "$BUNDLE/configs/Qwen2.5-0.5B-Instruct"
  cp "$SHARED/Qwen/Qwen2.5-7B-Instruct/config.json" "$BUNDLE/configs/Qwen2.5-7B-Instruct/config.json"
  cp "$SHARED/deepseek-ai/DeepSeek-R1-Distill-Llama-8B/config.resaved-fp32.json" \
    "$BUNDLE/configs/DeepSeek-R1-Distill-Llama-8B/config.json"
  python3 - "$BUNDLE/configs" <<'PY'
import json, pathlib, sys
configs = pathlib.Path(sys.argv[1])
config = json.loads((configs / "Qwen2.5-7B-Instruct" / "config.json").read_text())
# Qwen2.5-0.5B-Instruct's published sizes (494,032,768 parameters, as ../shared/models/catalog/model_sizes.json).
config.update({"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
               "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
               "max_position_embeddings": 32768, "max_window_layers": 21, "rms_norm_eps": 1e-06})
(configs / "Qwen2.5-0.5B-Instruct" / "config.json").write_text(json.dumps(config, indent=2))
PY
  du -sh "$BUNDLE"
  local bytes
  bytes=$(du -sb "$BUNDLE" | cut -f1)
  if ((bytes > 60 * 1024 * 1024)); then
    echo "bundle too large to carry: $bytes bytes" >&2
    exit 1
  fi
  echo "ready; then, on the GPU machine, in order:"
  echo "  run(command=\"tests/gpu/run-gpu-checks.sh device kernels models\", carry=[\"build/gpu-bundle\"], timeout_s=480)"
  echo "  run(command=\"tests/gpu/run-gpu-checks.sh device bench\", carry=[\"build/gpu-bundle\"], timeout_s=360)"
  echo "  run(command=\"tests/gpu/run-gpu-checks.sh device tp\", carry=[\"build/gpu-bundle\"], timeout_s=300)  # two or more GPUs only"
}

# ---- device side

OUTDIR=""
FAILED=0
CALL_START=$SECONDS
BUDGET_S="${BM_GPU_CALL_BUDGET_S:-420}"

note() { echo "$*" | tee -a "$OUTDIR/summary.txt"; }

# step NAME CAP_S LOG COMMAND...: runs COMMAND under timeout min(CAP_S, time left), appending to LOG; a failure,
# a timeout or a step that no longer fits the call's budget counts as one failed step.
step() {
  local name="$1" cap="$2" log="$3"
  shift 3
  local left=$((BUDGET_S - (SECONDS - CALL_START)))
  local limit=$((cap < left ? cap : left))
  if ((limit < 10)); then
    note "NOT RUN $name: the call's budget of ${BUDGET_S} s is spent (raise BM_GPU_CALL_BUDGET_S or split the call)"
    FAILED=$((FAILED + 1))
    return 0
  fi
  local t0=$SECONDS rc=0
  echo "== $name (limit ${limit} s)" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1 || rc=$?
  if ((rc == 0)); then
    note "ok      $name ($((SECONDS - t0)) s)"
  else
    [[ $rc -eq 124 || $rc -eq 137 ]] && rc="$rc (timed out after ${limit} s)"
    note "FAILED  $name: exit $rc ($((SECONDS - t0)) s; see $(basename "$log"))"
    FAILED=$((FAILED + 1))
  fi
}

record_env() {
  local plugin="$1" env="$OUTDIR/env.txt"
  shift
  {
    echo "# run-gpu-checks.sh device $*  ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(hostname))"
    echo "## build"
    cat "$BUNDLE/commit.txt" 2>/dev/null || echo "no commit.txt in the bundle (prepared by an older script)"
    echo "## GPU and driver (nvidia-smi -q excerpt)"
    nvidia-smi -q 2>&1 | grep -E '^(Driver Version|CUDA Version)|Product Name|Product Architecture|Persistence Mode|MIG Mode|Current +:|Addressing Mode|Compute Mode|Bus Id|VBIOS|Power Limit|Performance State|Ecc|Volatile|^ *(Graphics|SM|Memory|Video) +:' || true
    echo "## clocks and memory"
    nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,clocks_throttle_reasons.active,temperature.gpu,power.draw,memory.total,memory.used --format=csv 2>&1 || true
    echo "## CUDA toolkit here"
    { command -v nvcc >/dev/null && nvcc --version | tail -n 2; } || echo "no nvcc on PATH (not needed: the plugin links cudart statically)"
    echo "## LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "## ldd $plugin"
    ldd "$plugin" 2>&1 || true
    echo "## readelf -d (NEEDED, RUNPATH)"
    readelf -d "$plugin" 2>&1 | grep -E 'NEEDED|RUNPATH|RPATH' || true
  } >"$env" 2>&1
}

device() {
  OUTDIR="${OUT:-/tmp/bm-gpu-out}"
  mkdir -p "$OUTDIR"
  : >"$OUTDIR/summary.txt"
  local models=/tmp/bm-gpu-models
  export PYTHONUNBUFFERED=1
  # CUDA libraries: the toolkit's, else the ones PyTorch's wheels bring.
  local pylibs
  pylibs=$(python3 -c 'import importlib, os
for m in ("nvidia.cublas", "nvidia.nccl", "nvidia.cu13"):
    try:
        mod = importlib.import_module(m)
        for p in mod.__path__: print(os.path.join(p, "lib"))
    except Exception: pass' 2>/dev/null | paste -sd: - || true)
  export LD_LIBRARY_PATH="$BUNDLE/lib/deps:/usr/local/cuda/lib64:/usr/local/cuda/lib:${pylibs}:${LD_LIBRARY_PATH:-}"
  export BMSERVER_CUDA_PLUGIN="$BUNDLE/lib/bmserver/libbm_backend_cuda.so"
  # The committed GPTQ / AWQ checkpoints (tests/data/models) the quantized kernel tests load travel with the tree.
  export BMSERVER_SOURCE_DIR="$ROOT"
  # A GPU test that would skip here fails instead (tests/gpu/gpu_required.h).
  export BMSERVER_REQUIRE_GPU=1
  local steps=("$@")
  [[ ${#steps[@]} -eq 0 || " ${steps[*]} " == *" all "* ]] && steps=(kernels models bench tp)
  record_env "$BMSERVER_CUDA_PLUGIN" "${steps[@]}"

  if ! nvidia-smi -L >/dev/null 2>&1 && [[ ! -e /dev/nvidia0 ]]; then
    note "run-gpu-checks: no GPU visible here (nvidia-smi -L failed, no /dev/nvidia0); nothing was checked"
    return 100
  fi
  # Preflight: without a loadable plugin and a backend on device 0 every stage would only fail test by test.
  if [[ ! -x "$BUNDLE/bin/bm_cuda_plugin_check" ]]; then
    note "PREFLIGHT FAILED: $BUNDLE/bin/bm_cuda_plugin_check is missing; run 'tests/gpu/run-gpu-checks.sh prepare' here and carry build/gpu-bundle"
    return 1
  fi
  local preflight=0
  { echo "## check-plugin-needed.sh"; "$ROOT/tests/gpu/check-plugin-needed.sh" "$BMSERVER_CUDA_PLUGIN"; } \
    >>"$OUTDIR/env.txt" 2>&1 || preflight=$?
  if ((preflight != 0)); then
    note "PREFLIGHT FAILED: the plugin's libraries do not resolve here or it links libnccl (env.txt, check-plugin-needed.sh):"
    ldd "$BMSERVER_CUDA_PLUGIN" 2>&1 | grep 'not found' | tee -a "$OUTDIR/summary.txt" || true
    return 1
  fi
  { echo "## bm_cuda_plugin_check"; timeout 60 "$BUNDLE/bin/bm_cuda_plugin_check"; } >>"$OUTDIR/env.txt" 2>&1 ||
    preflight=$?
  if ((preflight != 0)); then
    note "PREFLIGHT FAILED: bm_cuda_plugin_check exited $preflight:"
    grep -E '^(FAIL|SKIP|plugin|GPUs)' "$OUTDIR/env.txt" | tee -a "$OUTDIR/summary.txt" || true
    return 1
  fi
  note "preflight ok: $(grep '^backend:' "$OUTDIR/env.txt" || true)"

  local s m skipped
  for s in "${steps[@]}"; do
    case "$s" in
      kernels)
        step kernel-tests 180 "$OUTDIR/kernels.log" \
          "$BUNDLE/bin/bm_cuda_backend_tests" --gtest_output="xml:$OUTDIR/kernel-tests.xml"
        # A skip must not read as a pass (BMSERVER_REQUIRE_GPU already turns them into failures; belt and braces).
        skipped=$(grep -c 'result="skipped"' "$OUTDIR/kernel-tests.xml" 2>/dev/null || true)
        if [[ -n "$skipped" && "$skipped" != 0 ]]; then
          note "FAILED  kernel-tests: $skipped tests skipped on a GPU machine"
          FAILED=$((FAILED + 1))
        fi
        tail -n 5 "$OUTDIR/kernels.log" ;;
      models)
        : >"$OUTDIR/model-check.log"
        step checkpoints 120 "$OUTDIR/checkpoints.log" \
          python3 "$ROOT/tests/gpu/make_gpu_checkpoints.py" --configs "$BUNDLE/configs" --out "$models" \
          --layers Qwen2.5-7B-Instruct=4 --layers DeepSeek-R1-Distill-Llama-8B=4
        for m in Qwen2.5-0.5B-Instruct Qwen2.5-7B-Instruct DeepSeek-R1-Distill-Llama-8B; do
          step "model-check $m" 45 "$OUTDIR/model-check.log" "$BUNDLE/bin/bm_cuda_model_check" --model "$models/$m"
        done
        # Baseline for the tolerance: the CPU reference backend against the same transformers logits. Only if time
        # is left; it does not count as a failure.
        local left=$((BUDGET_S - (SECONDS - CALL_START)))
        if ((left > 60)); then
          timeout $((left - 15)) "$BUNDLE/bin/bm_cuda_model_check" --model "$models/Qwen2.5-0.5B-Instruct" \
            --backend cpu >>"$OUTDIR/model-check.log" 2>&1 || note "baseline (cpu backend) did not pass; see model-check.log"
        fi
        cat "$OUTDIR/model-check.log" ;;
      bench)
        : >"$OUTDIR/bench.log"
        step "bench qwen2.5-0.5b" 90 "$OUTDIR/bench.log" "$BUNDLE/bin/bm_cuda_backend_bench" --model qwen2.5-0.5b
        step "bench qwen2.5-7b (8 layers)" 120 "$OUTDIR/bench.log" \
          "$BUNDLE/bin/bm_cuda_backend_bench" --model qwen2.5-7b --layers 8 --decode-steps 32
        step "ops bench qwen2.5-7b" 90 "$OUTDIR/bench.log" "$BUNDLE/bin/bm_backend_ops_bench" --model qwen2.5-7b
        cat "$OUTDIR/bench.log" ;;
      tp)
        local gpus
        gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
        if ((gpus < 2)); then
          note "n/a     tensor-parallel: $gpus GPU visible, it needs two or more (not a failure; nothing was checked)"
        else
          step tensor-parallel 180 "$OUTDIR/tp.log" \
            "$BUNDLE/bin/bm_cuda_tensor_parallel_tests" --gtest_output="xml:$OUTDIR/tp-tests.xml"
          skipped=$(grep -c 'result="skipped"' "$OUTDIR/tp-tests.xml" 2>/dev/null || true)
          if [[ -n "$skipped" && "$skipped" != 0 ]]; then
            note "FAILED  tensor-parallel: $skipped tests skipped on a machine with $gpus GPUs"
            FAILED=$((FAILED + 1))
          fi
          grep -E '^\[ figures \]|FAILED|PASSED' "$OUTDIR/tp.log" || true
        fi ;;
      *)
        note "unknown step $s (kernels, models, bench, tp, all)"
        FAILED=$((FAILED + 1)) ;;
    esac
  done
  note "failed steps: $FAILED ($((SECONDS - CALL_START)) s of the ${BUDGET_S} s budget)"
  return "$FAILED"
}

case "${1:-}" in
  prepare) prepare ;;
  device)
    shift
    # bench alone fits a shorter budget; an explicit BM_GPU_CALL_BUDGET_S wins.
    [[ -z "${BM_GPU_CALL_BUDGET_S:-}" && "$*" == "bench" ]] && BUDGET_S=300
    rc=0
    device "$@" || rc=$?
    exit "$rc" ;;
  *)
    sed -n '2,46p' "$0"
    exit 2 ;;
esac
