// Each backend op on its own at Qwen2.5-7B's shapes (or --model qwen2.5-0.5b / llama-8b), and the vision tower's
// encoder ops at Qwen2.5-VL's vision shape (one 1024x1024 image) where the backend runs them: time per call, the
// projections also as GPTQ/AWQ-style int4 (plain and act-order) and int8 layers at 1, 8, 16, 64, 256 and 8192 tokens
// (bytes: the packed weights, scales and zero-points, printed in MB; the share of the copy bandwidth is the share
// of the HBM ceiling); the bytes it must move and the FLOPs it must do, and what that achieves against the device's
// limits — the measured copy bandwidth (read + write, as the bytes here count them) and --peak-tflops. Decode-sized
// calls are bound by bandwidth, prefill-sized GEMMs and attention by FLOPs; both figures are printed, the binding one
// marked. Inputs are random; each figure is the median of --repeats timed batches of calls after a warm-up batch.
// First it prints the kernel nodes one decoder layer of a decode step records (issue 21's fused decode step: the
// projections fused at load against apart). Prints figures; asserts nothing.
//
// Usage: bm_backend_ops_bench [--backend cuda|cpu] [--model qwen2.5-7b|qwen2.5-0.5b|llama-8b] [--repeats R]
//                             [--peak-tflops T] [--quick 1] [--only candidates] [--gemm PATH] [--threads N]
// --quick shrinks the token counts (a smoke run on the CPU backend, as ctest does). --only candidates measures the
// sampling candidates alone (with and without structured output's masks; quick enough on the CPU backend).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/gemm_path.h"
#include "engine/backend/cuda_plugin.h"
#include "engine/models/model_loader.h"
#include "tests/unit/engine/models/random_checkpoint.h"

namespace {

using namespace bm::engine;
using Clock = std::chrono::steady_clock;

struct Shape {
  const char* name;
  int64_t hidden, intermediate, heads, kv_heads, head_dim, vocab;
  const char* architecture;  // Qwen2's q/k/v have biases, Llama's none
};

constexpr Shape kShapes[] = {
    {"qwen2.5-7b", 3584, 18944, 28, 4, 128, 152064, "Qwen2ForCausalLM"},
    {"qwen2.5-0.5b", 896, 4864, 14, 2, 64, 151936, "Qwen2ForCausalLM"},
    {"llama-8b", 4096, 14336, 32, 8, 128, 128256, "LlamaForCausalLM"},
};

struct Options {
  std::string backend = "cuda";
  std::string model = "qwen2.5-7b";
  int repeats = 5;
  double peak_tflops = 989.0;  // H100/H200 SXM dense bf16
  bool quick = false;
  bool only_candidates = false;
  std::string gemm = "auto";  // cpu backend: the GEMM instruction path (gemm_path.h)
  int threads = 0;            // cpu backend: 0 = every CPU of the affinity mask
};

// Owns the buffers of one measurement; tensors filled with random values (ids and tables set by the caller).
class Arena {
 public:
  explicit Arena(Backend& backend) : backend_(backend) {}
  Tensor random(DType dtype, int64_t rows, int64_t cols, float scale = 1.0f) {
    Tensor t = empty(dtype, rows, cols);
    std::normal_distribution<float> normal(0.0f, scale);
    const size_t n = static_cast<size_t>(rows * cols);
    if (dtype == DType::kBF16) {
      std::vector<uint16_t> v(n);
      for (auto& x : v) x = cpu::f32_to_bf16(normal(rng_));
      backend_.copy_to_device(std::as_bytes(std::span(v)), t);
    } else {
      std::vector<float> v(n);
      for (auto& x : v) x = normal(rng_);
      backend_.copy_to_device(std::as_bytes(std::span(v)), t);
    }
    return t;
  }
  Tensor ints(const std::vector<int32_t>& values, int64_t rows, int64_t cols) {
    Tensor t = empty(DType::kI32, rows, cols);
    backend_.copy_to_device(std::as_bytes(std::span(values)), t);
    return t;
  }
  Tensor empty(DType dtype, int64_t rows, int64_t cols) {
    absl::StatusOr<std::unique_ptr<Buffer>> buffer =
        backend_.allocate(std::max<int64_t>(1, rows * cols) * dtype_size(dtype));
    if (!buffer.ok()) {
      std::fprintf(stderr, "allocation failed: %s\n", buffer.status().ToString().c_str());
      std::exit(1);
    }
    buffers_.push_back(std::move(*buffer));
    return Tensor{buffers_.back().get(), 0, dtype, rows, cols};
  }

