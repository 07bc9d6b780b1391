// Our packed GEMM (the CPU backend's linear(), weights packed at load) against oneDNN's matmul with prepacked
// weights, on the linear layers of Qwen2.5-0.5B (q|k|v and gate|up fused as the model loads them) at decode and
// prefill row counts — issue 16's "use oneDNN if its matmul with prepacked weights beats what you write: measure
// both". oneDNN is given every advantage we could: bf16 activations already converted (ours converts F32 inside
// the call), one primitive per row count created before timing, weights reordered once into the layout it picks
// (format_tag::any). Best of --repeats calls each. Prints figures; asserts nothing. Built only where
// libdnnl-dev is installed (engine/tools/CMakeLists.txt); threads: ours --threads, oneDNN OMP_NUM_THREADS.
// OMP_WAIT_POLICY=passive matters: GNU OpenMP's threads otherwise spin after each oneDNN call and halve the speed
// of our pool's next call on the same cores. Last column: oneDNN's time over ours (above 1: ours is faster).
//
// Usage: OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive bm_onednn_gemm_bench [--threads N] [--repeats R] [--gemm PATH]
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cpu/gemm_path.h"

namespace {

using bm::engine::Backend;
using bm::engine::Buffer;
using bm::engine::DType;
using bm::engine::Tensor;
using Clock = std::chrono::steady_clock;

struct Layer {
  const char* name;
  int64_t out;  // rows of the weight (N)
  int64_t in;   // K
};
// Qwen2.5-0.5B: hidden 896, 14 + 2 + 2 heads of 64, intermediate 4864.
constexpr Layer kLayers[] = {{"qkv", 1152, 896}, {"o", 896, 896}, {"gate_up", 9728, 896}, {"down", 896, 4864}};
constexpr int64_t kRowCounts[] = {1, 4, 16, 157, 512};

template <typename F>
double best_seconds(int repeats, F&& call) {
  call();  // warm-up
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    call();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return best;
}

std::unique_ptr<Buffer> allocate(Backend& backend, int64_t bytes) {
  absl::StatusOr<std::unique_ptr<Buffer>> buffer = backend.allocate(bytes);
  if (!buffer.ok()) {
    std::fprintf(stderr, "allocation failed: %s\n", std::string(buffer.status().message()).c_str());
    std::exit(1);
  }
  return *std::move(buffer);
}

}  // namespace

