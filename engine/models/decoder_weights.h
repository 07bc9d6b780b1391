#pragma once
// The weights of a DecoderLM on a backend, in one buffer. Loading checks every tensor the spec needs (present,
// BF16 or F32, the shape the config implies) before it allocates anything, so a bad checkpoint fails with the
// tensor's name and nothing is left half-loaded.
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/model/checkpoint.h"
#include "engine/models/decoder_spec.h"

namespace bm::engine {

struct LinearWeights {
  Tensor weight;  // [out_features, in_features]
  Tensor bias;    // [1, out_features]; bias.buffer == nullptr when the layer has none

  const Tensor* bias_or_null() const { return bias.buffer != nullptr ? &bias : nullptr; }
};

struct LayerWeights {
  Tensor input_norm;
  LinearWeights q, k, v, o;
  Tensor post_attention_norm;
  LinearWeights gate, up, down;
};

struct DecoderWeights {
  std::unique_ptr<Buffer> storage;
  Tensor embed_tokens;  // [vocab, hidden]
  Tensor final_norm;
  Tensor lm_head;  // the embedding table itself when tied
  std::vector<LayerWeights> layers;
  int64_t num_bytes = 0;
};

absl::StatusOr<std::unique_ptr<DecoderWeights>> load_decoder_weights(const Checkpoint& checkpoint,
                                                                     const DecoderSpec& spec, Backend& backend);

}  // namespace bm::engine
