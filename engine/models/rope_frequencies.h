#pragma once
// The inverse frequencies of rotary position embeddings, one per pair of a head's dimensions. The RoPE
// variants of the models we run differ only here; the backend's rope op applies whichever table it is given.
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"

namespace bm::engine {

// "default" (and "mrope", Qwen2.5-VL's, whose frequencies are the default ones): theta^(-2i/head_dim). "llama3":
// Llama 3.1's wavelength-dependent scaling of those. Computed in float32 in the same order of operations as Hugging
// Face transformers, so both start from the same table. Any other rope type is an Unimplemented error naming it.
absl::StatusOr<std::vector<float>> rope_inverse_frequencies(const RopeConfig& rope, int32_t head_dim,
                                                            int32_t max_position_embeddings);

}  // namespace bm::engine