int main(int argc, char** argv) {
  int32_t threads = 2;
  int repeats = 20;
  std::string gemm = "auto";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--threads") {
      threads = std::atoi(argv[i + 1]);
    } else if (arg == "--repeats") {
      repeats = std::max(1, std::atoi(argv[i + 1]));
    } else if (arg == "--gemm") {
      gemm = argv[i + 1];
    } else {
      std::fprintf(stderr, "usage: %s [--threads N] [--repeats R] [--gemm PATH]\n", argv[0]);
      return 2;
    }
  }
  const absl::StatusOr<bm::engine::cpu::GemmPath> path = bm::engine::cpu::parse_gemm_path(gemm);
  if (!path.ok()) {
    std::fprintf(stderr, "%s\n", std::string(path.status().message()).c_str());
    return 2;
  }
  std::unique_ptr<Backend> backend = bm::engine::create_cpu_backend(bm::engine::CpuBackendOptions{threads, *path});
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const char* omp = std::getenv("OMP_NUM_THREADS");
  std::printf("ours: %s path, %d threads; oneDNN %d.%d.%d, OMP_NUM_THREADS=%s\n",
              std::string(bm::engine::cpu::gemm_path_name(*path)).c_str(), threads, dnnl_version()->major,
              dnnl_version()->minor, dnnl_version()->patch, omp != nullptr ? omp : "(unset: every core)");
  std::printf("%-8s %6s %12s %12s %10s %10s %8s\n", "layer", "rows", "ours ms", "oneDNN ms", "ours GF/s",
              "oneDNN GF/s", "1DNN/ours");

  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<double> ours_total(std::size(kRowCounts)), onednn_total(std::size(kRowCounts));
  for (const Layer& layer : kLayers) {
    std::vector<uint16_t> weight(static_cast<size_t>(layer.out * layer.in));
    for (uint16_t& w : weight) w = bm::engine::cpu::f32_to_bf16(uniform(rng) * 0.05f);
    // Ours: the weight packed by the backend as the model loader uploads it.
    std::unique_ptr<Buffer> w_buffer = allocate(*backend, layer.out * layer.in * 2);
    const Tensor w{w_buffer.get(), 0, DType::kBF16, layer.out, layer.in};
    backend->copy_linear_weight_to_device(std::as_bytes(std::span(weight)), w);
    // oneDNN: [N, K] row-major is [K, N] in format ab's transpose (ba); reordered once into what matmul picks.
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dnnl::memory::desc w_user_md({layer.in, layer.out}, dt::bf16, tag::ba);
    dnnl::memory w_user(w_user_md, engine, weight.data());
    for (size_t ri = 0; ri < std::size(kRowCounts); ++ri) {
      const int64_t rows = kRowCounts[ri];
      std::vector<float> x(static_cast<size_t>(rows * layer.in));
      for (float& v : x) v = uniform(rng);
      std::unique_ptr<Buffer> x_buffer = allocate(*backend, rows * layer.in * 4);
      std::unique_ptr<Buffer> o_buffer = allocate(*backend, rows * layer.out * 4);
      const Tensor xt{x_buffer.get(), 0, DType::kF32, rows, layer.in};
      const Tensor ot{o_buffer.get(), 0, DType::kF32, rows, layer.out};
      backend->copy_to_device(std::as_bytes(std::span(x)), xt);
      const double ours = best_seconds(repeats, [&] {
        backend->linear(xt, w, nullptr, ot);
        backend->synchronize();
      });

      std::vector<uint16_t> x_bf16(x.size());
      for (size_t i = 0; i < x.size(); ++i) x_bf16[i] = bm::engine::cpu::f32_to_bf16(x[i]);
      std::vector<float> out(static_cast<size_t>(rows * layer.out));
      const dnnl::memory::desc src_md({rows, layer.in}, dt::bf16, tag::ab);
      const dnnl::memory::desc w_any({layer.in, layer.out}, dt::bf16, tag::any);
      const dnnl::memory::desc dst_md({rows, layer.out}, dt::f32, tag::ab);
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_any, dst_md), engine);
      dnnl::memory w_packed(pd.weights_desc(), engine);
      dnnl::reorder(w_user, w_packed).execute(stream, w_user, w_packed);
      stream.wait();
      dnnl::memory src(src_md, engine, x_bf16.data());
      dnnl::memory dst(dst_md, engine, out.data());
      const dnnl::matmul matmul(pd);
      const double onednn = best_seconds(repeats, [&] {
        matmul.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w_packed}, {DNNL_ARG_DST, dst}});
        stream.wait();
      });
      const double flops = 2.0 * rows * layer.out * layer.in;
      std::printf("%-8s %6lld %12.3f %12.3f %10.1f %10.1f %8.2f\n", layer.name, static_cast<long long>(rows),
                  ours * 1e3, onednn * 1e3, flops / ours / 1e9, flops / onednn / 1e9, onednn / ours);
      ours_total[ri] += ours;
      onednn_total[ri] += onednn;
    }
  }
  std::printf("one layer's four GEMMs (ms), ours vs oneDNN:");
  for (size_t ri = 0; ri < std::size(kRowCounts); ++ri) {
    std::printf("  %lld rows %.2f / %.2f", static_cast<long long>(kRowCounts[ri]), ours_total[ri] * 1e3,
                onednn_total[ri] * 1e3);
  }
  std::printf("\n");
  return 0;
}
