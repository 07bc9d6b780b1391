// Emulated engine/backend/cuda/attention_decode.cu (launch_attention_decode: row groups, splits chosen on the
// device from the real lengths, the split merge, only_short skipping) against cpu::paged_attention on random
// paged KV caches (shuffled physical blocks, F32 and BF16). Covers every catalog model's attention shape, GQA
// groups 1-16, head_dim 64-256, one-token sequences, lengths at paged-block, tile and split boundaries, a 32k
// context, decode-graph bounds far above the real lengths, padding rows (length 1, as DecodeGraphs pads) and rows
// that see nothing (length 0: written as zeros). Optional argument: run only case N. Exits 1 on any mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/cpu/bf16.h"
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cuda/kernels.h"
#include "tests/cuda_emulation/paged_batch.h"
using namespace bm::engine;
using bm::engine::emu::Case;
using bm::engine::emu::make_paged_batch;
using bm::engine::emu::PagedBatch;

namespace {

int failures = 0;

struct Named {
  const char* name;
  Case c;
};

void run(const Named& named, uint32_t seed) {
  const Case& c = named.c;
  PagedBatch b = make_paged_batch(c, seed);
  // Rows that see no position go after the sequences: one query row each, length 0, a table row of invalid ids;
  // their expected output is zeros.
  std::vector<int32_t> seq_lens(c.seq_lens.begin(), c.seq_lens.end());
  std::vector<int32_t> q_lens(c.q_lens.begin(), c.q_lens.end());
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0, 1);
  for (int z = 0; z < c.empty_rows; ++z) {
    seq_lens.push_back(0);
    q_lens.push_back(1);
    b.query_starts.push_back(b.query_starts.back() + 1);
    b.table.insert(b.table.end(), b.max_blocks, -7);
    for (int i = 0; i < c.heads * c.dim; ++i) {
      b.q.push_back(normal(rng));
      b.reference.push_back(0.0f);
    }
    ++b.num_seqs;
    ++b.num_tokens;
  }
  const int S = b.num_seqs;
  const std::vector<int32_t>& qs = b.query_starts;
  const cuda::KvCachePtr cp = b.cache(c);
  const cuda::AttentionBatchPtr bp{b.num_seqs,   qs.data(), seq_lens.data(), b.table.data(),
                                   b.max_blocks, b.max_q,   b.max_seq};
  const cuda::AttentionDims dims = b.dims(c);
  const int64_t ws = cuda::attention_decode_workspace_floats(dims, b.max_seq, c.num_sms);
  std::vector<float> work(std::max<int64_t>(ws, 1), std::nanf(""));
  std::vector<float> out(b.q.size(), 12345.0f);
  cuda::launch_attention_decode(b.q.data(), cp, bp, dims, c.only_short, c.num_sms, {ws ? work.data() : nullptr, ws},
                                out.data(), nullptr);
  double worst = 0;
  int bad = 0;
  for (int s = 0; s < S; ++s)
    for (int t = qs[s]; t < qs[s + 1]; ++t) {
      const bool skipped = c.only_short && q_lens[s] >= cuda::kPrefillMinQueryLen;
      for (int i = 0; i < c.heads * c.dim; ++i) {
        const float g = out[int64_t{t} * c.heads * c.dim + i], r = b.reference[int64_t{t} * c.heads * c.dim + i];
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
  std::printf("%-10s heads %d/%d D %d %s sms %d short %d bound %d seqs [", named.name, c.heads, c.kv_heads, c.dim,
              c.bf16 ? "bf16" : "f32", c.num_sms, c.only_short, b.max_seq);
  const int shown = std::min(S, 12);
  for (int s = 0; s < shown; ++s) std::printf("%d:%d ", seq_lens[s], q_lens[s]);
  if (S > shown) std::printf("... (%d seqs) ", S);
  std::printf("] ws %ld: %s max abs err %.2e\n", (long)ws, bad ? "FAIL" : "ok", worst);
  failures += bad != 0;
  std::fflush(stdout);
}

// Lengths around the paged-block (16), tile (4) and minimum-split (64) boundaries.
std::vector<int> boundary_lengths() {
  return {1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129};
}

}  // namespace

int main(int argc, char** argv) {
  const int which = argc > 1 ? atoi(argv[1]) : -1;
  const std::vector<int> edges = boundary_lengths();
  const std::vector<int> ones(edges.size(), 1);
  std::vector<int> many_lens, many_q;  // a 64-row decode batch: one split per row
  for (int s = 0; s < 64; ++s) {
    many_lens.push_back(1 + (s * 37) % 41);
    many_q.push_back(1);
  }
  std::vector<Named> cases = {
      // The catalog models' shapes (query heads / KV heads / head_dim), decode rows, many split slots (132 SMs).
      {"qwen0.5b", {14, 2, 64, true, {1, 15, 16, 17, 300}, {1, 1, 1, 1, 1}, 132, false}},
      {"qwen7b", {28, 4, 128, true, {1, 33, 64, 65, 129, 400}, {1, 1, 1, 1, 1, 1}, 132, false}},
      {"qwen14/32b", {40, 8, 128, true, {2, 200, 31}, {1, 1, 1}, 132, false}},
      {"qwen72b", {64, 8, 128, true, {130, 1}, {1, 1}, 132, false}},
      {"llama8b", {32, 8, 128, true, {257, 48, 1}, {1, 1, 1}, 132, false}},
      // GQA groups 1, 2, 4; one group above kMaxGroup (two head slices per KV head).
      {"group1", {8, 8, 64, true, {17, 33}, {5, 1}, 132, false}},
      {"group2", {8, 4, 128, true, {90, 17, 1}, {1, 1, 1}, 1, false}},
      {"group4", {8, 2, 64, true, {1, 5, 300, 20}, {1, 3, 1, 2}, 132, false}},
      {"group16", {16, 1, 128, true, {530, 9, 40}, {7, 9, 1}, 132, true}},
      {"group16", {16, 1, 128, true, {530, 9, 40}, {7, 9, 1}, 132, false}},
      // Every boundary length at once, one split (1 SM) and many (132 SMs).
      {"edges", {4, 2, 64, true, edges, ones, 1, false}},
      {"edges", {4, 2, 128, true, edges, ones, 132, false}},
      // Other head sizes (lanes per row 12 of 16, 32) and F32 caches (two 16-byte loads per lane).
      {"d96", {6, 2, 96, true, {270, 3}, {4, 2}, 2, false}},
      {"d256", {2, 1, 256, false, {300, 12}, {1, 12}, 132, true}},
      {"f32", {8, 2, 128, false, {1, 5, 600, 20}, {1, 3, 2, 2}, 132, true}},
      {"f32", {4, 4, 64, false, {700, 1}, {1, 1}, 1, false}},
      {"f32", {4, 2, 64, false, {1025, 8, 7}, {1, 8, 7}, 3, true}},
      {"f32", {1, 1, 128, false, {1800, 1}, {2, 1}, 1, true}},
      // Short query tails (speculative decoding) crossing split boundaries.
      {"tails", {24, 2, 128, true, {257, 256, 512, 513}, {1, 1, 2, 3}, 132, false}},
      // A large batch: the grid alone fills the GPU (16 SMs here), one split slot and no workspace.
      {"batch64", {28, 4, 128, true, many_lens, many_q, 16, false}},
      // Long contexts: 32k on one head (the emulator's cost grows with heads × positions), 8k at 7B's group.
      {"long32k", {1, 1, 64, true, {32768}, {1}, 132, false}},
      {"long8k", {7, 1, 128, true, {8192, 3}, {1, 1}, 132, false}},
      // Decode graphs: the launch bound far above the sequences (split slots past every row's splits), padding
      // rows (length 1 at block 0, as DecodeGraphs pads), rows of length 0.
      {"graph", {14, 2, 64, true, {300, 1, 17, 1}, {1, 1, 1, 1}, 132, false, 4096}},
      {"graph", {28, 4, 128, true, {1000, 1}, {1, 1}, 132, false, 16384}},
      {"graph", {8, 2, 128, true, {70, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1}, 1, false, 1024}},
      {"graph", {28, 4, 128, true, {129, 1, 1}, {1, 1, 1}, 132, false, 32768, 5}},
      {"empty", {8, 2, 64, false, {40}, {1}, 2, false, 0, 2}},
  };
  for (size_t i = 0; i < cases.size(); ++i)
    if (which < 0 || which == int(i)) run(cases[i], 100 + i);
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
