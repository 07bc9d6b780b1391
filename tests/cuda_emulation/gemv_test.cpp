// Emulated gemv.cu (the small-batch BF16 linear gemm.cpp may pick per shape) against the CPU backend's linear
// and the exact product. Shapes: every distinct input width k of the catalog's decoder projections
// (shared/models/catalog/models.md: Qwen2.5 0.5B–72B, QwQ, the VL models' LLMs, R1-Distill-Llama 8B/70B; k real,
// m trimmed to a few blocks so each case runs in well under a second; o_proj's k is the hidden size in all of
// them), n = 1..8, bias none / BF16 / F32; k not a multiple of the 8-wide loads and a misaligned x (the
// single-element path); m not a multiple of the block's 8 columns. Integer-valued operands make every partial
// sum exact, so those cases are bit-exact against the CPU backend whatever the summation order; random operands
// are checked against the double-precision product within a bound proportional to Σ|x·w|.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cuda/kernels.h"

using namespace bm::engine;

namespace {

int failures = 0;
std::mt19937 rng(7);

struct Shape {
  const char* what;
  int64_t m;  // trimmed output columns
  int64_t k;  // real input width
};

// (k of each decode projection: qkv and gate+up read hidden, o reads heads·head_dim, down reads intermediate,
// lm_head reads hidden.) m is trimmed; 21 leaves a partial block of 5 warps.
constexpr Shape kShapes[] = {
    {"qwen2.5-0.5b qkv/gate_up/lm_head", 21, 896},
    {"qwen2.5-0.5b down", 21, 4864},
    {"qwen2.5(-vl)-3b qkv/o/gate_up/lm_head", 21, 2048},
    {"qwen2.5(-vl)-3b down", 21, 11008},
    {"qwen2.5(-vl)-7b qkv/o/gate_up/lm_head", 21, 3584},
    {"qwen2.5(-vl)-7b down", 21, 18944},
    {"qwen2.5-14b/32b qkv/o/gate_up/lm_head", 21, 5120},
    {"qwen2.5-14b down", 21, 13824},
    {"qwen2.5-32b/qwq down", 21, 27648},
    {"qwen2.5-72b/llama-70b qkv/o/gate_up/lm_head", 13, 8192},
    {"qwen2.5-72b down", 13, 29568},
    {"qwen2.5-72b quantized-repo down", 13, 29696},
    {"r1-distill-llama-70b down", 13, 28672},
    {"r1-distill-llama-8b qkv/o/gate_up/lm_head", 21, 4096},
    {"r1-distill-llama-8b down", 21, 14336},
};

// Operands as the plugin holds them: w BF16 bits [m, k], x F32 [n, k] (BF16-representable or not), bias BF16
// or F32.
struct Case {
  std::vector<uint16_t> w;
  std::vector<float> x;
  std::vector<uint16_t> bias_bf16;
  std::vector<float> bias_f32;
};

Case make_case(int64_t m, int64_t n, int64_t k, bool integers, size_t x_offset) {
  Case c;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-3, 3);
  c.w.resize(size_t(m * k));
  for (auto& v : c.w) v = cpu::f32_to_bf16(integers ? float(small(rng)) : normal(rng) * 0.05f);
  c.x.assign(x_offset + size_t(n * k), 0.0f);
  for (size_t i = x_offset; i < c.x.size(); ++i) c.x[i] = integers ? float(small(rng)) : normal(rng);
  c.bias_f32.resize(size_t(m));
  c.bias_bf16.resize(size_t(m));
  for (int64_t j = 0; j < m; ++j) {
    c.bias_bf16[j] = cpu::f32_to_bf16(integers ? float(small(rng)) : normal(rng));
    c.bias_f32[j] = integers ? float(small(rng)) : normal(rng);
  }
  return c;
}

