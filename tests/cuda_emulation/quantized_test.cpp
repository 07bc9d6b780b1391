// Emulated quantized_linear.cu against the CPU backend's quantized linear (engine/backend/cpu/quantized_linear.cpp)
// and the plain dequantize() reference (engine/backend/quantized_matrix.h), for GPTQ 4/8-bit with and without
// act-order and AWQ-like 4-bit (any zero-point), odd shapes, group boundaries and 1…70 activation rows:
// - the repack: the plugin's packed bytes, decoded by its own dequantize kernel, equal dequantize() bit for bit;
// - GEMV (rows <= 8, F32 math): within 2e-6 · Σ|x·w| of the double-precision product and of the CPU backend;
// - GEMM (tensor cores, BF16 operands): within 2e-6 · Σ|x·w| of the double product of the BF16-rounded operands
//   (what it promises to compute), and within the BF16 rounding bound (8e-3 · Σ|x·w|) of the CPU backend —
//   with and without the split over the inputs. A wrong weight, group or column shows up as an O(Σ|x·w|) error.
// Exits 1 on any mismatch.
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cpu/thread_pool.h"
#include "engine/backend/cuda/kernels.h"
#include "engine/backend/quantized_matrix.h"

using namespace bm::engine;
int failures = 0;

struct Case {
  const char* what;
  int32_t bits;
  int32_t group_size;
  int64_t rows;
  int64_t cols;
  bool permuted;
  int64_t inputs = 0;  // padded_from: fewer activation columns than packed inputs (a tensor-parallel rank's share)
};

struct Source {
  std::vector<uint32_t> qweight;
  std::vector<uint16_t> scales;
  std::vector<uint8_t> zeros;
  std::vector<int32_t> perm;
  QuantizedMatrixSource view;
};

uint16_t f16_bits(float v) {
  const __half_raw raw = __float2half_rn(v);
  return raw.x;
}

Source make_source(const Case& c, std::mt19937& rng) {
  Source s;
  const QuantizedShape shape{c.bits, c.group_size, c.rows, c.cols, c.permuted, c.inputs};
  std::uniform_int_distribution<uint32_t> word;
  std::uniform_real_distribution<float> scale(0.002f, 0.05f);
  std::uniform_int_distribution<int> zero(0, (1 << c.bits) - 1);
  s.qweight.resize(static_cast<size_t>(c.cols / shape.values_per_word() * c.rows));
  for (auto& w : s.qweight) w = word(rng);
  s.scales.resize(static_cast<size_t>(shape.num_groups() * c.rows));
  for (auto& v : s.scales) v = f16_bits(scale(rng));
  s.zeros.resize(s.scales.size());
  for (auto& z : s.zeros) z = static_cast<uint8_t>(zero(rng));
  if (c.permuted) {
    s.perm.assign(static_cast<size_t>(c.cols), -1);  // padding inputs: −1
    std::iota(s.perm.begin(), s.perm.begin() + shape.inputs(), 0);
    std::shuffle(s.perm.begin(), s.perm.end(), rng);
  }
  s.view = QuantizedMatrixSource{shape, s.qweight, s.scales, s.zeros, s.perm};
  return s;
}

// err[i] / bound[i] <= 1 for every output, else a failure with the worst case.
void report(const char* what, const std::vector<float>& got, const std::vector<double>& want,
            const std::vector<double>& magnitude, double tolerance) {
  double worst = 0;
  size_t worst_at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double ratio = std::fabs(double(got[i]) - want[i]) / (tolerance * magnitude[i] + 1e-30);
    if (!(ratio <= worst)) {
      worst = std::isnan(ratio) ? INFINITY : ratio;
      worst_at = i;
    }
  }
  const bool bad = !(worst <= 1.0);
  std::printf("%-78s %s worst %.3f of bound\n", what, bad ? "FAIL" : "ok", worst);
  if (bad) std::printf("    at %zu: got %.9g want %.9g\n", worst_at, got[worst_at], want[worst_at]);
  failures += bad;
}

float round_bf16(float v) {
  return cpu::bf16_to_f32(cpu::f32_to_bf16(v));
}

