// Prefill and decode speed of the CPU backend on a model with Qwen2.5-0.5B's (or 7B's) shapes and random weights,
// in bf16 or as a GPTQ-Int4/Int8 or AWQ checkpoint (packed as published: group 128, F16 float tensors), and
// decode against its memory-bandwidth ceiling: batch-1 decode must read every weight once per token, so it cannot
// beat (bytes read per second) / (weight bytes, packed bytes for quantized layers). The bandwidth is measured
// here, with the same thread count. Prefill is compute-bound: its FLOP/s is set against the peak of the GEMM's
// multiply-add instruction (vdpbf16ps on the avx512-bf16 path, vfmadd on the F32 ones), measured here by a
// register-only loop on every thread.
//
// Usage: bm_cpu_backend_bench [--threads N] [--prompt-tokens P] [--decode-steps D] [--layers L] [--keep DIR]
//                             [--model 0.5b|7b] [--quantization bf16|gptq-int4|gptq-int8|awq-int4]
//                             [--gemm auto|f32|avx512-bf16|avx512|avx2|scalar] [--tensor-parallel-size N]
// --tensor-parallel-size splits the model over N CPU ranks sharing --threads (docs/tensor-parallel.md): on one
// socket that costs the all-reduces and buys nothing; the figure is the tensor-parallel overhead.
// The checkpoint (~1 GB of bf16) is written to a temporary folder and removed at the end unless --keep names a
// folder to write it to (or reuse it from, when it already holds one). Prints figures; asserts nothing.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "engine/backend/cpu/gemm_path.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/models/model_loader.h"
#include "tests/unit/engine/models/random_checkpoint.h"

namespace {

namespace fs = std::filesystem;
using bm::engine::CausalLM;
using bm::engine::ForwardBatch;
using bm::engine::SequenceChunk;
using Clock = std::chrono::steady_clock;

struct Options {
  int32_t threads = 0;
  int32_t prompt_tokens = 128;
  int32_t decode_steps = 32;
  int32_t layers = 0;  // 0: all of the model's
  std::string keep;
  std::string model = "0.5b";
  std::string quantization;  // empty: bf16
  std::string gemm;          // CPU GEMM path; empty: $BMSERVER_CPU_GEMM or auto
  int32_t tensor_parallel_size = 1;
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Best of a few passes: read-only bandwidth (a parallel sum, the access pattern of decode's weight reads) and
// memcpy bandwidth (bytes read + bytes written).
struct Bandwidth {
  double read_gb_s = 0;
  double copy_gb_s = 0;
};

Bandwidth measure_bandwidth(int32_t threads) {
  constexpr size_t kBytes = size_t{512} << 20;
  std::vector<float> source(kBytes / sizeof(float), 1.0f);
  std::vector<float> destination(source.size(), 0.0f);
  bm::engine::cpu::ThreadPool pool(threads);
  const int64_t n = static_cast<int64_t>(source.size());
  const int64_t chunk = int64_t{1} << 20;
  Bandwidth best;
  volatile float sink = 0;
  for (int pass = 0; pass < 5; ++pass) {
    std::vector<float> partial(static_cast<size_t>((n + chunk - 1) / chunk));
    auto start = Clock::now();
    pool.parallel_for(n, chunk, [&](int64_t begin, int64_t end) {
      float lanes[16] = {};
      for (int64_t i = begin; i < end; i += 16) {
        for (int l = 0; l < 16; ++l) lanes[l] += source[static_cast<size_t>(i + l)];
      }
      partial[static_cast<size_t>(begin / chunk)] = std::accumulate(lanes, lanes + 16, 0.0f);
    });
    best.read_gb_s = std::max(best.read_gb_s, kBytes / seconds_since(start) / 1e9);
    sink = sink + std::accumulate(partial.begin(), partial.end(), 0.0f);
    start = Clock::now();
    pool.parallel_for(n, chunk, [&](int64_t begin, int64_t end) {
      std::memcpy(destination.data() + begin, source.data() + begin, static_cast<size_t>(end - begin) * sizeof(float));
    });
    best.copy_gb_s = std::max(best.copy_gb_s, 2.0 * kBytes / seconds_since(start) / 1e9);
  }
  return best;
}

// The multiply-add peak of one GEMM path: kChains independent accumulator chains per thread (more than the
// instruction's latency × issue rate, so the loop is throughput-bound), registers only. FLOPs count a multiply and
// an add per product, as the model's figures do.
constexpr int kChains = 12;
constexpr int64_t kPeakIterations = int64_t{1} << 22;

__attribute__((target("avx512f,avx512bf16"))) float bf16_dot_loop(float seed) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(seed * static_cast<float>(c));
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80);  // bf16 pairs (1, 1)
  const __m512bh b = (__m512bh)_mm512_set1_epi32(0x33803380);  // bf16 pairs (2^-24, 2^-24): no overflow
  for (int64_t i = 0; i < kPeakIterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  float lanes[16];  // not _mm512_reduce_add_ps: GCC 12 warns inside it (an uninitialized temporary)
  _mm512_storeu_ps(lanes, sum);
  return std::accumulate(lanes, lanes + 16, 0.0f);
}

__attribute__((target("avx512f"))) float fma512_loop(float seed) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(seed * static_cast<float>(c));
  const __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < kPeakIterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(a, b, acc[c]);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  float lanes[16];  // not _mm512_reduce_add_ps: GCC 12 warns inside it (an uninitialized temporary)
  _mm512_storeu_ps(lanes, sum);
  return std::accumulate(lanes, lanes + 16, 0.0f);
}

__attribute__((target("avx2,fma"))) float fma256_loop(float seed) {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(seed * static_cast<float>(c));
  const __m256 a = _mm256_set1_ps(1.0f), b = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < kPeakIterations; ++i) {
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(a, b, acc[c]);
  }
  __m256 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  float lanes[8];
  _mm256_storeu_ps(lanes, sum);
  return std::accumulate(lanes, lanes + 8, 0.0f);
}

