// Rotary position embedding, rotate-half pairing (element i with i + head_dim/2), as Hugging Face's
// apply_rotary_pos_emb: angle = float(position) * inv_freq[i] in float32, cos/sin of that angle.
#include <algorithm>
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

// cos/sin of position × inv_freq[i], i < half: the angles of rope().
void token_angles(int32_t position, const float* inv_freq, int64_t half, float* cos, float* sin) {
  const float p = static_cast<float>(position);
  for (int64_t i = 0; i < half; ++i) {
    const float angle = p * inv_freq[i];
    cos[i] = std::cos(angle);
    sin[i] = std::sin(angle);
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
      token_angles(positions[t], inv_freq, half, cos_table.data(), sin_table.data());
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

void rope_store_kv(ThreadPool& pool, const float* qkv, int64_t n, int64_t num_heads, int64_t head_dim,
                   const RotaryView& angles, const int32_t* slot_mapping, const KvCacheView& cache, float* q_out) {
  const int64_t half = head_dim / 2;
  const int64_t q_size = num_heads * head_dim, kv_size = cache.row_size, num_kv_heads = kv_size / head_dim;
  pool.parallel_for(n, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> cos_row(static_cast<size_t>(half)), sin_row(static_cast<size_t>(half));
    std::vector<float> k(static_cast<size_t>(kv_size));
    for (int64_t t = begin; t < end; ++t) {
      const float* cos = angles.cos != nullptr ? angles.cos + t * half : cos_row.data();
      const float* sin = angles.cos != nullptr ? angles.sin + t * half : sin_row.data();
      if (angles.cos == nullptr) token_angles(angles.positions[t], angles.inv_freq, half, cos_row.data(), sin_row.data());
      const float* row = qkv + t * (q_size + 2 * kv_size);
      float* q = q_out + t * q_size;
      std::copy(row, row + q_size, q);
      rotate_token(q, num_heads, head_dim, cos, sin);
      const int64_t slot = slot_mapping[t];
      if (slot < 0) continue;  // a padding row of a recorded step
      std::copy(row + q_size, row + q_size + kv_size, k.begin());
      rotate_token(k.data(), num_kv_heads, head_dim, cos, sin);
      store_cache_row(cache, cache.k, slot, k.data());
      store_cache_row(cache, cache.v, slot, row + q_size + kv_size);
    }
  });
}

}  // namespace bm::engine::cpu
