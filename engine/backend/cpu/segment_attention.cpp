// Attention without a KV cache over packed variable-length segments (the vision tower's windows and images):
// every query row sees exactly the rows of its own segment, in both directions. One task per (query row, head);
// the scores of a row are kept whole (segments are windows of 64 patches or one frame of an image, so a row of
// scores is at most a few thousand floats), then a max-shifted softmax in F32 and the weighted sum of V.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/check.h"
#include "engine/backend/cpu/kernels.h"

namespace bm::engine::cpu {

void segment_attention(ThreadPool& pool, const float* q, const float* k, const float* v, int64_t n,
                       const int32_t* segment_starts, int32_t num_segments, int32_t num_heads, int32_t num_kv_heads,
                       int32_t head_dim, float scale, float* out) {
  // Which segment each row is in, so that tasks can be handed out per row.
  std::vector<int32_t> segment_of(static_cast<size_t>(n));
  for (int32_t s = 0; s < num_segments; ++s) {
    for (int32_t r = segment_starts[s]; r < segment_starts[s + 1]; ++r) segment_of[static_cast<size_t>(r)] = s;
  }
  const int64_t q_row = int64_t{num_heads} * head_dim;
  const int64_t kv_row = int64_t{num_kv_heads} * head_dim;
  const int32_t group = num_heads / num_kv_heads;
  pool.parallel_for(n * num_heads, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t row = task / num_heads;
      const int32_t head = static_cast<int32_t>(task % num_heads);
      const int32_t kv_head = head / group;
      const int32_t first = segment_starts[segment_of[static_cast<size_t>(row)]];
      const int32_t last = segment_starts[segment_of[static_cast<size_t>(row)] + 1];
      const float* qh = q + row * q_row + int64_t{head} * head_dim;
      scores.resize(static_cast<size_t>(last - first));
      float max_score = -std::numeric_limits<float>::infinity();
      for (int32_t j = first; j < last; ++j) {
        const float* kh = k + int64_t{j} * kv_row + int64_t{kv_head} * head_dim;
        float dot = 0.0f;
        for (int32_t d = 0; d < head_dim; ++d) dot += qh[d] * kh[d];
        dot *= scale;
        scores[static_cast<size_t>(j - first)] = dot;
        max_score = std::max(max_score, dot);
      }
      float total = 0.0f;
      for (float& score : scores) {
        score = std::exp(score - max_score);
        total += score;
      }
      float* oh = out + row * q_row + int64_t{head} * head_dim;
      std::fill(oh, oh + head_dim, 0.0f);
      for (int32_t j = first; j < last; ++j) {
        const float weight = scores[static_cast<size_t>(j - first)] / total;
        const float* vh = v + int64_t{j} * kv_row + int64_t{kv_head} * head_dim;
        for (int32_t d = 0; d < head_dim; ++d) oh[d] += weight * vh[d];
      }
    }
  });
}

}  // namespace bm::engine::cpu
