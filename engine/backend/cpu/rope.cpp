// Rotary position embedding, rotate-half pairing (element i with i + head_dim/2), as Hugging Face's
// apply_rotary_pos_emb: angle = float(position) * inv_freq[i] in float32, cos/sin of that angle.
#include <cmath>
#include <vector>

#include "engine/backend/cpu/kernels.h"

namespace bm::engine::cpu {
namespace {

// Every head of one token rotated by the same cos/sin pairs.
void rotate_token(float* token, int64_t num_heads, int64_t head_dim, const float* cos, const float* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < num_heads; ++h) {
    float* head = token + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = head[i];
      const float x2 = head[i + half];
      head[i] = x1 * cos[i] - x2 * sin[i];
      head[i + half] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

}  // namespace

void rope(ThreadPool& pool, float* x, int64_t n, int64_t num_heads, int64_t head_dim, const int32_t* positions,
          const float* inv_freq) {
  const int64_t half = head_dim / 2;
  pool.parallel_for(n, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> cos_table(static_cast<size_t>(half));
    std::vector<float> sin_table(static_cast<size_t>(half));
    for (int64_t t = begin; t < end; ++t) {
      const float position = static_cast<float>(positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = position * inv_freq[i];
        cos_table[i] = std::cos(angle);
        sin_table[i] = std::sin(angle);
      }
      rotate_token(x + t * num_heads * head_dim, num_heads, head_dim, cos_table.data(), sin_table.data());
    }
  });
}

void rope_table(ThreadPool& pool, float* x, int64_t n, int64_t num_heads, int64_t head_dim, const float* cos,
                const float* sin) {
  const int64_t half = head_dim / 2;
  pool.parallel_for(n, 4, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      rotate_token(x + t * num_heads * head_dim, num_heads, head_dim, cos + t * half, sin + t * half);
    }
  });
}

}  // namespace bm::engine::cpu
