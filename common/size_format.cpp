#include "common/size_format.h"

#include <cstdio>

namespace bm::common {
std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"", "K", "M", "G", "T", "P", "E", "Z"};
  double value = static_cast<double>(bytes);
  for (const char* unit : kUnits) {
    // Round first, so 999.96 becomes "1.0K" rather than "1000.0".
    if (value < 999.95) {
      char out[32];
      std::snprintf(out, sizeof out, "%.1f%s", value, unit);
      return out;
    }
    value /= 1000.0;
  }
  char out[32];
  std::snprintf(out, sizeof out, "%.1fY", value);
  return out;
}
}  // namespace bm::common
