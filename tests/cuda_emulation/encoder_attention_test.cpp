// Emulated engine/backend/cuda/encoder_attention.cu (segment_attention: bidirectional attention within packed
// segments, flash-style online softmax over 32-key tiles, 64-row query tiles that never straddle a segment) against
// cpu::segment_attention (whole score rows, one max-shifted softmax). Both are F32; they differ by the order of the
// softmax sums only, so the tolerance is 2e-5 relative to max(1, |value|). Also checks that the tile list covers
// every row (out starts as NaN) and that a malformed offset list (the caller's bug) is clamped, not read past.
// Optional argument: run only case N.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>
#include "engine/backend/cpu/kernels.h"
#include "engine/backend/cuda/kernels.h"
using namespace bm::engine;
int failures = 0;

struct Case {
  const char* what;
  std::vector<int32_t> lengths;  // segment lengths, in order
  int32_t heads, kv_heads, head_dim;
  float value_scale;  // spread of q and k: larger makes the softmax peaked and the running max move
};

void run_case(int index, const Case& c, std::mt19937& rng) {
  std::vector<int32_t> starts = {0};
  for (int32_t len : c.lengths) starts.push_back(starts.back() + len);
  const int64_t n = starts.back();
  const int32_t segments = static_cast<int32_t>(c.lengths.size());
  const int64_t q_cols = int64_t{c.heads} * c.head_dim, kv_cols = int64_t{c.kv_heads} * c.head_dim;
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> q(n * q_cols), k(n * kv_cols), v(n * kv_cols);
  for (auto& x : q) x = nd(rng) * c.value_scale;
  for (auto& x : k) x = nd(rng) * c.value_scale;
  for (auto& x : v) x = nd(rng) * 2;
  // Keys growing along the segment, so that later tiles hold larger scores (the running max moves, alpha < 1).
  if (c.value_scale > 1)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < kv_cols; ++i) k[r * kv_cols + i] += 0.02f * static_cast<float>(r % 97);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  cpu::ThreadPool pool(1);
  std::vector<float> ref(n * q_cols, NAN), out(n * q_cols, NAN);
  cpu::segment_attention(pool, q.data(), k.data(), v.data(), n, starts.data(), segments, c.heads, c.kv_heads,
                         c.head_dim, scale, ref.data());
  std::vector<int32_t> tiles(cuda::segment_attention_workspace_ints(n, segments), -7);
  const cuda::AttentionDims dims{static_cast<int32_t>(n), c.heads, c.kv_heads, c.head_dim, scale};
  cuda::launch_segment_attention(q.data(), k.data(), v.data(), n, starts.data(), segments, dims,
                                 {tiles.data(), static_cast<int64_t>(tiles.size())}, out.data(), nullptr);
  double worst = 0, worst_scaled = 0;  // max |emu - cpu|, and the same over max(1, |cpu|) (the tolerance's measure)
  int bad = 0;
  int64_t first_bad = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    const double e = std::fabs(double(out[i]) - ref[i]);
    const double scaled = e / std::max(1.0, std::fabs(double(ref[i])));
    if (!(scaled <= 2e-5)) {
      if (!bad++) first_bad = static_cast<int64_t>(i);
    }
    worst = std::isnan(e) ? INFINITY : std::max(worst, e);
    worst_scaled = std::isnan(e) ? INFINITY : std::max(worst_scaled, scaled);
  }
  std::string lengths;
  for (int32_t len : c.lengths) lengths += (lengths.empty() ? "" : ",") + std::to_string(len);
  std::printf("case %2d %-34s heads %2d/%d head_dim %3d segments [%s]: %s max abs err %.2e (%.2e of max(1, |cpu|))",
              index, c.what, c.heads, c.kv_heads, c.head_dim, lengths.c_str(), bad ? "FAIL" : "ok", worst,
              worst_scaled);
  if (bad) {
    std::printf("  [%d bad, first row %lld col %lld: emu %g cpu %g]", bad, (long long)(first_bad / q_cols),
                (long long)(first_bad % q_cols), out[first_bad], ref[first_bad]);
  }
  std::printf("\n");
  failures += bad != 0;
}

// A list that does not end at n or goes backwards: the kernels must stay inside q/k/v/out (the clamping in the
// schedule kernel); rows no segment covers keep their old values. Checked with a guard region after each buffer.
void malformed_offsets(std::mt19937& rng) {
  const int64_t n = 40;
  const int32_t heads = 2, head_dim = 8;
  const int64_t cols = heads * head_dim, guard = 4096;
  std::normal_distribution<float> nd(0, 1);
  std::vector<float> q((n + guard) * cols, 1e30f), k = q, v = q, out((n + guard) * cols, -3.0f);
  for (int64_t i = 0; i < n * cols; ++i) q[i] = nd(rng), k[i] = nd(rng), v[i] = nd(rng);
  const std::vector<int32_t> starts = {0, 30, 10, 500, -4};  // backwards, past n, negative
  std::vector<int32_t> tiles(cuda::segment_attention_workspace_ints(n, 4));
  const cuda::AttentionDims dims{static_cast<int32_t>(n), heads, heads, head_dim, 0.3f};
  cuda::launch_segment_attention(q.data(), k.data(), v.data(), n, starts.data(), 4, dims,
                                 {tiles.data(), static_cast<int64_t>(tiles.size())}, out.data(), nullptr);
  bool ok = true;
  for (int64_t i = n * cols; i < (n + guard) * cols; ++i) ok = ok && out[i] == -3.0f;  // nothing past n written
  for (int64_t i = 0; i < n * cols; ++i) ok = ok && std::isfinite(out[i]);             // nothing read past n
  std::printf("%-90s %s\n", "malformed offsets [0, 30, 10, 500, -4] clamped to [0, n]: no write past n, all finite",
              ok ? "ok" : "FAIL");
  failures += !ok;
}

int main(int argc, char** argv) {
  const std::vector<Case> cases = {
      {"uneven, GQA 4/2, head_dim 32", {1, 70, 0, 5, 130, 64, 3}, 4, 2, 32, 1.0f},
      {"vision heads (80), windows + lone rows", {64, 64, 17, 1, 1, 40}, 2, 2, 80, 1.0f},
      {"one segment over 3 query tiles, peaked", {150}, 2, 1, 80, 4.0f},
      {"head_dim 100 (not a multiple of 8), GQA 3/1", {33, 2, 96}, 3, 1, 100, 1.0f},
      {"head_dim 128 (the largest)", {65, 1, 9}, 1, 1, 128, 2.0f},
      {"head_dim 6, many tiny segments", {2, 1, 3, 1, 1, 0, 4, 2, 1, 1, 5}, 4, 4, 6, 3.0f},
      {"head_dim 64, 5 heads / 5", {31, 32, 33, 63, 65}, 5, 5, 64, 1.0f},
      {"a 700-row frame (11 query x 22 key tiles)", {3, 700}, 1, 1, 80, 2.0f},
  };
  std::mt19937 rng(11);
  const int only = argc > 1 ? std::atoi(argv[1]) : -1;
  for (size_t i = 0; i < cases.size(); ++i) {
    if (only >= 0 && static_cast<int>(i) != only) continue;
    run_case(static_cast<int>(i), cases[i], rng);
  }
  if (only < 0) malformed_offsets(rng);
  std::printf("%s\n", failures ? "FAILURES" : "ALL OK");
  return failures != 0;
}
