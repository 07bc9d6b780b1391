// Emulated rope_store_kv.cu and elementwise.cu's silu_mul_fused against the CPU backend's kernels, and the CPU's
// fused kernels against its unfused ones (rope/rope_table then store_kv; silu_mul on split halves), which they must
// match to the bit: the model's greedy outputs do not change when its q/k/v and gate/up weights are fused. Shapes:
// every catalog model's attention (head_dim 64 with 14/2 heads as Qwen2.5-0.5B, 128 with GQA groups 2 to 8) and a
// small odd one; 1 token and 19 tokens whose slots cross KV block boundaries, with padding rows (slot -1). Exits 1
// on any mismatch.
#include <algorithm>
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

void verdict(const char* what, int bad, const char* detail) {
  std::printf("%-78s %s%s\n", what, bad ? "FAIL" : "ok", detail);
  failures += bad != 0;
}

// Elements of a cache half as floats (BF16 widened), so a tolerance can be applied.
std::vector<float> widen(const std::vector<unsigned char>& bytes, bool bf16) {
  const size_t es = bf16 ? 2 : 4;
  std::vector<float> out(bytes.size() / es);
  for (size_t i = 0; i < out.size(); ++i) {
    if (bf16) {
      uint16_t b;
      std::memcpy(&b, &bytes[i * 2], 2);
      const uint32_t wide = uint32_t{b} << 16;
      std::memcpy(&out[i], &wide, 4);
    } else {
      std::memcpy(&out[i], &bytes[i * 4], 4);
    }
  }
  return out;
}

// Mismatches of got against want: bitwise when rel_tol is 0 (NaN matches NaN), else |got - want| <= rel_tol *
// max(1, |want|).
int mismatches(const std::vector<float>& got, const std::vector<float>& want, double rel_tol) {
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(got[i]) && std::isnan(want[i])) continue;
    const bool same = rel_tol == 0 ? std::memcmp(&got[i], &want[i], 4) == 0
                                   : std::fabs(double(got[i]) - want[i]) <= rel_tol * std::max(1.0, std::fabs(double(want[i])));
    if (!same && !bad++)
      std::printf("  first mismatch at %zu: got %.9g want %.9g\n", i, double(got[i]), double(want[i]));
  }
  return bad;
}

struct AttentionCase {
  int heads, kv_heads, head_dim;
};

}  // namespace