 private:
  Backend& backend_;
  std::mt19937 rng_{5};
  std::vector<std::unique_ptr<Buffer>> buffers_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

class Bench {
 public:
  Bench(Backend& backend, const Options& options, double bandwidth_gb_s)
      : backend_(backend), options_(options), bandwidth_gb_s_(bandwidth_gb_s) {}

  // Times `op` (calls per batch chosen so a batch lasts a few ms) and prints one line.
  void measure(const std::string& what, double bytes, double flops, const std::function<void()>& op) {
    op();
    backend_.synchronize();
    int calls = 1;
    for (;;) {  // grow the batch until it takes >= 2 ms, so launch gaps and timer noise stay small
      const auto t0 = Clock::now();
      for (int i = 0; i < calls; ++i) op();
      backend_.synchronize();
      if (std::chrono::duration<double>(Clock::now() - t0).count() >= 2e-3 || calls >= 1024) break;
      calls *= 4;
    }
    std::vector<double> per_call;
    for (int r = 0; r < options_.repeats; ++r) {
      const auto t0 = Clock::now();
      for (int i = 0; i < calls; ++i) op();
      backend_.synchronize();
      per_call.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / calls);
    }
    const double seconds = median(per_call);
    const double gb_s = bytes / seconds / 1e9;
    const double tflops = flops / seconds / 1e12;
    const double bw_share = bandwidth_gb_s_ > 0 ? gb_s / bandwidth_gb_s_ : 0;
    const double flop_share = options_.peak_tflops > 0 ? tflops / options_.peak_tflops : 0;
    const bool flop_bound = flop_share > bw_share;
    std::printf("%-62s %9.1f us  %8.1f GB/s%s  %7.1f TFLOP/s%s\n", what.c_str(), seconds * 1e6, gb_s,
                bandwidth_gb_s_ > 0 ? percent(bw_share, !flop_bound).c_str() : "", tflops,
                options_.peak_tflops > 0 && flops > 0 ? percent(flop_share, flop_bound).c_str() : "");
    std::fflush(stdout);
  }

 private:
  static std::string percent(double share, bool binding) {
    char text[32];
    std::snprintf(text, sizeof text, " (%5.1f%%%s)", 100.0 * share, binding ? "*" : " ");
    return text;
  }