// GFLOP/s of the path's multiply-add on every thread at once, best of three; 0 for the scalar path (no loop).
double measure_peak_gflops(bm::engine::cpu::GemmPath path, int32_t threads) {
  using bm::engine::cpu::GemmPath;
  float (*loop)(float) = nullptr;
  double flops_per_instruction = 0;
  switch (path) {
    case GemmPath::kAvx512Bf16:
      loop = bf16_dot_loop, flops_per_instruction = 16 * 2 * 2;  // 16 lanes × a pair of products, multiply + add
      break;
    case GemmPath::kAvx512:
      loop = fma512_loop, flops_per_instruction = 16 * 2;
      break;
    case GemmPath::kAvx2:
      loop = fma256_loop, flops_per_instruction = 8 * 2;
      break;
    default:
      return 0;
  }
  bm::engine::cpu::ThreadPool pool(threads);
  std::vector<float> sink(static_cast<size_t>(threads));
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto start = Clock::now();
    pool.parallel_for(threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) sink[static_cast<size_t>(t)] = loop(static_cast<float>(t + pass));
    });
    const double seconds = seconds_since(start);
    best = std::max(best, threads * static_cast<double>(kPeakIterations) * kChains * flops_per_instruction / seconds / 1e9);
  }
  volatile float keep = std::accumulate(sink.begin(), sink.end(), 0.0f);
  (void)keep;
  return best;
}

