#pragma once
// Which weight-only quantization a checkpoint uses, decided from its config.json `quantization_config` before any
// tensor is read. Supported, as the hubs publish them (docs/quantization.md):
// - GPTQ, 4 or 8 bits, symmetric or not, desc_act with g_idx or not, serialized as AutoGPTQ's v1 (zero-points
//   stored minus one) or gptqmodel's v2 (stored as they are);
// - AWQ, 4 bits, GEMM packing, with zero-points.
// Everything else (2/3 bits, marlin-serialized GPTQ, AWQ's GEMV/marlin/exllama packings, other quant methods) is
// refused with a sentence naming what and why.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/model_config.h"

namespace bm::engine {

enum class QuantFormat { kGptq, kAwq };

struct QuantScheme {
  QuantFormat format = QuantFormat::kGptq;
  int32_t bits = 4;
  int32_t group_size = 128;  // -1 in a GPTQ config (one group over the whole input) is stored as 0 here
  bool desc_act = false;     // GPTQ: g_idx orders the groups by activation; it must be present
  bool sym = true;           // GPTQ: every zero-point is 2^(bits-1)
  int32_t zero_offset = 0;   // added to a stored zero-point: 1 for GPTQ v1, 0 for GPTQ v2 and AWQ
  std::vector<std::string> modules_to_not_convert;
};

// "gptq-int4", "gptq-int8", "awq-int4": how `chat ps` and the model info name it.
std::string quant_scheme_name(const QuantScheme& scheme);

// Validates the config's quantization_config; the error names the field and why it cannot run.
absl::StatusOr<QuantScheme> make_quant_scheme(const QuantizationConfig& config);

// Whether the linear layer `module` (e.g. "model.layers.0.mlp.down_proj") is stored quantized: every layer is,
// except those modules_to_not_convert names (a listed name matches any module whose name contains it, as
// transformers' replace_with_awq_linear / GPTQ conversion match them).
bool is_quantized_module(const QuantScheme& scheme, std::string_view module);

}  // namespace bm::engine
