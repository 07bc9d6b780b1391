// Emulated norm.cu, rope.cu (rope and rope_table), embedding.cu, kv_cache.cu, elementwise.cu and gemm_fallback.cu
// against the CPU backend's kernels (bit-exact where the arithmetic is the same; bf16 NaN payloads excepted). Exits 1
// on any mismatch.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cuda/kernels.h"
using namespace bm::engine;
int failures = 0;
static uint32_t bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}
static float bits_to_f(uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}
void report(const char* what, const std::vector<float>& g, const std::vector<float>& r, double rel_tol,
            bool exact = false) {
  double worst = 0;
  int bad = 0;
  size_t first = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    if (exact) {
      if (bits(g[i]) != bits(r[i]) && !(std::isnan(g[i]) && std::isnan(r[i]))) {
        if (!bad++) first = i;
      }
      continue;
    }
    double e = std::fabs(double(g[i]) - r[i]);
    if (!(e <= rel_tol * std::max(1.0, std::fabs(double(r[i]))))) {
      if (!bad++) first = i;
    }
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
  }
  std::printf("%-58s %s max abs err %.2e%s", what, bad ? "FAIL" : "ok", worst, exact ? " (bit-exact check)" : "");
  if (bad) std::printf("  [%d bad, first %zu: emu %g cpu %g]", bad, first, g[first], r[first]);
  std::printf("\n");
  failures += bad != 0;
}
int main() {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0, 2);
  cpu::ThreadPool pool(1);
  char name[200];
  // RMSNorm
  for (int d : {64, 896, 1000, 3})
    for (int bf : {0, 1})
      for (int alias : {0, 1}) {
        const int n = 5;
        std::vector<float> x(n * d);
        for (auto& v : x) v = nd(rng);
        std::vector<float> wf(d);
        std::vector<uint16_t> wb(d);
        for (int i = 0; i < d; ++i) {
          wf[i] = 1 + 0.1f * nd(rng);
          wb[i] = cpu::f32_to_bf16(wf[i]);
        }
        const void* w = bf ? (const void*)wb.data() : (const void*)wf.data();
        std::vector<float> ref(n * d), out(n * d, NAN);
        cpu::rms_norm(pool, x.data(), n, d, {w, bf ? DType::kBF16 : DType::kF32}, 1e-6f, ref.data());
        if (alias) {
          out = x;
          cuda::launch_rms_norm(out.data(), n, d, {w, bool(bf)}, 1e-6f, out.data(), nullptr);
        } else
          cuda::launch_rms_norm(x.data(), n, d, {w, bool(bf)}, 1e-6f, out.data(), nullptr);
        std::snprintf(name, sizeof name, "rms_norm n %d d %d %s alias %d", n, d, bf ? "bf16" : "f32", alias);
        report(name, out, ref, 2e-6);
      }
  // RMSNorm with the residual add fused in (out aliasing the residual, as the model runs it, and not)
  for (int d : {64, 896, 3})
    for (int alias : {0, 1}) {
      const int n = 5;
      std::vector<float> x(n * d), r(n * d);
      for (auto& v : x) v = nd(rng);
      for (auto& v : r) v = nd(rng);
      std::vector<uint16_t> wb(d);
      for (auto& v : wb) v = cpu::f32_to_bf16(nd(rng));
      std::vector<float> ref_x = x, ref_r = r, ref(n * d), emu_x = x, emu_r = r, out(n * d, NAN);
      cpu::add_rms_norm(pool, ref_x.data(), ref_r.data(), n, d, {wb.data(), DType::kBF16}, 1e-6f,
                        alias ? ref_r.data() : ref.data());
      cuda::launch_add_rms_norm(emu_x.data(), emu_r.data(), n, d, {wb.data(), true}, 1e-6f,
                                alias ? emu_r.data() : out.data(), nullptr);
      if (alias) {
        ref = ref_r;
        out = emu_r;
      }
      std::snprintf(name, sizeof name, "add_rms_norm d %d alias residual %d: sum", d, alias);
      report(name, emu_x, ref_x, 0, true);
      std::snprintf(name, sizeof name, "add_rms_norm d %d alias residual %d: norm", d, alias);
      report(name, out, ref, 2e-6);
    }
  // RoPE
  for (int hd : {64, 128, 6})
    for (int nh : {1, 7, 14}) {
      const int n = 4;
      const int half = hd / 2;
      std::vector<float> x(n * nh * hd);
      for (auto& v : x) v = nd(rng);
      std::vector<float> inv(half);
      for (int i = 0; i < half; ++i) inv[i] = std::pow(1000000.0f, -2.0f * i / hd);
      std::vector<int32_t> pos = {0, 1, 4097, 131000};
      std::vector<float> ref = x, out = x;
      cpu::rope(pool, ref.data(), n, nh, hd, pos.data(), inv.data());
      cuda::launch_rope(out.data(), n, nh, hd, pos.data(), inv.data(), nullptr);
      std::snprintf(name, sizeof name, "rope heads %d head_dim %d (positions up to 131000)", nh, hd);
      report(name, out, ref, 1e-6);
    }
  // rope_table: the same rotation from per-token cos/sin tables (the vision tower's 2-D RoPE, M-RoPE). Odd token
  // counts, head_dim 80 (the vision heads), 6 and 128; the arithmetic is the CPU's, so bit-exact.
  for (int hd : {80, 6, 128})
    for (int nh : {1, 3, 16}) {
      const int n = hd == 128 ? 1 : 7;
      const int half = hd / 2;
      std::vector<float> x(n * nh * hd);
      for (auto& v : x) v = nd(rng);
      std::vector<float> cos_t(n * half), sin_t(n * half);
      std::uniform_real_distribution<float> angle(-200.0f, 200.0f);
      for (int i = 0; i < n * half; ++i) {
        const float a = angle(rng);
        cos_t[i] = std::cos(a);
        sin_t[i] = std::sin(a);
      }
      std::vector<float> ref = x, out = x;
      cpu::rope_table(pool, ref.data(), n, nh, hd, cos_t.data(), sin_t.data());
      cuda::launch_rope_table(out.data(), n, nh, hd, cos_t.data(), sin_t.data(), nullptr);
      std::snprintf(name, sizeof name, "rope_table n %d heads %d head_dim %d", n, nh, hd);
      report(name, out, ref, 0, true);
    }
  // embedding
  for (int bf : {0, 1})
    for (int hidden : {896, 5}) {
      const int vocab = 50;
      std::vector<float> tf(vocab * hidden);
      std::vector<uint16_t> tb(vocab * hidden);
      for (size_t i = 0; i < tf.size(); ++i) {
        tf[i] = nd(rng);
        tb[i] = cpu::f32_to_bf16(tf[i]);
      }
      const void* t = bf ? (const void*)tb.data() : (const void*)tf.data();
      std::vector<int32_t> ids = {0, 49, 7, 7, 23};
      std::vector<float> ref(ids.size() * hidden), out(ids.size() * hidden, NAN);
      cpu::embedding(pool, {t, bf ? DType::kBF16 : DType::kF32}, vocab, hidden, ids.data(), ids.size(), ref.data());
      cuda::launch_embedding({t, bool(bf)}, vocab, hidden, ids.data(), ids.size(), out.data(), nullptr);
      std::snprintf(name, sizeof name, "embedding %s hidden %d", bf ? "bf16" : "f32", hidden);
      report(name, out, ref, 0, true);
      std::vector<int32_t> bad_ids = {-1, 50};
      std::vector<float> o2(2 * hidden, 0.0f);
      cuda::launch_embedding({t, bool(bf)}, vocab, hidden, bad_ids.data(), 2, o2.data(), nullptr);
      bool all_nan = std::all_of(o2.begin(), o2.end(), [](float v) { return std::isnan(v); });
      std::printf("%-58s %s\n", "embedding out-of-range ids -> NaN rows", all_nan ? "ok" : "FAIL");
      failures += !all_nan;
    }
  {  // gather_rows
    const int d = 300, rows = 9;
    std::vector<float> x(rows * d);
    for (auto& v : x) v = nd(rng);
    std::vector<int32_t> ids = {8, 0, 3, 3};
    std::vector<float> ref(ids.size() * d), out(ids.size() * d, NAN);
    cpu::gather_rows(pool, x.data(), d, ids.data(), ids.size(), ref.data());
    cuda::launch_gather_rows(x.data(), rows, d, ids.data(), ids.size(), out.data(), nullptr);
    report("gather_rows d 300", out, ref, 0, true);
  }
  // store_kv
  for (int bf : {0, 1}) {
    const int n = 3, row = 2 * 64, slots = 40;
    std::vector<float> k(n * row), v(n * row);
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    k[0] = 1.00390625f;
    k[1] = 1.01171875f;
    k[2] = -1.00390625f;
    k[3] = NAN;
    k[4] = INFINITY;
    k[5] = 3.4e38f;
    k[6] = 1e-40f;
    std::vector<int32_t> slot_map = {5, 39, 0};
    const size_t es = bf ? 2 : 4;
    std::vector<unsigned char> kr(slots * row * es, 0xab), vr = kr, kg = kr, vg = kr;
    cpu::store_kv(pool, k.data(), v.data(), n, slot_map.data(),
                  {kr.data(), vr.data(), bf ? DType::kBF16 : DType::kF32, slots, row});
    cuda::launch_store_kv(k.data(), v.data(), n, slot_map.data(), {kg.data(), vg.data(), bool(bf), slots, row},
                          nullptr);
    // Identical bytes, except that a NaN may carry another payload (bf16: the CPU writes 0x7fc0, CUDA's
    // __float2bfloat16 0x7fff).
    auto is_nan = [&](uint32_t u) { return bf ? (u & 0x7f80u) == 0x7f80u && (u & 0x7fu) : std::isnan(bits_to_f(u)); };
    int bad_elems = 0, nan_payload = 0;
    for (const auto* pair : {&kr, &vr}) {
      const auto& r = *pair;
      const auto& g = pair == &kr ? kg : vg;
      for (size_t i = 0; i < r.size() / es; ++i) {
        uint32_t a = 0, b = 0;
        std::memcpy(&a, &r[i * es], es);
        std::memcpy(&b, &g[i * es], es);
        if (a == b) continue;
        if (is_nan(a) && is_nan(b)) {
          ++nan_payload;
          continue;
        }
        if (!bad_elems++) std::printf("  %s elem %zu cpu %08x emu %08x\n", pair == &kr ? "k" : "v", i, a, b);
      }
    }
    const bool ok = bad_elems == 0;
    std::printf("%-58s %s (%d NaN with another payload)\n",
                bf ? "store_kv bf16 (bytes identical, incl. ties/NaN/inf/max)" : "store_kv f32 (bytes identical)",
                ok ? "ok" : "FAIL", nan_payload);
    failures += !ok;
  }
  {  // elementwise
    const int64_t count = 3000;
    std::vector<float> a(count), b(count);
    for (auto& x : a) x = nd(rng) * 5;
    for (auto& x : b) x = nd(rng);
    a[0] = -100;
    a[1] = 100;
    a[2] = -88.8f;
    a[3] = 0;
    std::vector<float> ref(count), out(count);
    cpu::silu_mul(pool, a.data(), b.data(), count, ref.data());
    cuda::launch_silu_mul(a.data(), b.data(), count, out.data(), nullptr);
    report("silu_mul 3000", out, ref, 1e-6);
    out = a;
    cuda::launch_silu_mul(out.data(), b.data(), count, out.data(), nullptr);
    report("silu_mul aliased out=gate", out, ref, 1e-6);
    // gelu: erf saturates for large |x| (x, or -0), infinities and NaN pass as on the CPU (-inf gives NaN there
    // too: -inf * 0); the expression is the CPU's, so bit-exact.
    {
      std::vector<float> g = a;
      const float specials[] = {1e30f,   -1e30f,   12.0f,     -12.0f, 5.5f,    -5.5f,    0.0f, -0.0f, 1e-30f,
                                -1e-30f, INFINITY, -INFINITY, NAN,    3.0e38f, -3.0e38f, 0.5f, -0.5f};
      std::copy(std::begin(specials), std::end(specials), g.begin() + 10);
      std::vector<float> gr(count), go(count, NAN);
      cpu::gelu(pool, g.data(), count, gr.data());
      cuda::launch_gelu(g.data(), count, go.data(), nullptr);
      report("gelu 3000 (incl. +-1e30, +-inf, NaN, +-0)", go, gr, 0, true);
      go = g;
      cuda::launch_gelu(go.data(), 2999, go.data(), nullptr);  // odd count, aliased
      gr[2999] = g[2999];                                      // the last element is not touched
      report("gelu 2999 aliased out=x", go, gr, 0, true);
      const bool saturated = go[10] == 1e30f && go[11] == 0.0f && std::signbit(go[11]) && go[12] == 12.0f;
      std::printf("%-58s %s\n", "gelu(1e30) = 1e30, gelu(-1e30) = -0, gelu(12) = 12", saturated ? "ok" : "FAIL");
      failures += !saturated;
    }
    cpu::add(pool, a.data(), b.data(), count, ref.data());
    cuda::launch_add(a.data(), b.data(), count, out.data(), nullptr);
    report("add 3000", out, ref, 0, true);
    out = b;
    cuda::launch_add(a.data(), out.data(), count, out.data(), nullptr);
    report("add aliased out=b", out, ref, 0, true);
    std::vector<float> src(count);
    for (auto& x : src) x = nd(rng);
    src[0] = 1.00390625f;
    src[1] = 1.01171875f;
    src[2] = NAN;
    src[3] = -INFINITY;
    src[4] = 3.4e38f;
    src[5] = -0.0f;
    src[6] = 1e-41f;
    std::vector<uint16_t> rb(count), gb(count);
    for (int64_t i = 0; i < count; ++i) rb[i] = cpu::f32_to_bf16(src[i]);
    cuda::launch_f32_to_bf16(src.data(), count, gb.data(), nullptr);
    int bad = 0;
    for (int64_t i = 0; i < count; ++i)
      if (rb[i] != gb[i] && !(i == 2 && (gb[i] & 0x7f80) == 0x7f80 && (gb[i] & 0x7f))) {
        if (!bad++) std::printf("  bf16 elem %ld: cpu %04x emu %04x\n", (long)i, rb[i], gb[i]);
      }
    std::printf("%-58s %s (NaN payload: cpu %04x emu %04x)\n", "f32_to_bf16 3000 (ties, NaN, inf, max, denormal)",
                bad ? "FAIL" : "ok", rb[2], gb[2]);
    failures += bad != 0;
    for (int bf : {0, 1}) {
      const int n = 7, m = 300;
      std::vector<float> o(n * m);
      for (auto& x : o) x = nd(rng);
      std::vector<float> bfv(m);
      std::vector<uint16_t> bb(m);
      for (int j = 0; j < m; ++j) {
        bfv[j] = nd(rng);
        bb[j] = cpu::f32_to_bf16(bfv[j]);
      }
      std::vector<float> r = o;
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) r[i * m + j] += bf ? cpu::bf16_to_f32(bb[j]) : bfv[j];
      cuda::launch_add_bias(o.data(), n, m, {bf ? (const void*)bb.data() : (const void*)bfv.data(), bool(bf)}, nullptr);
      report(bf ? "add_bias bf16 7x300" : "add_bias f32 7x300", o, r, 0, true);
    }
  }
  // gemm_fallback.cu: the plain GEMM behind linear() when cuBLASLt has no algorithm. Sums in increasing k, as
  // this reference does, so the results are bit-exact; shapes that are not multiples of the 16-wide tiles.
  for (int bf : {0, 1})
    for (auto [m, n, k] :
         {std::array<int, 3>{37, 19, 45}, std::array<int, 3>{16, 1, 16}, std::array<int, 3>{5, 40, 3}}) {
      std::vector<float> wf(size_t(m) * k), xf(size_t(n) * k);
      for (auto& v : wf) v = nd(rng);
      for (auto& v : xf) v = nd(rng);
      std::vector<uint16_t> wb(wf.size()), xb(xf.size());
      for (size_t i = 0; i < wf.size(); ++i) wb[i] = cpu::f32_to_bf16(wf[i]);
      for (size_t i = 0; i < xf.size(); ++i) xb[i] = cpu::f32_to_bf16(xf[i]);
      std::vector<float> r(size_t(n) * m), o(size_t(n) * m, -1.0f);
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < m; ++j) {
          float acc = 0.0f;
          for (int t = 0; t < k; ++t) {
            const float xv = bf ? cpu::bf16_to_f32(xb[size_t(i) * k + t]) : xf[size_t(i) * k + t];
            const float wv = bf ? cpu::bf16_to_f32(wb[size_t(j) * k + t]) : wf[size_t(j) * k + t];
            acc += xv * wv;
          }
          r[size_t(i) * m + j] = acc;
        }
      cuda::launch_gemm_fallback(bf ? (const void*)wb.data() : (const void*)wf.data(),
                                 bf ? (const void*)xb.data() : (const void*)xf.data(), bool(bf), m, n, k, o.data(),
                                 nullptr);
      std::snprintf(name, sizeof name, "gemm_fallback %s m=%d n=%d k=%d", bf ? "bf16" : "f32", m, n, k);
      report(name, o, r, 0, true);
    }
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
