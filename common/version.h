#pragma once
#include <string_view>

namespace bm::common {
// The version of this build, shared by bmserverd and bmserver.
std::string_view version();
}  // namespace bm::common
