// The whole Qwen2.5-VL vision tower (VisionEncoder) with its three encoder ops run by the emulated CUDA kernels
// (rope.cu's rope_table, encoder_attention.cu's segment_attention, elementwise.cu's gelu) against transformers'
// outputs: the fixture of tests/unit/engine/models/vision_encoder_test.cpp (a shrunk random-weight tower: depth 4,
// full attention on blocks 1 and 3, 2 heads of 32; one image, an image with partial windows, two images in one call,
// a t = 2 video), the same tolerance (2e-5 of the largest reference magnitude per tensor). Every other op runs on
// the CPU backend; the encoder ops copy their operands to the host, run the launcher there and copy the result
// back. This checks the kernels with the segment offsets, rotary tables and shapes the encoder really hands them,
// which the op-level tests cannot. Exits 1 on any mismatch. Optional argument: the source directory (else
// BMSERVER_SOURCE_DIR, else BM_SOURCE_DIR from the build).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/backend/cpu/cpu_backend.h"
#include "engine/backend/cuda/kernels.h"
#include "engine/model/checkpoint.h"
#include "engine/model/safetensors_file.h"
#include "engine/models/vision_encoder.h"
#include "tests/unit/engine/backend/forwarding_backend.h"
#include "tests/unit/engine/model/tensor_floats.h"

namespace bm::engine {
namespace {

constexpr double kRelativeTolerance = 2e-5;  // vision_encoder_test.cpp's bound

template <typename T>
std::vector<T> to_host(Backend& backend, const Tensor& t) {
  std::vector<T> values(static_cast<size_t>(t.num_elements()));
  backend.copy_to_host(t, std::as_writable_bytes(std::span(values)));
  return values;
}

template <typename T>
void to_device(Backend& backend, const std::vector<T>& values, const Tensor& t) {
  backend.copy_to_device(std::as_bytes(std::span(values)), t);
}

// The CPU backend, except that the encoder ops run the emulated CUDA launchers.
class EmulatedEncoderOps final : public testing::ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  int calls[3] = {0, 0, 0};  // rope_table, segment_attention, gelu

  std::string_view name() const override { return "cpu+emulated-cuda-encoder-ops"; }
  bool runs_encoder_ops() const override { return true; }
  void rope_table(const Tensor& x, const Tensor& cos, const Tensor& sin, int32_t head_dim) override {
    ++calls[0];
    std::vector<float> hx = to_host<float>(inner_, x);
    const std::vector<float> hc = to_host<float>(inner_, cos), hs = to_host<float>(inner_, sin);
    cuda::launch_rope_table(hx.data(), x.rows, x.cols / head_dim, head_dim, hc.data(), hs.data(), nullptr);
    to_device(inner_, hx, x);
  }
  void segment_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& segment_starts,
                         const AttentionShape& shape, const Tensor& out) override {
    ++calls[1];
    const std::vector<float> hq = to_host<float>(inner_, q), hk = to_host<float>(inner_, k),
                             hv = to_host<float>(inner_, v);
    const std::vector<int32_t> starts = to_host<int32_t>(inner_, segment_starts);
    const int32_t segments = static_cast<int32_t>(starts.size()) - 1;
    std::vector<int32_t> tiles(static_cast<size_t>(cuda::segment_attention_workspace_ints(q.rows, segments)));
    std::vector<float> hout(static_cast<size_t>(out.num_elements()), NAN);
    const cuda::AttentionDims dims{static_cast<int32_t>(q.rows), shape.num_heads, shape.num_kv_heads, shape.head_dim,
                                   shape.scale};
    cuda::launch_segment_attention(hq.data(), hk.data(), hv.data(), q.rows, starts.data(), segments, dims,
                                   {tiles.data(), static_cast<int64_t>(tiles.size())}, hout.data(), nullptr);
    to_device(inner_, hout, out);
  }
  void gelu(const Tensor& x, const Tensor& out) override {
    ++calls[2];
    std::vector<float> hx = to_host<float>(inner_, x);
    cuda::launch_gelu(hx.data(), x.num_elements(), hx.data(), nullptr);
    to_device(inner_, hx, out);
  }
};

