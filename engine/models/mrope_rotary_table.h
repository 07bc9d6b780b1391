#pragma once
// The rotary angles of Qwen2.5-VL's M-RoPE as a per-token cos/sin table for the backend's rope_table op. Each of
// a head's head_dim / 2 frequencies turns with one of the three position rows (temporal, height, width from
// mrope_positions): mrope_section splits the frequencies into consecutive chunks and chunk c uses row c % 3, as
// transformers' Qwen2_5_VLRotaryEmbedding (recomposition_frequencies; apply_multimodal_rotary_pos_emb in 4.x)
// does before its rotate-half rotation. The angle is float32(position) · inv_freq[i] in float32, as there and as
// the rope op computes it, so where the three rows are equal (text-only tokens) the table is the 1-D RoPE's,
// bit for bit.
#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace bm::engine {

struct RotaryTable {
  int64_t num_tokens = 0;
  int64_t half = 0;        // head_dim / 2 = inv_freq.size()
  std::vector<float> cos;  // [num_tokens, half], row-major
  std::vector<float> sin;
};

// rows: the three position rows, each num_tokens long. mrope_section must add up to inv_freq.size() and the rows
// must have equal lengths (the caller's spec and mrope_positions guarantee both).
RotaryTable mrope_rotary_table(std::span<const float> inv_freq, std::span<const int32_t> mrope_section,
                               const std::array<std::span<const int64_t>, 3>& rows);

}  // namespace bm::engine
