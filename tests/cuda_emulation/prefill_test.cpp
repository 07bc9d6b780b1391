// Emulated engine/backend/cuda/attention_prefill.cu (mma.sync tiles, online softmax) and, for the short rows,
// attention_decode.cu, against cpu::paged_attention (tolerance 1e-2: the kernel rounds Q and P to bf16) and against a
// scalar model with the kernel's own rounding (tolerance 2e-5). Optional argument: run only case N.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cuda/kernels.h"
#include "tests/cuda_emulation/paged_batch.h"
using namespace bm::engine;
using bm::engine::emu::Case;
using bm::engine::emu::make_paged_batch;
using bm::engine::emu::PagedBatch;
int failures = 0;
// Scalar model of the prefill kernel's arithmetic: bf16 q, 64-key tiles, scores summed per 16 dims in float and
// scaled by scale * log2(e), online softmax in base 2, P rounded to bf16 for PV (summed per 16 keys in float, as
// the emulated mma does), l summed from unrounded P.
void model_row(const float* q, const uint16_t* K, const uint16_t* V, const int32_t* table, int64_t row, int64_t kv_off,
               int D, float scale, int position, float* out) {
  const float scale_log2 = scale * 1.4426950408889634f;
  float m = -INFINITY, l = 0;
  std::vector<float> o(D, 0.0f);
  for (int kv0 = 0; kv0 <= position; kv0 += 64) {
    float sv[64];
    float tmax = -INFINITY;
    for (int c = 0; c < 64; ++c) {
      int pos = kv0 + c;
      sv[c] = -INFINITY;
      if (pos > position) continue;
      const int64_t slot = int64_t{table[pos / 16]} * 16 + pos % 16;
      float d = 0;
      for (int kk = 0; kk < D; kk += 16) {
        float part = 0;
        for (int j = kk; j < kk + 16; ++j)
          part += cpu::bf16_to_f32(cpu::f32_to_bf16(q[j])) * cpu::bf16_to_f32(K[slot * row + kv_off + j]);
        d = d + part;
      }
      sv[c] = d * scale_log2;
      tmax = std::max(tmax, sv[c]);
    }
    float mn = std::max(m, tmax), alpha = std::exp2(m - mn), sum = 0;
    for (int j = 0; j < D; ++j) o[j] *= alpha;
    float pb[64];
    for (int c = 0; c < 64; ++c) {
      const float pr = sv[c] == -INFINITY ? 0.0f : std::exp2(sv[c] - mn);
      sum += pr;
      pb[c] = cpu::bf16_to_f32(cpu::f32_to_bf16(pr));
    }
    for (int k0 = 0; k0 < 64; k0 += 16)
      for (int j = 0; j < D; ++j) {
        float part = 0;
        for (int c = k0; c < k0 + 16; ++c) {
          const int pos = std::min(kv0 + c, position);  // masked keys have P = 0
          const int64_t slot = int64_t{table[pos / 16]} * 16 + pos % 16;
          part += pb[c] * cpu::bf16_to_f32(V[slot * row + kv_off + j]);
        }
        o[j] = o[j] + part;
      }
    l = l * alpha + sum;
    m = mn;
  }
  for (int j = 0; j < D; ++j) out[j] = o[j] * (1.0f / l);
}
void run(const Case& c, uint32_t seed) {
  const PagedBatch b = make_paged_batch(c, seed);
  const int S = b.num_seqs, T = b.num_tokens, max_blocks = b.max_blocks, max_seq = b.max_seq;
  const int64_t row = b.row;
  const float scale = b.scale;
  const std::vector<int32_t>& qs = b.query_starts;
  const std::vector<int32_t>& table = b.table;
  const std::vector<float>& q = b.q;
  const std::vector<float>& ref = b.reference;
  const std::vector<uint16_t>& kb = b.k_bf16;
  const std::vector<uint16_t>& vb = b.v_bf16;
  const cuda::KvCachePtr cp = b.cache(c);
  const cuda::AttentionBatchPtr bp = b.batch(c);
  const cuda::AttentionDims dims = b.dims(c);
  const int64_t ws = cuda::attention_decode_workspace_floats(dims, max_seq, c.num_sms);
  std::vector<float> work(std::max<int64_t>(ws, 1), std::nanf(""));
  std::vector<float> out(q.size(), 12345.0f);
  const int64_t pws = cuda::attention_prefill_workspace_ints(T, S);
  std::vector<int32_t> pwork(pws, -99);
  // As the backend routes: the prefill kernel where it applies (BF16 cache), the split-sequence kernel for the
  // rest (an F32 cache: every row).
  const bool prefill_kernel = cuda::prefill_kernel_supports(c.bf16, c.dim);
  if (prefill_kernel) cuda::launch_attention_prefill(q.data(), cp, bp, dims, {pwork.data(), pws}, out.data(), nullptr);
  if (c.only_short || !prefill_kernel)
    cuda::launch_attention_decode(q.data(), cp, bp, dims, prefill_kernel, c.num_sms, {ws ? work.data() : nullptr, ws},
                                  out.data(), nullptr);
  // The schedule: every tile of the prefill kernel's sequences once, the ones with more visible keys first.
  if (prefill_kernel && b.max_q >= cuda::kPrefillMinQueryLen) {
    int expected = 0;
    for (int s = 0; s < S; ++s)
      if (c.q_lens[s] >= cuda::kPrefillMinQueryLen)
        expected += (c.q_lens[s] + cuda::kPrefillTileRows - 1) / cuda::kPrefillTileRows;
    int previous_keys = INT32_MAX;
    bool ordered = pwork[0] == expected;
    for (int i = 0; ordered && i < pwork[0]; ++i) {
      const int s = pwork[1 + 2 * i], start = pwork[2 + 2 * i];
      const int keys = c.seq_lens[s] - c.q_lens[s] + std::min(start + cuda::kPrefillTileRows, c.q_lens[s]);
      ordered = keys <= previous_keys;
      previous_keys = keys;
    }
    if (!ordered) {
      std::printf("  tile list: %d tiles (expected %d) or not longest first\n", pwork[0], expected);
      ++failures;
    }
  }
  double worst_b = 0;
  double worst = 0;
  int bad = 0;
  for (int s = 0; s < S; ++s)
    for (int t = qs[s]; t < qs[s + 1]; ++t) {
      const bool prefill = prefill_kernel && c.q_lens[s] >= cuda::kPrefillMinQueryLen;
      const bool skipped = prefill_kernel && !prefill && !c.only_short;
      for (int i = 0; i < c.heads * c.dim; ++i) {
        const float g = out[int64_t{t} * c.heads * c.dim + i], r = ref[int64_t{t} * c.heads * c.dim + i];
        if (skipped) {
          if (g != 12345.0f) {
            if (++bad < 4) std::printf("  skipped row %d written\n", t);
          }
          continue;
        }
        const double tol = prefill ? 1e-2 : 2e-5;
        if (prefill && i % c.dim == 0) {
          const int h = i / c.dim;
          float mo[256];
          model_row(&q[(int64_t{t} * c.heads + h) * c.dim], kb.data(), vb.data(), &table[s * max_blocks], row,
                    int64_t(h / (c.heads / c.kv_heads)) * c.dim, c.dim, scale,
                    c.seq_lens[s] - c.q_lens[s] + (t - qs[s]), mo);
          for (int j = 0; j < c.dim; ++j) {
            double e2 = std::fabs(double(out[int64_t{t} * c.heads * c.dim + i + j]) - mo[j]);
            if (!(e2 < 2e-5)) {
              if (++bad < 6)
                std::printf("  MODEL MISMATCH row %d head %d d %d: %g vs %g\n", t, h, j,
                            out[int64_t{t} * c.heads * c.dim + i + j], mo[j]);
            }
            worst_b = std::isnan(e2) ? INFINITY : std::max(worst_b, e2);
          }
        }
        double e = std::fabs(double(g) - r);
        if (!(e <= tol * std::max(1.0, std::fabs(double(r))))) {
          if (++bad < 6)
            std::printf("  MISMATCH seq %d row %d head %d d %d: emu %g cpu %g\n", s, t, i / c.dim, i % c.dim, g, r);
        }
        if (std::isnan(e))
          worst = INFINITY;
        else
          worst = std::max(worst, e);
      }
    }
  std::printf("heads %d/%d D %d %s sms %d short %d seqs [", c.heads, c.kv_heads, c.dim, c.bf16 ? "bf16" : "f32",
              c.num_sms, c.only_short);
  for (int s = 0; s < S; ++s) std::printf("%d:%d ", c.seq_lens[s], c.q_lens[s]);
  std::printf("] %s: %s max abs err %.2e (prefill rows vs scalar model of the kernel's bf16 rounding: %.2e)\n",
              !prefill_kernel ? "split-sequence (F32 cache)" : c.only_short ? "prefill+decode" : "prefill only", bad ? "FAIL" : "ok", worst, worst_b);
  failures += bad != 0;
  std::fflush(stdout);
}
int main(int argc, char** argv) {
  int which = argc > 1 ? atoi(argv[1]) : -1;
  // Case: q heads, kv heads, head_dim, BF16 cache, cache lengths, query lengths (cached context = the difference),
  // SMs, with the short rows (decode kernel) too.
  std::vector<Case> cases = {
      {4, 2, 64, true, {8, 100, 50, 64, 200}, {8, 70, 3, 64, 130}, 132, false},
      {4, 2, 64, true, {8, 100, 50, 64, 200}, {8, 70, 3, 64, 130}, 132, true},
      {14, 2, 128, true, {300, 9, 1}, {140, 9, 1}, 132, true},
      {2, 2, 128, true, {20, 600}, {20, 65}, 132, false},
      // Every catalog model's attention shape, each with a cached prefix before the query chunk somewhere.
      {14, 2, 64, true, {150, 40}, {90, 40}, 132, false},     // Qwen2.5-0.5B: group 7, head_dim 64
      {12, 2, 128, true, {33, 17}, {17, 17}, 132, true},      // Qwen2.5-1.5B: group 6
      {16, 2, 128, true, {80}, {80}, 132, false},             // Qwen2.5-3B: group 8
      {28, 4, 128, true, {200, 20}, {75, 9}, 132, false},     // Qwen2.5-7B: group 7
      {40, 8, 128, true, {100}, {64}, 132, false},            // Qwen2.5-14B / 32B: group 5
      {64, 8, 128, true, {70}, {70}, 132, false},             // Qwen2.5-72B: group 8
      {32, 8, 128, true, {129}, {65}, 132, false},            // R1-Distill-Llama-8B: group 4
      // One token, the minimum prefill length and the 16-token paged-block boundaries, one batch.
      {4, 1, 64, true, {1, 8, 15, 16, 17, 31, 32, 33}, {1, 8, 15, 16, 17, 31, 32, 33}, 132, true},
      // 128-token tile boundaries (fresh prefills) and group 2's packed-block boundaries (64 tokens).
      {4, 2, 128, true, {63, 64, 65, 127, 128, 129}, {63, 64, 65, 127, 128, 129}, 132, false},
      // Chunked prefill: 1024 and 520 cached tokens before chunks of 16 and 8, group 7 (112 and 56 packed rows).
      {7, 1, 128, true, {1040, 16, 528}, {16, 16, 8}, 132, false},
      // Long contexts: 3966 cached + 130 new; a 1024-token fresh prefill (8 token tiles, longest first).
      {2, 1, 64, true, {4096}, {130}, 132, false},
      {2, 1, 128, true, {1024}, {1024}, 132, false},
      // F32 caches: the split-sequence kernel takes every row (the prefill kernel is BF16-only).
      {4, 2, 64, false, {100, 9, 1}, {70, 9, 1}, 132, false},
      {28, 4, 128, false, {40}, {40}, 132, false},
  };
  for (size_t i = 0; i < cases.size(); ++i)
    if (which < 0 || which == int(i)) run(cases[i], 100 + i);
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
