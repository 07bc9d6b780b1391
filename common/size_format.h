#pragma once
#include <cstdint>
#include <string>

namespace bm::common {
// Decimal units with one decimal place, as the original bmhub prints them: 15231233024 -> "15.2G".
std::string format_size(uint64_t bytes);
}  // namespace bm::common
