#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in two steps.
#
# 1. Here, on the build machine (no GPU needed), from the repository root:
#        tests/gpu/run-gpu-checks.sh prepare
#    builds the plugin, the kernel tests, the whole-model check and the benchmark in build/dev (configure it first:
#    `CCACHE_BASEDIR=/work CCACHE_NOHASHDIR=1 cmake --preset dev`), and stages build/gpu-bundle: the binaries
#    (debug info stripped), lib/bmserver/libbm_backend_cuda.so in the layout the engine looks for, the shared
#    libraries the GPU machine lacks (Debian's abseil; CUDA's own libraries are there), and the three model configs
#    (from ../shared/models; Qwen2.5-0.5B's is derived from Qwen2.5-7B's with the published 0.5B sizes, since
#    ../shared holds no 0.5B config). It prints the bundle's size, which must stay under the 64 MiB a run carries.
#
# 2. On the GPU machine (the device `run` tool: the repo tree travels, build/gpu-bundle travels via `carry`):
#        run(command="tests/gpu/run-gpu-checks.sh device all", carry=["build/gpu-bundle"], timeout_s=590)
#    Steps, each logged under $OUT (at most 8 files come back): env.txt, kernels.log + kernel-tests.xml
#    (bm_cuda_backend_tests, every op vs the CPU backend, GPTQ/AWQ int4/int8 quantized_linear at Qwen2.5-7B shapes
#    and 1…129 rows, random quantized decoders and the seven committed quantized checkpoints), checkpoints.log
#    (make_gpu_checkpoints.py: random bf16 checkpoints + transformers reference logits), model-check.log
#    (bm_cuda_model_check per model, and the CPU backend on Qwen2.5-0.5B as a baseline for the tolerance), bench.log (bm_cuda_backend_bench, then
#    bm_backend_ops_bench: every op alone at Qwen2.5-7B's shapes against the bandwidth and FLOP peak, the
#    projections also as int4 / int4 act-order / int8 layers at 1, 16, 64, 256, 8192 tokens beside BF16: packed MB
#    and the share of the HBM ceiling printed).
#    `device kernels models` and `device bench` split the work over two calls if one would run past 10 minutes.
#    Exit status: the number of failed steps; 100 when no GPU is visible (every test would only skip).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUNDLE="$ROOT/build/gpu-bundle"
BUILD="$ROOT/build/dev"
SHARED="${BMSERVER_SHARED_MODELS:-$ROOT/../shared/models}"