bool parse(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (arg == "--threads" && (v = value())) {
      options.threads = std::atoi(v);
    } else if (arg == "--prompt-tokens" && (v = value())) {
      options.prompt_tokens = std::max(1, std::atoi(v));
    } else if (arg == "--decode-steps" && (v = value())) {
      options.decode_steps = std::max(1, std::atoi(v));
    } else if (arg == "--layers" && (v = value())) {
      options.layers = std::max(1, std::atoi(v));
    } else if (arg == "--tensor-parallel-size" && (v = value())) {
      options.tensor_parallel_size = std::max(1, std::atoi(v));
    } else if (arg == "--gemm" && (v = value())) {
      options.gemm = v;
    } else if (arg == "--keep" && (v = value())) {
      options.keep = v;
    } else if (arg == "--quantization" && (v = value())) {
      options.quantization = v;
      if (options.quantization == "bf16") options.quantization.clear();
    } else if (arg == "--model" && (v = value()) && (std::string(v) == "0.5b" || std::string(v) == "7b")) {
      options.model = v;
    } else {
      std::fprintf(stderr,
                   "usage: %s [--threads N] [--prompt-tokens P] [--decode-steps D] [--layers L] [--keep DIR]\n"
                   "          [--model 0.5b|7b] [--quantization bf16|gptq-int4|gptq-int8|awq-int4]\n"
                   "          [--gemm auto|f32|avx512-bf16|avx512|avx2|scalar] [--tensor-parallel-size N]\n",
                   argv[0]);
      return false;
    }
  }
  if (options.threads <= 0) options.threads = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse(argc, argv, options)) return 2;

  bm::engine::testing::RandomCheckpointShape shape;  // Qwen2.5-0.5B
  shape.hidden_size = 896;
  shape.intermediate_size = 4864;
  shape.num_layers = options.layers > 0 ? options.layers : 24;
  shape.num_heads = 14;
  shape.num_kv_heads = 2;
  shape.vocab_size = 151936;
  shape.tie_word_embeddings = true;
  if (options.model == "7b") {  // Qwen2.5-7B: untied head; pass --layers to trim the 28 layers
    shape.hidden_size = 3584;
    shape.intermediate_size = 18944;
    shape.num_layers = options.layers > 0 ? options.layers : 28;
    shape.num_heads = 28;
    shape.num_kv_heads = 4;
    shape.vocab_size = 152064;
    shape.tie_word_embeddings = false;
  }
  // As the published GPTQ/AWQ checkpoints: group size 128, the float tensors in F16.
  shape.quantization = options.quantization;
  shape.group_size = 128;

  const bool is_temporary = options.keep.empty();
  const fs::path dir = is_temporary ? fs::temp_directory_path() / ("bm-cpu-bench-" + std::to_string(::getpid()))
                                    : fs::path(options.keep);
  auto start = Clock::now();
  if (!fs::exists(dir / "model.safetensors")) {
    if (!bm::engine::testing::write_random_checkpoint(dir, shape)) {
      std::fprintf(stderr, "cannot write the checkpoint to %s\n", dir.c_str());
      return 1;
    }
    std::printf("wrote random checkpoint to %s in %.1f s\n", dir.c_str(), seconds_since(start));
  }

  bm::engine::LoadOptions load_options;
  load_options.num_threads = options.threads;
  load_options.cpu_gemm_path = options.gemm;
  load_options.tensor_parallel_size = options.tensor_parallel_size;
  start = Clock::now();
  absl::StatusOr<std::unique_ptr<CausalLM>> loaded = bm::engine::load_causal_lm(dir, load_options);
  if (is_temporary) fs::remove_all(dir);
  if (!loaded.ok()) {
    std::fprintf(stderr, "load failed: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  CausalLM& lm = **loaded;
  std::printf("loaded in %.2f s: %d layers, hidden %d, vocab %d, weights %.1f MB (%s), %d threads\n",
              seconds_since(start), lm.info().num_layers, shape.hidden_size, lm.info().vocab_size,
              lm.info().weight_bytes / 1e6, lm.info().quantization.empty() ? "bf16" : lm.info().quantization.c_str(),
              options.threads);

  const int32_t total_tokens = options.prompt_tokens + options.decode_steps;
  const int32_t num_blocks = (total_tokens + bm::engine::kBlockSize - 1) / bm::engine::kBlockSize + 1;
  if (absl::Status status = lm.allocate_kv_cache(num_blocks); !status.ok()) {
    std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
    return 1;
  }
  SequenceChunk chunk;
  chunk.block_table.resize(static_cast<size_t>(num_blocks));
  std::iota(chunk.block_table.begin(), chunk.block_table.end(), 0);
  chunk.wants_logits = true;
  std::vector<int32_t> prompt(static_cast<size_t>(options.prompt_tokens));
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919) % 151643);
  std::vector<float> logits;

  // Prefill: best of three (the first also warms the caches and the thread pool).
  double prefill_seconds = 1e30;
  for (int pass = 0; pass < 3; ++pass) {
    chunk.num_cached_tokens = 0;
    chunk.num_new_tokens = options.prompt_tokens;
    start = Clock::now();
    if (absl::Status status = lm.forward(ForwardBatch{prompt, {chunk}}, logits); !status.ok()) {
      std::fprintf(stderr, "prefill failed: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    prefill_seconds = std::min(prefill_seconds, seconds_since(start));
  }

  // Decode, batch 1, greedy over the random model's own logits.
  chunk.num_cached_tokens = options.prompt_tokens;
  chunk.num_new_tokens = 1;
  start = Clock::now();
  for (int32_t step = 0; step < options.decode_steps; ++step) {
    const int32_t token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (absl::Status status = lm.forward(ForwardBatch{{token}, {chunk}}, logits); !status.ok()) {
      std::fprintf(stderr, "decode failed: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    ++chunk.num_cached_tokens;
  }
  const double decode_seconds = seconds_since(start);

  const Bandwidth bandwidth = measure_bandwidth(options.threads);
  // The path the dense layers ran: the forced one, else what auto resolves to.
  const char* forced = std::getenv("BMSERVER_CPU_GEMM");
  const std::string path_name = !options.gemm.empty() ? options.gemm : forced != nullptr && *forced ? forced : "auto";
  const absl::StatusOr<bm::engine::cpu::GemmPath> path = bm::engine::cpu::parse_gemm_path(path_name);
  const double peak_gflops = path.ok() ? measure_peak_gflops(*path, options.threads) : 0;
  // Prefill work: every linear layer's multiply-adds per token, causal attention's QKᵀ and PV over the prompt, and
  // the head for the last token.
  const double q_dim = shape.hidden_size, kv_dim = shape.hidden_size / shape.num_heads * shape.num_kv_heads;
  const double linear_params =
      shape.hidden_size * (2 * q_dim + 2 * kv_dim) + 3.0 * shape.hidden_size * shape.intermediate_size;
  const double tokens = options.prompt_tokens;
  const double prefill_flops = lm.info().num_layers * (2 * linear_params * tokens +
                                                       2 * 2 * q_dim * tokens * (tokens + 1) / 2) +
                               2.0 * shape.hidden_size * shape.vocab_size;
  const double prefill_tps = options.prompt_tokens / prefill_seconds;
  const double decode_tps = options.decode_steps / decode_seconds;
  // Batch-1 decode reads every weight once per token (with tied embeddings the table is read once, as lm_head;
  // an untied input table only for the looked-up row, so it is left out); for quantized layers the bytes are the
  // packed ones as held (weights, F16 scales and zero-points).
  const double bytes_per_token = static_cast<double>(lm.info().decode_read_bytes);
  const double ceiling_tps = bandwidth.read_gb_s * 1e9 / bytes_per_token;
  std::printf("memory bandwidth: read %.2f GB/s, memcpy %.2f GB/s (read + write), %d threads\n", bandwidth.read_gb_s,
              bandwidth.copy_gb_s, options.threads);
  std::printf("prefill: %d tokens in %.3f s = %.1f tokens/s\n", options.prompt_tokens, prefill_seconds, prefill_tps);
  if (peak_gflops > 0) {
    std::printf("prefill compute: %.1f GFLOP in %.3f s = %.0f GFLOP/s; %s multiply-add peak %.0f GFLOP/s "
                "(%d threads); achieved %.0f%% of it\n",
                prefill_flops / 1e9, prefill_seconds, prefill_flops / prefill_seconds / 1e9,
                std::string(bm::engine::cpu::gemm_path_name(*path)).c_str(), peak_gflops, options.threads,
                100.0 * prefill_flops / prefill_seconds / 1e9 / peak_gflops);
  }
  std::printf("decode:  %d steps in %.3f s = %.2f tokens/s (%.1f ms/token)\n", options.decode_steps, decode_seconds,
              decode_tps, 1e3 / decode_tps);
  std::printf("decode ceiling: %.1f MB/token / %.2f GB/s = %.2f tokens/s; achieved %.0f%% of it\n",
              bytes_per_token / 1e6, bandwidth.read_gb_s, ceiling_tps, 100.0 * decode_tps / ceiling_tps);
  return 0;
}
