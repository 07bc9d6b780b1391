#include "common/check.h"

#include <cstdio>
#include <cstdlib>

namespace bm::common {
void check_failed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "bmserver: internal check failed: %s at %s:%d\n", condition, file, line);
  std::abort();
}
}  // namespace bm::common
