#include "engine/models/quant_scheme.h"

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bm::engine {
namespace {

absl::Status unsupported(std::string_view what) {
  return absl::UnimplementedError(absl::StrCat("quantization_config: ", std::string(what)));
}

absl::StatusOr<QuantScheme> gptq_scheme(const QuantizationConfig& config) {
  QuantScheme scheme;
  scheme.format = QuantFormat::kGptq;
  if (config.bits != 4 && config.bits != 8) {
    return unsupported(absl::StrCat("GPTQ with ", config.bits, " bits is not supported (4 and 8 are)"));
  }
  if (config.is_marlin_format || config.checkpoint_format == "marlin") {
    return unsupported("GPTQ serialized in the Marlin layout is not supported; use the plain GPTQ checkpoint");
  }
  // v1 (AutoGPTQ, optimum, the published Qwen checkpoints) stores each zero-point minus one; v2 stores it as is.
  if (config.checkpoint_format.empty() || config.checkpoint_format == "gptq") {
    scheme.zero_offset = 1;
  } else if (config.checkpoint_format == "gptq_v2") {
    scheme.zero_offset = 0;
  } else {
    return unsupported(absl::StrCat("GPTQ checkpoint_format '", config.checkpoint_format,
                                    "' is not supported (gptq and gptq_v2 are)"));
  }
  if (config.lm_head) return unsupported("a quantized lm_head (lm_head: true) is not supported");
  if (config.has_dynamic) return unsupported("per-module GPTQ overrides ('dynamic') are not supported");
  if (config.group_size == -1) {
    scheme.group_size = 0;
  } else if (config.group_size <= 0) {
    return unsupported(absl::StrCat("group_size ", config.group_size, " is not a positive size (or -1)"));
  } else {
    scheme.group_size = config.group_size;
  }
  scheme.desc_act = config.desc_act;
  scheme.sym = config.sym;
  scheme.bits = config.bits;
  return scheme;
}

absl::StatusOr<QuantScheme> awq_scheme(const QuantizationConfig& config) {
  QuantScheme scheme;
  scheme.format = QuantFormat::kAwq;
  if (config.bits != 4) return unsupported(absl::StrCat("AWQ with ", config.bits, " bits is not supported (4 is)"));
  // The other AWQ versions pack differently (gemv: along the input; marlin and exllama: their kernels' layouts).
  if (!config.version.empty() && config.version != "gemm" && config.version != "GEMM") {
    return unsupported(absl::StrCat("AWQ version '", config.version, "' is not supported (gemm is)"));
  }
  if (!config.zero_point) return unsupported("AWQ without zero-points (zero_point: false) is not supported");
  if (config.group_size <= 0) {
    return unsupported(absl::StrCat("AWQ group_size ", config.group_size, " is not a positive size"));
  }
  scheme.bits = 4;
  scheme.group_size = config.group_size;
  scheme.sym = false;
  scheme.zero_offset = 0;
  return scheme;
}

}  // namespace

std::string quant_scheme_name(const QuantScheme& scheme) {
  return absl::StrCat(scheme.format == QuantFormat::kGptq ? "gptq" : "awq", "-int", scheme.bits);
}

absl::StatusOr<QuantScheme> make_quant_scheme(const QuantizationConfig& config) {
  absl::StatusOr<QuantScheme> scheme;
  if (config.method == "gptq") {
    scheme = gptq_scheme(config);
  } else if (config.method == "awq") {
    scheme = awq_scheme(config);
  } else {
    return unsupported(absl::StrCat("quant_method '", config.method, "' is not supported (gptq and awq are)"));
  }
  if (scheme.ok()) scheme->modules_to_not_convert = config.modules_to_not_convert;
  return scheme;
}

bool is_quantized_module(const QuantScheme& scheme, std::string_view module) {
  for (const std::string& name : scheme.modules_to_not_convert) {
    if (!name.empty() && absl::StrContains(std::string(module), name)) return false;
  }
  return true;
}

}  // namespace bm::engine
