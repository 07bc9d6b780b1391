#pragma once
// Sequences for runtime unit tests, without an engine.
#include <memory>
#include <numeric>
#include <vector>

#include "engine/runtime/sequence.h"

namespace bm::engine::testing {

inline std::unique_ptr<Sequence> make_sequence(int64_t id, std::vector<int32_t> prompt, SamplingParams params = {},
                                               uint64_t seed = 1) {
  auto request = std::make_shared<Request>();
  request->id = id;
  request->params = params;
  return std::make_unique<Sequence>(id, 0, request, std::move(prompt), seed);
}

inline std::vector<int32_t> iota_tokens(int32_t count, int32_t first = 0) {
  std::vector<int32_t> v(count);
  std::iota(v.begin(), v.end(), first);
  return v;
}

}  // namespace bm::engine::testing
