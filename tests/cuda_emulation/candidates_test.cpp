// Emulated engine/backend/cuda/candidates.cu (launch_top_candidates: radix select, ties to the lower id, listed ids,
// log-sum-exp) against cpu::top_candidates on shaped rows (ties, -inf, all -inf, +-0, aligned and unaligned rows).
// Ids and values must be identical; the log-sum-exp within 1e-5 relative. Exits 1 on any mismatch.
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
void run(int64_t rows, int64_t vocab, std::vector<int64_t> counts, uint32_t seed, int shift_rows = 0) {
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
  cpu::ThreadPool pool(1);
  for (int k : {1, 20, 64}) {
    std::vector<float> hl(L), gl(L), hv(rows * k), gv(rows * k), hs(rows), gs(rows), ht(rows), gt(rows), inv_t(rows);
    for (int64_t r = 0; r < rows; ++r) inv_t[r] = r % 3 == 0 ? 1.0f : (r % 3 == 1 ? 1.0f / 0.6f : 0.5f);
    std::vector<int32_t> hi(rows * k), gi(rows * k);
    cpu::top_candidates(pool, logits, rows, vocab, starts.data(), L ? ids.data() : nullptr, k, L ? hl.data() : nullptr,
                        hi.data(), hv.data(), hs.data(), inv_t.data(), ht.data());
    std::vector<float> copy(storage);
    float* gpu_logits = copy.data() + shift_rows;
    cuda::launch_top_candidates(gpu_logits, rows, vocab, starts.data(), L ? ids.data() : nullptr, L, k,
                                L ? gl.data() : nullptr, gi.data(), gv.data(), gs.data(), inv_t.data(), gt.data(),
                                nullptr);
    int bad = 0;
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
    cuda::launch_top_candidates(quiet_copy.data() + shift_rows, rows, vocab, starts.data(), L ? ids.data() : nullptr, L,
                                k, L ? ql.data() : nullptr, qi.data(), qv.data(), nullptr, nullptr, nullptr, nullptr);
    for (int64_t i = 0; i < rows * k; ++i)
      if (qi[i] != gi[i] || bits(qv[i]) != bits(gv[i])) {
        if (++bad <= 5) std::printf("  without log-sum-exp, slot %ld differs\n", (long)i);
      }
    std::printf("rows %ld vocab %ld k %d shift %d: %s (lse rel err %.2e)\n", (long)rows, (long)vocab, k, shift_rows,
                bad ? "FAIL" : "ok", worst);
    failures += bad;
  }
}
int main() {
  run(24, 1000, {0, 5, 900}, 1);
  run(24, 1003, {0, 7, 300}, 2);
  run(8, 1003, {0, 7, 300}, 3, 1);
  run(5, 70, {10, 10, 10, 70, 10}, 4);
  run(5, 70, {0, 69, 1, 3, 10}, 5, 3);
  run(3, 7, {0, 2, 7}, 6);
  run(16, 40000, {0, 12, 3000}, 7);
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
