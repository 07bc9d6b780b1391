// Emulated engine/backend/cuda/candidates.cu (launch_top_candidates: radix select, ties to the lower id, listed ids,
// log-sum-exp) against cpu::top_candidates on shaped rows (ties, -inf, all -inf, +-0, aligned and unaligned rows),
// without and with structured output's allowed-token masks (rows with no mask, a mask allowing one token, masks
// forbidding listed ids, masks shared by rows, vocabularies that are not a multiple of 32), each with one block per
// row and with rows split across blocks (2, 7, 13 or 64 slices, slice lengths that do not divide the vocabulary,
// slices holding fewer than k ids, or none unlisted) and the merge kernel. Ids and values must be identical; the
// log-sum-exp within 1e-5 relative; the kernel must leave every unlisted logit as it was. Exits 1 on any mismatch.
#include "engine/backend/cpu/candidates.h"
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>
#include "engine/backend/cuda/kernels.h"
using namespace bm::engine;
static uint32_t bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}
int failures = 0;
void shape_row(float* row, int64_t vocab, int64_t r, std::mt19937& rng) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  switch (r % 8) {
    case 1:
      for (int64_t i = 0; i < vocab; ++i) row[i] = std::round(row[i] * 2.0f) / 2.0f;
      break;
    case 2:
      for (int64_t i = 0; i < vocab; i += 1 + pick(rng) % 10) row[i] = -kInf;
      break;
    case 3:
      for (int64_t i = 0; i < vocab; ++i) row[i] = std::round(row[i] / 3.0f);
      break;
    case 4: {
      std::vector<float> keep(30);
      std::vector<int64_t> where(30);
      for (size_t j = 0; j < 30; ++j) {
        where[j] = pick(rng);
        keep[j] = row[where[j]];
      }
      std::fill(row, row + vocab, -kInf);
      for (size_t j = 0; j < 30; ++j) row[where[j]] = keep[j];
      break;
    }
    case 5:
      std::fill(row, row + vocab, -kInf);
      break;
    case 6:
      for (int64_t i = 0; i < vocab; ++i) row[i] = i % 3 == 0 ? -0.0f : 0.0f;
      break;
    default:
      break;
  }
}
// Masks for structured output, by row: none (r % 6 == 0), exactly one allowed token (1: a listed one on odd
// rows, so that the row has no candidate at all), a random half (2), a random 1/20 (3: fewer than k for small
// vocabularies), all but the listed ids and every third (4), and row 5 sharing row 2's mask. Bits past the
// vocabulary are set to check that they are ignored.
void make_masks(int64_t rows, int64_t vocab, const std::vector<int32_t>& starts, const std::vector<int32_t>& ids,
                std::mt19937& rng, std::vector<int32_t>& mask_rows, std::vector<uint32_t>& masks) {
  const int64_t words = (vocab + 31) / 32;
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  mask_rows.assign(rows, -1);
  masks.clear();
  int32_t last_half = -1;
  for (int64_t r = 0; r < rows; ++r) {
    const int kind = r % 6;
    if (kind == 0) continue;
    if (kind == 5 && last_half >= 0) {
      mask_rows[r] = last_half;
      continue;
    }
    const int32_t m = static_cast<int32_t>(masks.size() / words);
    masks.resize(masks.size() + words, 0);
    uint32_t* w = masks.data() + m * words;
    auto allow = [&](int64_t id) { w[id / 32] |= uint32_t{1} << (id % 32); };
    auto forbid = [&](int64_t id) { w[id / 32] &= ~(uint32_t{1} << (id % 32)); };
    const bool has_listed = starts[r + 1] > starts[r];
    if (kind == 1) {
      allow(r % 2 == 1 && has_listed ? ids[starts[r]] : pick(rng));
    } else if (kind == 2 || kind == 5) {
      for (int64_t id = 0; id < vocab; ++id)
        if (rng() % 2) allow(id);
      last_half = m;
    } else if (kind == 3) {
      for (int64_t id = 0; id < vocab; ++id)
        if (rng() % 20 == 0) allow(id);
    } else {
      for (int64_t id = 0; id < vocab; ++id)
        if (id % 3 != 0) allow(id);
      for (int32_t j = starts[r]; j < starts[r + 1]; ++j) forbid(ids[j]);
    }
    for (int64_t id = vocab; id < words * 32; ++id) allow(id);
    mask_rows[r] = m;
  }
  if (masks.empty()) masks.assign(words, ~0u);  // one mask, used by no row
}
void run(int64_t rows, int64_t vocab, std::vector<int64_t> counts, uint32_t seed, int shift_rows = 0,
         bool masked = false) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0, 3);
  // one extra float in front so that odd offsets make unaligned rows
  std::vector<float> storage(rows * vocab + 4);
  float* logits = storage.data() + shift_rows;
  for (int64_t i = 0; i < rows * vocab; ++i) logits[i] = nd(rng);
  std::vector<int32_t> starts = {0}, ids;
  for (int64_t r = 0; r < rows; ++r) {
    float* row = logits + r * vocab;
    shape_row(row, vocab, r, rng);
    int64_t count = std::min(counts[r % counts.size()], vocab);
    std::vector<char> seen(vocab, 0);
    std::vector<int32_t> rid;
    if (count > 0 && r % 8 == 7) {
      std::vector<int32_t> o(vocab);
      std::iota(o.begin(), o.end(), 0);
      std::stable_sort(o.begin(), o.end(), [&](int a, int b) { return row[a] > row[b]; });
      for (int j = 0; j < std::min<int64_t>(30, count); ++j) {
        rid.push_back(o[j]);
        seen[o[j]] = 1;
      }
    }
    if (count > 0 && r % 8 == 6)
      for (int j = 0; j < std::min<int64_t>(10, count); ++j)
        if (!seen[j]) {
          rid.push_back(j);
          seen[j] = 1;
        }
    std::uniform_int_distribution<int32_t> p(0, vocab - 1);
    while ((int64_t)rid.size() < count) {
      int id = p(rng);
      if (!seen[id]) {
        seen[id] = 1;
        rid.push_back(id);
      }
    }
    std::shuffle(rid.begin(), rid.end(), rng);
    ids.insert(ids.end(), rid.begin(), rid.end());
    starts.push_back(ids.size());
  }
  const int64_t L = ids.size();
  std::vector<int32_t> mask_rows;
  std::vector<uint32_t> masks;
  if (masked) make_masks(rows, vocab, starts, ids, rng, mask_rows, masks);
  const int32_t* mr = masked ? mask_rows.data() : nullptr;
  const uint32_t* mw = masked ? masks.data() : nullptr;
  const int64_t num_masks = masked ? static_cast<int64_t>(masks.size()) / ((vocab + 31) / 32) : 0;
  cpu::ThreadPool pool(1);
  // Split runs cost rows × slices emulated blocks: many rows take 2 slices (production splits only up to 66 rows,
  // and the slice counts that leave slices shorter than k are covered by the few-row cases).
  for (int k : {1, 20, 64})
    for (int slices : {1, rows > 8 ? 2 : k == 1 ? 2 : k == 20 ? 7 : rows <= 3 ? 64 : 13}) {
      const int64_t workspace_bytes = cuda::top_candidates_workspace_bytes(rows, vocab, slices);
      std::vector<char> workspace(static_cast<size_t>(workspace_bytes));
      std::vector<float> hl(L), gl(L), hv(rows * k), gv(rows * k), hs(rows), gs(rows), ht(rows), gt(rows), inv_t(rows);
      for (int64_t r = 0; r < rows; ++r) inv_t[r] = r % 3 == 0 ? 1.0f : (r % 3 == 1 ? 1.0f / 0.6f : 0.5f);
      std::vector<int32_t> hi(rows * k), gi(rows * k);
      cpu::top_candidates(pool, logits, rows, vocab, starts.data(), L ? ids.data() : nullptr, k,
                          L ? hl.data() : nullptr, hi.data(), hv.data(), hs.data(), inv_t.data(), ht.data(), mr, mw);
      std::vector<float> copy(storage);
      float* gpu_logits = copy.data() + shift_rows;
      cuda::launch_top_candidates(gpu_logits, rows, vocab, starts.data(), L ? ids.data() : nullptr, L, k,
                                  L ? gl.data() : nullptr, gi.data(), gv.data(), gs.data(), inv_t.data(), gt.data(), mr,
                                  mw, num_masks, slices, workspace.data(), workspace_bytes, nullptr);
      int bad = 0;
      // Only the listed positions may be overwritten: whole rows fetched later must be the raw ones.
      std::vector<char> listed_at(rows * vocab, 0);
      for (int64_t r = 0; r < rows; ++r)
        for (int32_t j = starts[r]; j < starts[r + 1]; ++j) listed_at[r * vocab + ids[j]] = 1;
      for (int64_t i = 0; i < rows * vocab; ++i)
        if (!listed_at[i] && bits(gpu_logits[i]) != bits(logits[i])) {
          if (++bad <= 3) std::printf("  unlisted logit %ld overwritten\n", (long)i);
        }
      for (int64_t i = 0; i < rows * k; ++i)
        if (hi[i] != gi[i] || bits(hv[i]) != bits(gv[i])) {
          if (++bad <= 5)
            std::printf("  MISMATCH vocab %ld k %d row %ld slot %ld: emu %d %g cpu %d %g\n", (long)vocab, k,
                        (long)(i / k), (long)(i % k), gi[i], gv[i], hi[i], hv[i]);
        }
      for (int64_t j = 0; j < L; ++j)
        if (bits(hl[j]) != bits(gl[j])) {
          ++bad;
          if (bad < 8) std::printf("  listed %ld differs\n", (long)j);
        }
      double worst = 0;
      for (int64_t r = 0; r < rows; ++r) {
        if (!std::isfinite(hs[r])) {
          if (hs[r] != gs[r]) {
            ++bad;
            std::printf("  lse row %ld %g vs %g\n", (long)r, gs[r], hs[r]);
          }
          continue;
        }
        worst = std::max(worst, std::abs((double)gs[r] - hs[r]) / std::max(1.0, std::abs((double)hs[r])));
      }
      // The tempered log-sum-exp of the unlisted ids (top-p's mass beyond the candidates).
      for (int64_t r = 0; r < rows; ++r) {
        if (!std::isfinite(ht[r])) {
          if (ht[r] != gt[r]) {
            ++bad;
            std::printf("  tempered lse row %ld %g vs %g\n", (long)r, gt[r], ht[r]);
          }
          continue;
        }
        worst = std::max(worst, std::abs((double)gt[r] - ht[r]) / std::max(1.0, std::abs((double)ht[r])));
      }
      if (worst > 1e-5) ++bad;
      // Without a log-sum-exp pointer the kernel must select exactly the same candidates.
      std::vector<float> quiet_copy(storage), ql(L), qv(rows * k);
      std::vector<int32_t> qi(rows * k);
      cuda::launch_top_candidates(quiet_copy.data() + shift_rows, rows, vocab, starts.data(), L ? ids.data() : nullptr,
                                  L, k, L ? ql.data() : nullptr, qi.data(), qv.data(), nullptr, nullptr, nullptr, mr,
                                  mw, num_masks, slices, workspace.data(), workspace_bytes, nullptr);
      for (int64_t i = 0; i < rows * k; ++i)
        if (qi[i] != gi[i] || bits(qv[i]) != bits(gv[i])) {
          if (++bad <= 5) std::printf("  without log-sum-exp, slot %ld differs\n", (long)i);
        }
      std::printf("rows %ld vocab %ld k %d slices %d shift %d%s: %s (lse rel err %.2e)\n", (long)rows, (long)vocab, k,
                  slices, shift_rows, masked ? " masked" : "", bad ? "FAIL" : "ok", worst);
      failures += bad;
    }
}
// The split choice: one block per row once the rows fill the SMs, at most 64 slices, none shorter than 2048 ids.
void check_slices() {
  struct Case {
    int64_t rows, vocab;
    int32_t num_sms, want;
  } cases[] = {{1, 151936, 132, 64}, {2, 151936, 132, 64},  {4, 151936, 132, 33}, {66, 151936, 132, 2},
               {67, 151936, 132, 1}, {256, 151936, 132, 1}, {1, 151936, 0, 1},    {1, 4096, 132, 2},
               {1, 4095, 132, 1},    {1, 32000, 108, 15},   {0, 151936, 132, 1}};
  for (const Case& c : cases) {
    const int32_t got = cuda::top_candidates_slices(c.rows, c.vocab, c.num_sms);
    if (got != c.want) {
      ++failures;
      std::printf("  slices for rows %ld vocab %ld sms %d: %d, want %d\n", (long)c.rows, (long)c.vocab, c.num_sms, got,
                  c.want);
    }
  }
  if (cuda::top_candidates_workspace_bytes(3, 151936, 1) != 0) ++failures;
  if (cuda::top_candidates_workspace_bytes(3, 4, 64) != 0) ++failures;  // a 4-id row is one slice
  std::printf("slice choice: %s\n", failures ? "FAIL" : "ok");
}
int main() {
  check_slices();
  // Batch 1 at a real vocabulary (Qwen2's 151936: 64 slices of 2376 ids, the last one shorter); 3 unaligned rows
  // at a prime vocabulary (64 slices of 313 ids, the last one shorter). Sizes keep the three thread orders within
  // CI's time (the emulator runs every thread in turn).
  run(1, 151936, {40}, 21);
  run(3, 20011, {0, 2000, 7}, 22, 1);
  run(24, 1000, {0, 5, 900}, 1);
  run(24, 1003, {0, 7, 300}, 2);
  run(8, 1003, {0, 7, 300}, 3, 1);
  run(5, 70, {10, 10, 10, 70, 10}, 4);
  run(5, 70, {0, 69, 1, 3, 10}, 5, 3);
  run(3, 7, {0, 2, 7}, 6);
  run(16, 8000, {0, 12, 3000}, 7);
  // Structured output's masks: vocabularies that are a multiple of 32 and not, aligned and unaligned rows, listed
  // ids (some of which the masks forbid) and none.
  run(24, 1000, {0, 5, 900}, 11, 0, true);
  run(24, 1003, {0, 7, 300}, 12, 0, true);
  run(12, 1003, {0, 7, 300}, 13, 1, true);
  run(12, 70, {10, 0, 3, 69}, 14, 3, true);
  run(6, 7, {0, 2, 7}, 15, 0, true);
  run(12, 4096, {0, 12, 100}, 16, 0, true);
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