// bias: 0 none, 1 BF16, 2 F32.
void check(const char* what, int64_t m, int64_t n, int64_t k, bool integers, int bias, size_t x_offset,
           bool expect_vectorized) {
  const Case c = make_case(m, n, k, integers, x_offset);
  const float* x = c.x.data() + x_offset;
  const cuda::WeightPtr b = bias == 0   ? cuda::WeightPtr{}
                            : bias == 1 ? cuda::WeightPtr{c.bias_bf16.data(), true}
                                        : cuda::WeightPtr{c.bias_f32.data(), false};
  const cpu::ConstData cpu_bias = bias == 0   ? cpu::ConstData{}
                                  : bias == 1 ? cpu::ConstData{c.bias_bf16.data(), DType::kBF16}
                                              : cpu::ConstData{c.bias_f32.data(), DType::kF32};
  if (cuda::gemv_vectorized(c.w.data(), x, k) != expect_vectorized) {
    std::printf("%s: expected the %s path\n", what, expect_vectorized ? "16-byte" : "single-element");
    ++failures;
  }
  std::vector<float> got(size_t(n * m), NAN);
  cuda::launch_gemv_bf16(c.w.data(), x, m, n, k, b, got.data(), nullptr);
  std::vector<float> cpu_out(size_t(n * m), NAN);
  cpu::ThreadPool pool(1);
  cpu::linear(pool, x, n, k, {c.w.data(), DType::kBF16}, m, cpu_bias, cpu_out.data());
  int bad = 0;
  double worst = 0.0;
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < m; ++j) {
      double exact = 0.0, magnitude = 0.0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = double(x[r * k + i]) * cpu::bf16_to_f32(c.w[size_t(j * k + i)]);
        exact += p;
        magnitude += std::fabs(p);
      }
      if (bias != 0) {
        const double bv = bias == 1 ? cpu::bf16_to_f32(c.bias_bf16[j]) : c.bias_f32[j];
        exact += bv;
        magnitude += std::fabs(bv);
      }
      const float g = got[size_t(r * m + j)];
      const float ref = cpu_out[size_t(r * m + j)];
      bool ok;
      if (integers) {
        ok = std::memcmp(&g, &ref, 4) == 0 && double(g) == exact;
      } else {
        const double err = std::fabs(double(g) - exact);
        worst = std::max(worst, err / std::max(magnitude, 1e-30));
        // F32 sums of ~k/32 terms per lane then 5 butterfly steps: far inside 1e-5 · Σ|x·w| in practice.
        ok = err <= 1e-5 * magnitude && std::fabs(double(ref) - exact) <= 1e-5 * magnitude;
      }
      if (!ok && bad++ == 0) {
        std::printf("%s n=%lld: first mismatch row %lld col %lld: emu %.9g cpu %.9g exact %.9g\n", what, (long long)n,
                    (long long)r, (long long)j, g, ref, exact);
      }
    }
  }
  std::printf("%-40s m=%-3lld n=%lld k=%-6lld %-7s bias=%s %s %s", what, (long long)m, (long long)n, (long long)k,
              integers ? "int" : "random",
              bias == 0   ? "none"
              : bias == 1 ? "bf16"
                          : "f32",
              expect_vectorized ? "vec" : "scalar", bad ? "FAIL" : "ok");
  if (integers)
    std::printf(" (bit-exact)\n");
  else
    std::printf(" (worst err / sum|xw| %.2e)\n", worst);
  failures += bad != 0;
}

}  // namespace

int main() {
  // Every catalog shape at every batch size 1..8, random operands, bias rotating through none / BF16 / F32.
  int rotation = 0;
  for (const Shape& s : kShapes)
    for (int64_t n = 1; n <= cuda::kGemvMaxRows; ++n) check(s.what, s.m, n, s.k, false, rotation++ % 3, 0, true);
  // Bit-exact against the CPU backend on integer operands: full and partial blocks, both bias kinds.
  for (int64_t n : {1, 3, 8})
    for (int bias : {0, 1, 2}) check("exact 7b-like", 19, n, 3584, true, bias, 0, true);
  // The single-element path: k not a multiple of 8 (the tail), k shorter than a warp, misaligned x.
  for (int64_t n : {1, 2, 5, 8}) {
    check("tail k=901", 11, n, 901, true, n % 3, 0, false);
    check("tail k=3587", 9, n, 3587, false, n % 3, 0, false);
    check("short k=5", 7, n, 5, true, 1, 0, false);
    check("misaligned x k=896", 10, n, 896, true, 2, 1, false);
  }
  // One column: the smallest grid (a single warp live in its block).
  check("m=1", 1, 1, 64, true, 1, 0, true);
  // From 4 rows a warp takes two columns: m = 1 leaves its second column past the end (loaded, not stored).
  check("m=1 two-column warp", 1, 5, 64, true, 2, 0, true);
  check("m=3 two-column warps, tail", 3, 8, 45, true, 1, 0, false);
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