using testing::tensor_floats;

int run(const std::filesystem::path& dir) {
  auto config = load_vision_config(dir);
  auto checkpoint = Checkpoint::open(dir);
  auto cases = SafetensorsFile::open(dir / "cases.safetensors");
  if (!config.ok() || !checkpoint.ok() || !cases.ok()) {
    std::fprintf(stderr, "cannot open the fixture in %s\n", dir.c_str());
    return 1;
  }
  std::unique_ptr<Backend> cpu = create_cpu_backend(CpuBackendOptions{1});
  EmulatedEncoderOps backend(*cpu);
  auto encoder = VisionEncoder::load(**checkpoint, *config, backend);
  if (!encoder.ok()) {
    std::fprintf(stderr, "load: %s\n", encoder.status().ToString().c_str());
    return 1;
  }
  int failures = 0;
  for (int i = 0; i < 4; ++i) {
    const std::string index = std::to_string(i);
    const TensorInfo* pixels = (*cases)->find("pixel_values_" + index);
    const TensorInfo* grid = (*cases)->find("grid_thw_" + index);
    const TensorInfo* want_info = (*cases)->find("embeds_" + index);
    if (pixels == nullptr || grid == nullptr || want_info == nullptr) {
      std::fprintf(stderr, "case %d missing from the fixture\n", i);
      return 1;
    }
    std::vector<int32_t> g(static_cast<size_t>(grid->num_elements()));
    std::memcpy(g.data(), grid->data.data(), grid->data.size());
    std::vector<VisionGrid> grids;
    for (size_t j = 0; j + 2 < g.size(); j += 3) grids.push_back(VisionGrid{g[j], g[j + 1], g[j + 2]});
    VisionTrace trace;
    auto embeds = (*encoder)->encode(tensor_floats(*pixels), grids, &trace);
    if (!embeds.ok()) {
      std::fprintf(stderr, "case %d: %s\n", i, embeds.status().ToString().c_str());
      return 1;
    }
    for (const auto& [stage, got] : {std::pair<const char*, const std::vector<float>*>{"block0_", &trace.block0},
                                     std::pair<const char*, const std::vector<float>*>{"embeds_", &*embeds}}) {
      const std::vector<float> want = tensor_floats(*(*cases)->find(stage + index));
      double max_abs = got->size() == want.size() ? 0.0 : INFINITY, max_ref = 0;
      for (size_t j = 0; j < std::min(got->size(), want.size()); ++j) {
        const double d = std::fabs(double{(*got)[j]} - want[j]);
        max_abs = std::isnan(d) ? INFINITY : std::max(max_abs, d);
        max_ref = std::max(max_ref, std::fabs(double{want[j]}));
      }
      const double relative = max_ref > 0 ? max_abs / max_ref : max_abs;
      const bool ok = relative <= kRelativeTolerance;
      std::printf("case %d (grids %zu) %-8s max |diff| %.2e, max |ref| %.2f, relative %.2e (bound %.0e) %s\n", i,
                  grids.size(), stage, max_abs, max_ref, relative, kRelativeTolerance, ok ? "ok" : "FAIL");
      failures += !ok;
    }
  }
  // The encoder must really have gone through the emulated kernels.
  const bool used = backend.calls[0] > 0 && backend.calls[1] > 0 && backend.calls[2] > 0;
  std::printf("emulated calls: rope_table %d, segment_attention %d, gelu %d %s\n", backend.calls[0], backend.calls[1],
              backend.calls[2], used ? "ok" : "FAIL");
  failures += !used;
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}

}  // namespace
}  // namespace bm::engine

int main(int argc, char** argv) {
  const char* env = std::getenv("BMSERVER_SOURCE_DIR");
  const std::filesystem::path source = argc > 1 ? argv[1] : env != nullptr ? env : BM_SOURCE_DIR;
  return bm::engine::run(source / "tests/data/models/qwen2_5_vl_vision");
}