int main() {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  cpu::ThreadPool pool(1);
  char name[256];
  const Case cases[] = {
      {"gptq int4 g32", 4, 32, 37, 96, false},
      {"gptq int4 g128 act-order", 4, 128, 133, 384, true},
      {"gptq int4 g8 (groups smaller than a GEMM step)", 4, 8, 5, 40, false},
      {"awq int4 g64 (full zero range)", 4, 64, 72, 192, false},
      {"gptq int8 g32", 8, 32, 70, 160, false},
      {"gptq int8 g64 act-order", 8, 64, 131, 128, true},
      {"gptq int8 g4", 8, 4, 9, 20, false},
      {"gptq int4 g96 act-order (words per group not a power of two)", 4, 96, 19, 288, true},
      {"gptq int8 one group of 120 (group_size -1)", 8, 120, 12, 120, false},
      {"gptq int4 g32 act-order, 70 of 128 inputs (padded)", 4, 32, 40, 128, true, 70},
      {"gptq int8 g16 act-order, 33 of 64 inputs (padded)", 8, 16, 21, 64, true, 33},
  };
  for (const Case& c : cases) {
    Source source = make_source(c, rng);
    const QuantizedShape& shape = source.view.shape;
    const std::vector<float> dense = dequantize(source.view);

    // The repack, decoded by the plugin's dequantize kernel.
    const cuda::QuantizedDeviceLayout layout = cuda::quantized_device_layout(shape);
    std::vector<uint4> device((static_cast<size_t>(layout.total_bytes) + 15) / 16);
    auto* packed = reinterpret_cast<std::byte*>(device.data());
    cuda::pack_quantized_for_device(source.view, packed);
    const cuda::QuantizedWeightPtr weight{packed, shape};
    std::vector<float> decoded(dense.size(), NAN);
    cuda::launch_quantized_dequantize(weight, decoded.data(), nullptr);
    const bool same = std::memcmp(decoded.data(), dense.data(), dense.size() * 4) == 0;
    std::printf("%-78s %s\n", (std::string(c.what) + ": repacked bytes dequantize to dequantize()").c_str(),
                same ? "ok" : "FAIL");
    failures += !same;

    // The CPU backend's layout and kernel.
    std::vector<std::byte> cpu_packed(static_cast<size_t>(cpu::quantized_layout_bytes(shape)));
    cpu::pack_quantized(source.view, cpu_packed.data());

    std::vector<float> bias(static_cast<size_t>(c.rows));
    for (auto& b : bias) b = normal(rng);
    for (int64_t n : {1, 3, 8, 9, 64, 70}) {
      for (int with_bias : {0, 1}) {
        if (with_bias && n != 3 && n != 70) continue;
        const int64_t inputs = shape.inputs();
        std::vector<float> x(static_cast<size_t>(n * inputs));
        for (auto& v : x) v = normal(rng);
        const float* bias_data = with_bias ? bias.data() : nullptr;
        // References: exact (double) and with BF16-rounded operands; magnitude Σ|x·w| per output.
        std::vector<double> exact(static_cast<size_t>(n * c.rows)), rounded(exact.size()), magnitude(exact.size());
        for (int64_t r = 0; r < n; ++r) {
          for (int64_t j = 0; j < c.rows; ++j) {
            double e = with_bias ? bias[j] : 0.0, b = e, m = with_bias ? std::fabs(bias[j]) : 0.0;
            for (int64_t k = 0; k < inputs; ++k) {
              const float xv = x[r * inputs + k];
              const float wv = dense[j * inputs + k];
              e += double(xv) * wv;
              b += double(round_bf16(xv)) * round_bf16(wv);
              m += std::fabs(double(xv) * wv);
            }
            exact[r * c.rows + j] = e;
            rounded[r * c.rows + j] = b;
            magnitude[r * c.rows + j] = m;
          }
        }
        std::vector<float> cpu_out(exact.size(), NAN);
        cpu::quantized_linear(pool, cpu::GemmPath::kAuto, x.data(), n, cpu_packed.data(), shape,
                              cpu::ConstData{bias_data, DType::kF32}, cpu_out.data());
        const std::vector<double> cpu_ref(cpu_out.begin(), cpu_out.end());

        // Activations in packed order, as the backend hands them to the kernels.
        std::vector<float> xs = x;
        if (c.permuted) {
          xs.resize(static_cast<size_t>(n * c.cols));
          cuda::launch_quantized_permute(x.data(), n, weight, xs.data(), nullptr);
        }
        const cuda::WeightPtr b{bias_data, false};
        if (n <= cuda::kQuantGemvMaxRows) {
          std::vector<float> out(exact.size(), NAN);
          cuda::launch_quantized_gemv(xs.data(), n, weight, b, out.data(), nullptr);
          std::snprintf(name, sizeof name, "%s: gemv n %lld%s vs exact", c.what, static_cast<long long>(n),
                        with_bias ? " +bias" : "");
          report(name, out, exact, magnitude, 2e-6);
          std::snprintf(name, sizeof name, "%s: gemv n %lld%s vs cpu backend", c.what, static_cast<long long>(n),
                        with_bias ? " +bias" : "");
          report(name, out, cpu_ref, magnitude, 2e-6);
        }
        for (int32_t sms : {1, 64}) {
          const int32_t splits = cuda::quantized_gemm_splits(n, shape, sms);
          std::vector<float> workspace(static_cast<size_t>(cuda::quantized_gemm_workspace_floats(n, shape, sms)), NAN);
          std::vector<float> out(exact.size(), NAN);
          cuda::launch_quantized_gemm(xs.data(), n, weight, b, sms, workspace.empty() ? nullptr : workspace.data(),
                                      static_cast<int64_t>(workspace.size()), out.data(), nullptr);
          std::snprintf(name, sizeof name, "%s: gemm n %lld%s splits %d vs bf16 operands", c.what,
                        static_cast<long long>(n), with_bias ? " +bias" : "", splits);
          report(name, out, rounded, magnitude, 2e-6);
          std::snprintf(name, sizeof name, "%s: gemm n %lld%s splits %d vs cpu backend", c.what,
                        static_cast<long long>(n), with_bias ? " +bias" : "", splits);
          report(name, out, cpu_ref, magnitude, 8e-3);
        }
      }
    }
  }
  // The layout's size: packed words, one params uint4 per (tile, group), the permutation; sections 256-aligned.
  {
    const cuda::QuantizedDeviceLayout l = cuda::quantized_device_layout(QuantizedShape{4, 128, 3584, 18944, true});
    const bool ok = l.num_tiles == 896 && l.word_rows == 2368 && l.num_groups == 148 &&
                    l.params_offset == 896 * 2368 * 16 && l.perm_offset == l.params_offset + 896 * 148 * 16 &&
                    l.total_bytes == l.perm_offset + 18944 * 4;
    std::printf("%-78s %s\n", "layout bytes of a Qwen2.5-7B down_proj (int4 g128 act-order)", ok ? "ok" : "FAIL");
    failures += !ok;
  }
  std::printf("%s\n", failures ? "FAILED" : "all passed");
  return failures ? 1 : 0;
}
