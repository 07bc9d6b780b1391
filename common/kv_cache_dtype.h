#pragma once
// The KV cache element types `chat serve --kv-cache-dtype` takes (also through --extra-params), in one table for
// the CLI's flag check, the --extra-params mapping and the daemon's validation of ServeOptions.
#include <string>

#include "absl/status/statusor.h"

namespace bm::common {

// vLLM's spelling (auto, bfloat16, float32) and the short forms, each as the one name it means; empty is auto.
// The fp8 formats vLLM also takes are refused with the reason rather than silently served at another precision.
absl::StatusOr<std::string> canonical_kv_cache_dtype(const std::string& value);

}  // namespace bm::common