  Backend& backend_;
  const Options& options_;
  double bandwidth_gb_s_;
};

// What one decoder layer of a decode step records (CausalLM::decode_layer_nodes: kernel and copy nodes of the CUDA
// graph, ops on the CPU backend), with the q/k/v and gate/up projections fused at load and apart (before issue 21),
// at the model's layer shapes: a two-layer random checkpoint with a small vocabulary (the layer does not read it).
void print_layer_nodes(const Options& o, const Shape& shape) {
  namespace fs = std::filesystem;
  bm::engine::testing::RandomCheckpointShape random;
  random.architecture = shape.architecture;
  random.hidden_size = static_cast<int32_t>(shape.hidden);
  random.intermediate_size = static_cast<int32_t>(shape.intermediate);
  random.num_layers = 2;
  random.num_heads = static_cast<int32_t>(shape.heads);
  random.num_kv_heads = static_cast<int32_t>(shape.kv_heads);
  random.vocab_size = 512;
  const fs::path dir = fs::temp_directory_path() / ("bm-ops-bench-" + std::to_string(::getpid()));
  if (!bm::engine::testing::write_random_checkpoint(dir, random)) {
    std::printf("kernel nodes per decode layer: cannot write a checkpoint to %s\n", dir.c_str());
    return;
  }
  for (const bool fused : {false, true}) {
    LoadOptions load;
    load.backend = o.backend;
    load.num_threads = o.threads;
    load.fuse_projections = fused;
    absl::StatusOr<std::unique_ptr<CausalLM>> lm = load_causal_lm(dir, load);
    absl::Status status = lm.ok() ? (*lm)->allocate_kv_cache(64) : lm.status();
    for (int32_t seqs : o.quick ? std::vector<int32_t>{1} : std::vector<int32_t>{1, 64}) {
      absl::StatusOr<int64_t> nodes = status.ok() ? (*lm)->decode_layer_nodes(seqs) : status;
      if (nodes.ok())
        std::printf("kernel nodes per decode layer (%s, q/k/v and gate/up %s), %d sequences: %lld\n",
                    shape.architecture, fused ? "fused" : "apart", seqs, static_cast<long long>(*nodes));
      else
        std::printf("kernel nodes per decode layer: %s\n", std::string(nodes.status().message()).c_str());
    }
  }
  fs::remove_all(dir);
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    const char* v = argv[i + 1];
    if (arg == "--backend")
      o.backend = v;
    else if (arg == "--model")
      o.model = v;
    else if (arg == "--repeats")
      o.repeats = std::max(1, std::atoi(v));
    else if (arg == "--peak-tflops")
      o.peak_tflops = std::atof(v);
    else if (arg == "--quick")
      o.quick = std::atoi(v) != 0;
    else if (arg == "--only" && std::string(v) == "candidates")
      o.only_candidates = true;
    else if (arg == "--gemm")
      o.gemm = v;
    else if (arg == "--threads")
      o.threads = std::max(0, std::atoi(v));
    else
      return false;
  }
  return argc % 2 == 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr,
                 "usage: %s [--backend cuda|cpu] [--model qwen2.5-7b|qwen2.5-0.5b|llama-8b] [--repeats R] "
                 "[--peak-tflops T] [--quick 1] [--only candidates] [--gemm auto|f32|avx512-bf16|avx512|avx2|scalar] "
                 "[--threads N]\n",
                 argv[0]);
    return 2;
  }
  const Shape* shape = nullptr;
  for (const Shape& s : kShapes)
    if (o.model == s.name) shape = &s;
  if (shape == nullptr) {
    std::fprintf(stderr, "unknown --model %s\n", o.model.c_str());
    return 2;
  }
  std::unique_ptr<Backend> backend;
  double bandwidth = 0;
  if (o.backend == "cuda") {
    // The plugin then says on stderr, the first time each GEMM shape runs, what it timed and kept (cuBLASLt's
    // candidates, the GEMV kernel for BF16 at n <= 8): the line just above each "linear ..." figure.
    setenv("BMSERVER_LOG_GEMM_CHOICES", "1", /*overwrite=*/0);
    absl::StatusOr<std::unique_ptr<Backend>> cuda = create_cuda_backend(0);
    if (!cuda.ok()) {
      std::fprintf(stderr, "%s\n", cuda.status().ToString().c_str());
      return 1;
    }
    backend = *std::move(cuda);
    absl::StatusOr<double> measured = measure_cuda_copy_bandwidth(0);
    if (measured.ok()) bandwidth = *measured;
  } else if (o.backend == "cpu") {
    absl::StatusOr<cpu::GemmPath> path = cpu::parse_gemm_path(o.gemm);
    if (!path.ok()) {
      std::fprintf(stderr, "%s\n", std::string(path.status().message()).c_str());
      return 2;
    }
    backend = create_cpu_backend(CpuBackendOptions{o.threads, *path});
    std::printf("cpu GEMM path %s\n", std::string(cpu::gemm_path_name(*path)).c_str());
    o.peak_tflops = 0;  // no meaningful peak to compare against here
  } else {
    std::fprintf(stderr, "unknown --backend %s\n", o.backend.c_str());
    return 2;
  }
  std::printf("%s ops at %s shapes; device copy bandwidth %.0f GB/s, peak %.0f TFLOP/s (* = the binding limit)\n",
              o.backend.c_str(), shape->name, bandwidth, o.peak_tflops);
  if (!o.only_candidates) print_layer_nodes(o, *shape);
  Bench bench(*backend, o, bandwidth);
  const int64_t d = shape->hidden, q_cols = shape->heads * shape->head_dim, kv_cols = shape->kv_heads * shape->head_dim;
  // 8: the largest batch the BF16 GEMV kernel may take (gemm.h). 16 and 64: batched decode, where int4/int8
  // layers are compared with BF16 ones (the GEMM kernel's range).
  const std::vector<int64_t> token_counts = o.only_candidates ? std::vector<int64_t>{}
                                            : o.quick         ? std::vector<int64_t>{1, 16}
                                                              : std::vector<int64_t>{1, 8, 16, 64, 256, 8192};

  for (int64_t n : token_counts) {
    Arena a(*backend);
    const std::string at = " n=" + std::to_string(n);
    Tensor x = a.random(DType::kF32, n, d), r = a.random(DType::kF32, n, d), h = a.empty(DType::kF32, n, d);
    Tensor norm_w = a.random(DType::kBF16, 1, d);
    bench.measure("rms_norm" + at, 8.0 * n * d + 2.0 * d, 4.0 * n * d, [&] { backend->rms_norm(x, norm_w, 1e-6f, h); });
    bench.measure("add_rms_norm" + at, 16.0 * n * d + 2.0 * d, 6.0 * n * d,
                  [&] { backend->add_rms_norm(x, r, norm_w, 1e-6f, h); });
    bench.measure("add" + at, 12.0 * n * d, 1.0 * n * d, [&] { backend->add(x, r, h); });
    Tensor gate = a.random(DType::kF32, n, shape->intermediate), up = a.random(DType::kF32, n, shape->intermediate);
    bench.measure("silu_mul" + at, 12.0 * n * shape->intermediate, 5.0 * n * shape->intermediate,
                  [&] { backend->silu_mul(gate, up, gate); });
    std::vector<int32_t> positions(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) positions[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    Tensor q = a.random(DType::kF32, n, q_cols), pos = a.ints(positions, 1, n);
    Tensor inv_freq = a.random(DType::kF32, 1, shape->head_dim / 2, 0.01f);
    bench.measure("rope (q)" + at, 8.0 * n * q_cols, 6.0 * n * q_cols,
                  [&] { backend->rope(q, pos, inv_freq, static_cast<int32_t>(shape->head_dim)); });
    // Projections: the weights dominate the bytes at decode sizes, the FLOPs at prefill sizes.
    struct Projection {
      const char* name;
      int64_t out, in;
    };
    const Projection projections[] = {{"linear qkv", q_cols + 2 * kv_cols, d},
                                      {"linear o_proj", d, q_cols},
                                      {"linear gate+up", 2 * shape->intermediate, d},
                                      {"linear down", d, shape->intermediate},
                                      {"linear lm_head", shape->vocab, d}};
    for (const Projection& p : projections) {
      if (o.quick && p.out == shape->vocab && n > 1) continue;
      const int64_t rows = std::string(p.name) == "linear lm_head" ? std::min<int64_t>(n, 256) : n;
      Tensor w = a.random(DType::kBF16, p.out, p.in, 0.02f);
      Tensor in = a.random(DType::kF32, rows, p.in), out = a.empty(DType::kF32, rows, p.out);
      const double bytes = 2.0 * p.out * p.in + 4.0 * rows * (p.in + p.out);
      bench.measure(std::string(p.name) + " n=" + std::to_string(rows), bytes, 2.0 * rows * p.out * p.in,
                    [&] { backend->linear(in, w, nullptr, out); });
      if (p.out == shape->vocab) continue;  // the head stays in the float dtype in GPTQ/AWQ checkpoints
      // The same projection as a GPTQ/AWQ layer (group 128), the bytes being the packed ones the backend holds
      // (printed, in MB, beside the name); int4 also with act-order (the activations permuted per call).
      struct Format {
        int32_t bits;
        bool permuted;
      };
      for (const Format format : {Format{4, false}, Format{4, true}, Format{8, false}}) {
        const int32_t bits = format.bits;
        if (format.permuted && n != 1 && n != 64) continue;
        const QuantizedShape qshape{bits, 128, p.out, p.in, format.permuted};
        absl::StatusOr<int64_t> packed_bytes = backend->quantized_matrix_bytes(qshape);
        if (!packed_bytes.ok()) {
          std::printf("%s int%d: %s\n", p.name, bits, std::string(packed_bytes.status().message()).c_str());
          continue;
        }
        std::vector<uint32_t> qweight(static_cast<size_t>(p.in / (32 / bits) * p.out));
        std::vector<uint16_t> scales(static_cast<size_t>(p.in / 128 * p.out), 0x2000);  // F16 2^-7
        std::vector<uint8_t> zeros(scales.size(), static_cast<uint8_t>(1 << (bits - 1)));
        std::mt19937 words(9);
        for (uint32_t& word : qweight) word = static_cast<uint32_t>(words());
        std::vector<int32_t> perm;
        if (format.permuted) {
          perm.resize(static_cast<size_t>(p.in));
          for (int64_t i = 0; i < p.in; ++i) perm[static_cast<size_t>(i)] = static_cast<int32_t>(i);
          std::shuffle(perm.begin(), perm.end(), words);
        }
        const QuantizedMatrix matrix{qshape, a.empty(DType::kU8, 1, *packed_bytes)};
        backend->copy_quantized_to_device(QuantizedMatrixSource{qshape, qweight, scales, zeros, perm}, matrix);
        char label[64];
        std::snprintf(label, sizeof label, " int%d%s n=%lld (%.1f MB)", bits, format.permuted ? " act-order" : "",
                      static_cast<long long>(rows), *packed_bytes / 1e6);
        bench.measure(std::string(p.name) + label, static_cast<double>(*packed_bytes) + 4.0 * rows * (p.in + p.out),
                      2.0 * rows * p.out * p.in, [&] { backend->quantized_linear(in, matrix, nullptr, out); });
      }
    }
  }

  // Attention over a BF16 paged cache (the GPU default): decode batches at 1k, 2k and 4k contexts, and one prefill.
  // The 64 x 2k decode is the kernel's bandwidth goal (docs/performance.md); its twin with a 32k bound is what a
  // recorded decode graph of the 32k bucket launches for the same step (splits chosen on the device from the real
  // lengths, so it should take the same time).
  struct AttentionCase {
    int64_t seqs, context, query;  // query: new tokens per sequence (1 = decode)
    int64_t bound = 0;             // the launch's max_seq_len and table width (0: context), as a decode graph's
  };
  const std::vector<AttentionCase> cases =
      o.quick ? std::vector<AttentionCase>{{2, 64, 1}, {2, 64, 1, 1024}, {1, 64, 64}}
              : std::vector<AttentionCase>{{1, 1024, 1},    {64, 1024, 1},        {256, 1024, 1}, {1, 2048, 1},
                                           {64, 2048, 1},   {64, 2048, 1, 32768}, {1, 4096, 1},   {64, 4096, 1},
                                           {1, 1024, 1024}, {1, 8192, 8192}};
  for (const AttentionCase& c : o.only_candidates ? std::vector<AttentionCase>{} : cases) {
    Arena a(*backend);
    const int64_t blocks_per_seq = (c.context + kKvBlockSize - 1) / kKvBlockSize;
    const int64_t bound = std::max(c.bound, c.context);
    const int64_t table_width = (bound + kKvBlockSize - 1) / kKvBlockSize;
    const int64_t num_blocks = c.seqs * blocks_per_seq;
    KvCacheLayer cache{a.random(DType::kBF16, num_blocks * kKvBlockSize, kv_cols),
                       a.random(DType::kBF16, num_blocks * kKvBlockSize, kv_cols)};
    std::vector<int32_t> starts{0}, lens, tables;
    for (int64_t s = 0; s < c.seqs; ++s) {
      starts.push_back(static_cast<int32_t>(starts.back() + c.query));
      lens.push_back(static_cast<int32_t>(c.context));
      for (int64_t b = 0; b < table_width; ++b) {
        tables.push_back(b < blocks_per_seq ? static_cast<int32_t>(s * blocks_per_seq + b) : 0);
      }
    }
    const int64_t n = c.seqs * c.query;
    AttentionMetadata meta{static_cast<int32_t>(c.seqs),  a.ints(starts, 1, c.seqs + 1),
                           a.ints(lens, 1, c.seqs),       a.ints(tables, c.seqs, table_width),
                           static_cast<int32_t>(c.query), static_cast<int32_t>(bound)};
    const AttentionShape attention{static_cast<int32_t>(shape->heads), static_cast<int32_t>(shape->kv_heads),
                                   static_cast<int32_t>(shape->head_dim), 0.088f};
    Tensor q = a.random(DType::kF32, n, q_cols), out = a.empty(DType::kF32, n, q_cols);
    // Every sequence reads its K and V once (bf16); causal prefill does half of the query × key products. The
    // bytes are the least the op must move (q in and out in F32), so GB/s against the copy bandwidth is the share
    // of the HBM ceiling.
    const double visible = c.query == 1 ? double(c.context) : (double(c.context) + 1) / 2;
    const double bytes = 2.0 * 2 * c.seqs * c.context * kv_cols + 8.0 * n * q_cols;
    const double flops = 4.0 * n * visible * q_cols;
    char what[96];
    std::snprintf(what, sizeof what, "paged_attention %s %lld x %lld ctx%s (%.3g MB)",
                  c.query == 1 ? "decode" : "prefill", static_cast<long long>(c.seqs),
                  static_cast<long long>(c.context), c.bound > c.context ? " graph-bound" : "", bytes / 1e6);
    bench.measure(what, bytes, flops, [&] { backend->paged_attention(q, cache, meta, attention, out); });
  }

  // The vision tower's encoder ops at Qwen2.5-VL-3B/7B's vision shape (16 heads x 80, hidden 1280) for
  // one 1024x1024 image: 74 x 74 = 5,476 patches. segment_attention over the window layers' segments (8 x 8
  // patches = 64 rows, partial windows at the right and bottom edges) and over the full-attention layers' one
  // segment of the whole frame. Its FLOPs are F32 on CUDA cores (the percentage is against --peak-tflops, the
  // bf16 tensor-core peak: an H100's F32 peak is ~67 TFLOP/s). --quick: a 128-row image.
  if (!o.only_candidates && backend->runs_encoder_ops()) {
    Arena a(*backend);
    const int64_t side = o.quick ? 11 : 74, n = side * side;  // patches per image side
    const int64_t heads = 16, head_dim = 80, cols = heads * head_dim;
    std::vector<int32_t> windows{0}, frame{0, static_cast<int32_t>(n)};
    // Rows are in window order (as the tower permutes them), so a window is a contiguous run of its patches.
    for (int64_t wy = 0; wy < side; wy += 8)
      for (int64_t wx = 0; wx < side; wx += 8)
        windows.push_back(windows.back() +
                          static_cast<int32_t>(std::min<int64_t>(8, side - wy) * std::min<int64_t>(8, side - wx)));
    Tensor q = a.random(DType::kF32, n, cols), k = a.random(DType::kF32, n, cols), v = a.random(DType::kF32, n, cols);
    Tensor out = a.empty(DType::kF32, n, cols);
    const AttentionShape attention{static_cast<int32_t>(heads), static_cast<int32_t>(heads),
                                   static_cast<int32_t>(head_dim), 0.1118f};
    const std::string image = " vision 16x80 n=" + std::to_string(n);
    for (const auto& [name, starts] : {std::pair{"windows of 64", &windows}, std::pair{"full frame", &frame}}) {
      Tensor offsets = a.ints(*starts, 1, static_cast<int64_t>(starts->size()));
      double pairs = 0;  // query x key products over all segments
      for (size_t s = 0; s + 1 < starts->size(); ++s) {
        const double len = (*starts)[s + 1] - (*starts)[s];
        pairs += len * len;
      }
      bench.measure("segment_attention " + std::string(name) + image, 16.0 * n * cols, 4.0 * pairs * cols,
                    [&] { backend->segment_attention(q, k, v, offsets, attention, out); });
    }
    std::vector<float> table(static_cast<size_t>(n * head_dim / 2), 0.5f);
    Tensor cos = a.empty(DType::kF32, n, head_dim / 2), sin = a.empty(DType::kF32, n, head_dim / 2);
    backend->copy_to_device(std::as_bytes(std::span(table)), cos);
    backend->copy_to_device(std::as_bytes(std::span(table)), sin);
    bench.measure("rope_table" + image, 8.0 * n * cols + 8.0 * n * head_dim, 6.0 * n * cols,
                  [&] { backend->rope_table(q, cos, sin, static_cast<int32_t>(head_dim)); });
    // The patch merger's nn.GELU: 2 x 2 patches merged into rows of 4 x 1280.
    const int64_t merged = (n + 3) / 4, merged_cols = 4 * 1280;
    Tensor hidden = a.random(DType::kF32, merged, merged_cols);
    bench.measure("gelu merger " + std::to_string(merged) + " x 5120", 8.0 * merged * merged_cols, 0,
                  [&] { backend->gelu(hidden, hidden); });
  }

  // Candidate selection for sampling over whole-vocabulary rows (what replaces copying logits to the host).
  for (int64_t rows : o.quick ? std::vector<int64_t>{2} : std::vector<int64_t>{1, 64, 256}) {
    Arena a(*backend);
    Tensor logits = a.random(DType::kF32, rows, shape->vocab, 3.0f);
    Tensor starts = a.ints(std::vector<int32_t>(static_cast<size_t>(rows) + 1, 0), 1, rows + 1);
    Tensor ids = a.empty(DType::kI32, rows, 64), values = a.empty(DType::kF32, rows, 64);
    Tensor lse = a.empty(DType::kF32, 1, rows), inverse_t = a.random(DType::kF32, 1, rows, 0.0f);
    Tensor tempered = a.empty(DType::kF32, 1, rows);
    bench.measure("top_candidates k=64 + both sums, rows=" + std::to_string(rows), 4.0 * rows * shape->vocab, 0, [&] {
      backend->top_candidates(logits, starts, Tensor{}, 64, Tensor{}, ids, values, lse, inverse_t, tempered, Tensor{},
                              Tensor{});
    });
    // Every row under a grammar, each with its own mask, as a JSON grammar's masks look: a few allowed tokens
    // (structure: 64 random ids) on even rows, all but a few (inside a string: 2000 random ids forbidden) on odd
    // ones. The step's extra upload is the mask rows and the masks, packed as DecoderLM::forward_candidates sends
    // them in one copy.
    const int64_t words = (shape->vocab + 31) / 32;
    std::vector<uint32_t> packed(static_cast<size_t>(rows + rows * words));
    std::mt19937 rng(9);
    for (int64_t r = 0; r < rows; ++r) {
      packed[static_cast<size_t>(r)] = static_cast<uint32_t>(r);
      uint32_t* mask = packed.data() + rows + r * words;
      const bool few = r % 2 == 0;
      std::fill(mask, mask + words, few ? 0u : ~0u);
      for (int i = 0; i < (few ? 64 : 2000); ++i) {
        const uint32_t id = static_cast<uint32_t>(rng() % static_cast<uint32_t>(shape->vocab));
        mask[id / 32] = few ? mask[id / 32] | (1u << (id % 32)) : mask[id / 32] & ~(1u << (id % 32));
      }
    }
    Tensor upload = a.empty(DType::kU32, 1, static_cast<int64_t>(packed.size()));
    const Tensor mask_rows{upload.buffer, upload.offset_bytes, DType::kI32, 1, rows};
    const Tensor masks{upload.buffer, upload.offset_bytes + rows * 4, DType::kU32, rows, words};
    const double upload_bytes = 4.0 * static_cast<double>(packed.size());
    char what[96];
    std::snprintf(what, sizeof what, "upload masks (%.0f bytes/step), rows=%lld", upload_bytes,
                  static_cast<long long>(rows));
    bench.measure(what, upload_bytes, 0, [&] { backend->copy_to_device(std::as_bytes(std::span(packed)), upload); });
    bench.measure("top_candidates k=64 + both sums + masks, rows=" + std::to_string(rows),
                  4.0 * rows * shape->vocab + upload_bytes, 0, [&] {
                    backend->top_candidates(logits, starts, Tensor{}, 64, Tensor{}, ids, values, lse, inverse_t,
                                            tempered, mask_rows, masks);
                  });
  }
  return 0;
}