prepare() {
  set -e
  export CCACHE_BASEDIR=/work CCACHE_NOHASHDIR=1
  [[ -f "$BUILD/build.ninja" ]] || cmake --preset dev -S "$ROOT"
  cmake --build "$BUILD" -j2 --target bm_backend_cuda bm_cuda_backend_tests bm_cuda_model_check bm_cuda_backend_bench \
    bm_backend_ops_bench
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib/bmserver" "$BUNDLE/lib/deps" "$BUNDLE/configs"
  for b in bm_cuda_backend_tests bm_cuda_model_check bm_cuda_backend_bench bm_backend_ops_bench; do
    strip --strip-debug -o "$BUNDLE/bin/$b" "$BUILD/bin/$b"
  done
  strip --strip-debug -o "$BUNDLE/lib/bmserver/libbm_backend_cuda.so" "$BUILD/lib/bmserver/libbm_backend_cuda.so"
  # Every shared library outside glibc/libstdc++/libgcc and CUDA's (which the GPU machine has).
  ldd "$BUNDLE"/bin/* "$BUNDLE/lib/bmserver/libbm_backend_cuda.so" | awk '/=> \// {print $3}' | sort -u |
    grep -Ev '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt|ld-linux[^/]*)\.so|libcublas|libnccl|libcudart' |
    while read -r lib; do cp -L "$lib" "$BUNDLE/lib/deps/"; done
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
  if (( bytes > 60 * 1024 * 1024 )); then echo "bundle too large to carry: $bytes bytes" >&2; exit 1; fi
  echo "ready: run(command=\"tests/gpu/run-gpu-checks.sh device all\", carry=[\"build/gpu-bundle\"], timeout_s=590)"
}

device() {
  local out="${OUT:-/tmp/bm-gpu-out}"
  mkdir -p "$out"
  local models=/tmp/bm-gpu-models
  local failed=0
  export PYTHONUNBUFFERED=1
  # CUDA libraries: the toolkit's, else the ones PyTorch's wheels bring.
  local pylibs
  pylibs=$(python3 -c 'import importlib, os
for m in ("nvidia.cublas", "nvidia.nccl", "nvidia.cu13"):
    try:
        mod = importlib.import_module(m)
        for p in mod.__path__: print(os.path.join(p, "lib"))
    except Exception: pass' 2>/dev/null | paste -sd: -)
  export LD_LIBRARY_PATH="$BUNDLE/lib/deps:/usr/local/cuda/lib64:/usr/local/cuda/lib:${pylibs}:${LD_LIBRARY_PATH:-}"
  export BMSERVER_CUDA_PLUGIN="$BUNDLE/lib/bmserver/libbm_backend_cuda.so"
  # The committed GPTQ / AWQ checkpoints (tests/data/models) the quantized kernel tests load travel with the tree.
  export BMSERVER_SOURCE_DIR="$ROOT"
  { date; nvidia-smi; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; ldd "$BMSERVER_CUDA_PLUGIN"; } >"$out/env.txt" 2>&1
  # Every GPU test skips without a GPU; a run that skipped everything must not read as a pass.
  if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "run-gpu-checks: no GPU visible here (nvidia-smi -L failed); nothing was checked" | tee -a "$out/env.txt" >&2
    return 100
  fi
  local steps=("$@")
  [[ ${#steps[@]} -eq 0 || " ${steps[*]} " == *" all "* ]] && steps=(kernels models bench)
  for step in "${steps[@]}"; do
    case "$step" in
      kernels)
        timeout 200 "$BUNDLE/bin/bm_cuda_backend_tests" --gtest_output="xml:$out/kernel-tests.xml" \
          >"$out/kernels.log" 2>&1 || failed=$((failed + 1))
        tail -n 5 "$out/kernels.log" ;;
      models)
        timeout 240 python3 "$ROOT/tests/gpu/make_gpu_checkpoints.py" --configs "$BUNDLE/configs" --out "$models" \
          --layers Qwen2.5-7B-Instruct=4 --layers DeepSeek-R1-Distill-Llama-8B=4 >"$out/checkpoints.log" 2>&1 ||
          failed=$((failed + 1))
        : >"$out/model-check.log"
        for m in Qwen2.5-0.5B-Instruct Qwen2.5-7B-Instruct DeepSeek-R1-Distill-Llama-8B; do
          timeout 120 "$BUNDLE/bin/bm_cuda_model_check" --model "$models/$m" >>"$out/model-check.log" 2>&1 ||
            failed=$((failed + 1))
        done
        # Baseline: the CPU reference backend against the same transformers logits.
        timeout 120 "$BUNDLE/bin/bm_cuda_model_check" --model "$models/Qwen2.5-0.5B-Instruct" --backend cpu \
          >>"$out/model-check.log" 2>&1 || true
        cat "$out/model-check.log" ;;
      bench)
        : >"$out/bench.log"
        timeout 150 "$BUNDLE/bin/bm_cuda_backend_bench" --model qwen2.5-0.5b >>"$out/bench.log" 2>&1 ||
          failed=$((failed + 1))
        timeout 150 "$BUNDLE/bin/bm_cuda_backend_bench" --model qwen2.5-7b --layers 8 --decode-steps 32 \
          >>"$out/bench.log" 2>&1 || failed=$((failed + 1))
        timeout 90 "$BUNDLE/bin/bm_backend_ops_bench" --model qwen2.5-7b >>"$out/bench.log" 2>&1 ||
          failed=$((failed + 1))
        cat "$out/bench.log" ;;
      *) echo "unknown step $step (kernels, models, bench, all)" >&2; failed=$((failed + 1)) ;;
    esac
  done
  echo "failed steps: $failed"
  return "$failed"
}

case "${1:-}" in
  prepare) prepare ;;
  device) shift; device "$@" ;;
  *) sed -n '2,25p' "$0"; exit 2 ;;
esac
