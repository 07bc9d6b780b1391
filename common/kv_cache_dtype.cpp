#include "common/kv_cache_dtype.h"

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace bm::common {

absl::StatusOr<std::string> canonical_kv_cache_dtype(const std::string& value) {
  static const std::pair<std::string_view, std::string_view> kNames[] = {
      {"", "auto"},           {"auto", "auto"},    {"bfloat16", "bfloat16"}, {"bf16", "bfloat16"},
      {"float32", "float32"}, {"fp32", "float32"}, {"float", "float32"}};
  for (const auto& [given, name] : kNames)
    if (value == given) return std::string(name);
  if (absl::StartsWith(value, "fp8"))
    return absl::InvalidArgumentError(
        absl::StrCat("--kv-cache-dtype ", value, " is not available: the KV cache is bfloat16 (auto) or float32"));
  return absl::InvalidArgumentError(
      absl::StrCat("--kv-cache-dtype must be auto, bfloat16 or float32, not '", value, "'"));
}

}  // namespace bm::common
