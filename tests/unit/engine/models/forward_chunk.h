#pragma once
// A sequence's part of a forward step over blocks 0, 1, 2, ... of the cache (model tests that drive a CausalLM
// directly, one sequence at a time), wanting logits.
#include <cstdint>

#include "engine/models/causal_lm.h"

namespace bm::engine::testing {

inline SequenceChunk forward_chunk(int32_t cached, int32_t fresh, const SequenceMedia* media = nullptr) {
  SequenceChunk c;
  c.num_cached_tokens = cached;
  c.num_new_tokens = fresh;
  for (int32_t b = 0; b < (cached + fresh + kBlockSize - 1) / kBlockSize; ++b) c.block_table.push_back(b);
  c.wants_logits = true;
  c.media = media;
  return c;
}

}  // namespace bm::engine::testing
