#include "common/version.h"

#include "common/version_config.h"

namespace bm::common {
std::string_view version() {
  return BMSERVER_VERSION_STRING;
}
}  // namespace bm::common