int main() {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0, 2);
  cpu::ThreadPool pool(1);
  char name[200];
  const AttentionCase cases[] = {{14, 2, 64},  {16, 8, 128}, {32, 8, 128}, {28, 4, 128},
                                 {64, 8, 128}, {40, 8, 128}, {3, 1, 6}};
  // Slots of 19 tokens: across the boundaries of 16-token blocks, out of order, with padding rows.
  const std::vector<int32_t> slots19 = {15, 16, -1, 31, 32, 0, 47, 48, 63, 64, 1, 17, -1, 33, 79, 5, 6, 7, -1};
  const int num_slots = 80;
  for (const AttentionCase& c : cases)
    for (int n : {1, 19})
      for (int bf : {0, 1})
        for (int table : {0, 1}) {
          const int hd = c.head_dim, half = hd / 2, q_size = c.heads * hd, kv = c.kv_heads * hd;
          const int row = q_size + 2 * kv;
          std::vector<float> qkv(size_t(n) * row);
          for (auto& v : qkv) v = nd(rng);
          std::vector<int32_t> slots(slots19.begin(), slots19.begin() + n);
          if (n == 1) slots[0] = 31;  // the last row of a block
          std::vector<int32_t> positions(n);
          for (int t = 0; t < n; ++t) positions[t] = t == 0 ? 131000 : 37 * t;
          std::vector<float> inv(half), cos_t(size_t(n) * half), sin_t(size_t(n) * half);
          for (int i = 0; i < half; ++i) inv[i] = std::pow(1000000.0f, -2.0f * i / hd);
          std::uniform_real_distribution<float> angle(-200.0f, 200.0f);
          for (size_t i = 0; i < cos_t.size(); ++i) {
            const float a = angle(rng);
            cos_t[i] = std::cos(a);
            sin_t[i] = std::sin(a);
          }
          const cpu::RotaryView cpu_angles = table ? cpu::RotaryView{nullptr, nullptr, cos_t.data(), sin_t.data()}
                                                   : cpu::RotaryView{positions.data(), inv.data(), nullptr, nullptr};
          const cuda::RotaryPtr emu_angles = table ? cuda::RotaryPtr{nullptr, nullptr, cos_t.data(), sin_t.data()}
                                                   : cuda::RotaryPtr{positions.data(), inv.data(), nullptr, nullptr};
          const size_t es = bf ? 2 : 4;
          const DType dtype = bf ? DType::kBF16 : DType::kF32;
          // The CPU's fused kernel.
          std::vector<unsigned char> fk(size_t(num_slots) * kv * es, 0xab), fv = fk;
          std::vector<float> fq(size_t(n) * q_size, NAN);
          cpu::rope_store_kv(pool, qkv.data(), n, c.heads, hd, cpu_angles, slots.data(),
                             {fk.data(), fv.data(), dtype, num_slots, kv}, fq.data());
          // The CPU's unfused ops on split copies.
          std::vector<float> uq(size_t(n) * q_size), uk(size_t(n) * kv), uv(size_t(n) * kv);
          for (int t = 0; t < n; ++t) {
            const float* r = qkv.data() + size_t(t) * row;
            std::copy(r, r + q_size, uq.begin() + size_t(t) * q_size);
            std::copy(r + q_size, r + q_size + kv, uk.begin() + size_t(t) * kv);
            std::copy(r + q_size + kv, r + row, uv.begin() + size_t(t) * kv);
          }
          for (float* x : {uq.data(), uk.data()}) {
            const int heads = x == uq.data() ? c.heads : c.kv_heads;
            if (table)
              cpu::rope_table(pool, x, n, heads, hd, cos_t.data(), sin_t.data());
            else
              cpu::rope(pool, x, n, heads, hd, positions.data(), inv.data());
          }
          std::vector<unsigned char> ukc(fk.size(), 0xab), uvc = ukc;
          cpu::store_kv(pool, uk.data(), uv.data(), n, slots.data(), {ukc.data(), uvc.data(), dtype, num_slots, kv});
          const int unfused_bad = mismatches(fq, uq, 0) + (fk != ukc) + (fv != uvc);
          std::snprintf(name, sizeof name, "cpu rope_store_kv = rope%s + store_kv: %d/%d/%d n %d %s",
                        table ? "_table" : "", c.heads, c.kv_heads, hd, n, bf ? "bf16" : "f32");
          verdict(name, unfused_bad, " (bit-exact)");
          // The emulated kernel against the CPU's fused kernel: the table's arithmetic is the CPU's to the bit;
          // sincosf may differ from std::cos/std::sin in the last bit, which BF16 rounding can carry to one BF16 ulp.
          std::vector<unsigned char> ek(fk.size(), 0xab), ev = ek;
          std::vector<float> eq(size_t(n) * q_size, NAN);
          cuda::launch_rope_store_kv(qkv.data(), n, c.heads, hd, emu_angles, slots.data(),
                                     {ek.data(), ev.data(), bool(bf), num_slots, kv}, eq.data(), nullptr);
          const double q_tol = table ? 0 : 1e-6, cache_tol = table ? 0 : bf ? 1.0 / 128 : 1e-6;
          const int emu_bad = mismatches(eq, fq, q_tol) + mismatches(widen(ek, bf), widen(fk, bf), cache_tol) +
                              mismatches(widen(ev, bf), widen(fv, bf), 0);
          std::snprintf(name, sizeof name, "emulated rope_store_kv%s: %d/%d/%d n %d %s", table ? " (table)" : "",
                        c.heads, c.kv_heads, hd, n, bf ? "bf16" : "f32");
          verdict(name, emu_bad, table ? " (bit-exact)" : "");
        }
  // silu_mul_fused: the intermediate sizes of the catalog (4864 Qwen2.5-0.5B, 11008, 14336) and an odd one, 1 and 5
  // rows, with saturating gate values.
  for (int d : {4864, 11008, 14336, 7})
    for (int n : {1, 5}) {
      std::vector<float> gate_up(size_t(n) * 2 * d);
      for (auto& v : gate_up) v = nd(rng) * 5;
      gate_up[0] = -100;
      gate_up[1] = 100;
      gate_up[2] = -88.8f;
      gate_up[3] = 0;
      std::vector<float> fused(size_t(n) * d, NAN), emu(size_t(n) * d, NAN), gate(size_t(n) * d), up(size_t(n) * d),
          unfused(size_t(n) * d);
      for (int t = 0; t < n; ++t) {
        std::copy_n(gate_up.begin() + size_t(t) * 2 * d, d, gate.begin() + size_t(t) * d);
        std::copy_n(gate_up.begin() + size_t(t) * 2 * d + d, d, up.begin() + size_t(t) * d);
      }
      cpu::silu_mul_fused(pool, gate_up.data(), n, d, fused.data());
      cpu::silu_mul(pool, gate.data(), up.data(), int64_t(n) * d, unfused.data());
      std::snprintf(name, sizeof name, "cpu silu_mul_fused = silu_mul on the halves: n %d d %d", n, d);
      verdict(name, mismatches(fused, unfused, 0), " (bit-exact)");
      cuda::launch_silu_mul_fused(gate_up.data(), n, d, emu.data(), nullptr);
      std::snprintf(name, sizeof name, "emulated silu_mul_fused: n %d d %d", n, d);
      verdict(name, mismatches(emu, fused, 1e-6), "");  // expf against std::exp, as misc_test's silu_mul
    }
  std::printf("%s\n", failures ? "FAILED" : "all ok");
  return failures ? 1 : 0;
}
