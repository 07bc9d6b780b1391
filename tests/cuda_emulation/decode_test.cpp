// Emulated engine/backend/cuda/attention_decode.cu (launch_attention_decode: split-K partials, merge, only_short
// skipping) against cpu::paged_attention on random paged KV caches (shuffled physical blocks, F32 and BF16, GQA,
// head_dim 64..256). Optional argument: run only case N. Exits 1 on any mismatch.
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
void run(const Case& c, uint32_t seed) {
  const PagedBatch b = make_paged_batch(c, seed);
  const int S = b.num_seqs, max_seq = b.max_seq;
  const std::vector<int32_t>& qs = b.query_starts;
  const std::vector<float>& q = b.q;
  const std::vector<float>& ref = b.reference;
  const cuda::KvCachePtr cp = b.cache(c);
  const cuda::AttentionBatchPtr bp = b.batch(c);
  const cuda::AttentionDims dims = b.dims(c);
  const int64_t ws = cuda::attention_decode_workspace_floats(dims, max_seq, c.num_sms);
  std::vector<float> work(std::max<int64_t>(ws, 1), std::nanf(""));
  std::vector<float> out(q.size(), 12345.0f);
  cuda::launch_attention_decode(q.data(), cp, bp, dims, c.only_short, c.num_sms, {ws ? work.data() : nullptr, ws},
                                out.data(), nullptr);
  double worst = 0;
  int bad = 0;
  for (int s = 0; s < S; ++s)
    for (int t = qs[s]; t < qs[s + 1]; ++t) {
      const bool skipped = c.only_short && c.q_lens[s] >= cuda::kPrefillMinQueryLen;
      for (int i = 0; i < c.heads * c.dim; ++i) {
        const float g = out[int64_t{t} * c.heads * c.dim + i], r = ref[int64_t{t} * c.heads * c.dim + i];
        if (skipped) {
          if (g != 12345.0f) {
            if (++bad < 4) std::printf("  skipped row %d written\n", t);
          }
          continue;
        }
        double e = std::fabs(double(g) - r);
        if (!(e <= 2e-5 * std::max(1.0, std::fabs(double(r))))) {
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
  std::printf("] ws %ld: %s max abs err %.2e\n", (long)ws, bad ? "FAIL" : "ok", worst);
  failures += bad != 0;
  std::fflush(stdout);
}
int main(int argc, char** argv) {
  int which = argc > 1 ? atoi(argv[1]) : -1;
  std::vector<Case> cases = {
      {8, 2, 64, true, {1, 5, 300, 20}, {1, 3, 1, 2}, 132, false},
      {8, 2, 128, false, {1, 5, 600, 20}, {1, 3, 2, 2}, 132, true},
      {4, 4, 64, false, {700, 1}, {1, 1}, 1, false},
      {16, 1, 128, true, {530, 9, 40}, {7, 9, 1}, 132, true},
      {16, 1, 128, true, {530, 9, 40}, {7, 9, 1}, 132, false},
      {6, 2, 96, true, {270, 3}, {4, 2}, 2, false},
      {2, 1, 256, false, {300, 12}, {1, 12}, 132, true},
      {8, 8, 64, true, {17, 33}, {5, 1}, 132, false},
      {1, 1, 64, true, {2000}, {1}, 1, false},
      {1, 1, 128, false, {1800, 1}, {2, 1}, 1, true},
      {24, 2, 128, true, {257, 256, 512, 513}, {1, 1, 2, 3}, 132, false},
      {4, 2, 64, false, {1025, 8, 7}, {1, 8, 7}, 3, true},
      {4, 2, 64, false, {1025, 8, 7}, {1, 8, 7}, 3, false},
      // Decode graphs: a 4096-token bound over short sequences (many splits past every sequence's end), a
      // padding row (length 1), one split per block at a large grid.
      {14, 2, 64, true, {300, 1, 17, 1}, {1, 1, 1, 1}, 132, false, 4096},
      {28, 4, 128, true, {1000, 1}, {1, 1}, 132, false, 16384},
      {8, 2, 128, true, {70, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1}, 1, false, 1024},
  };
  for (size_t i = 0; i < cases.size(); ++i)
    if (which < 0 || which == int(i)) run(cases[i], 100 + i);
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
