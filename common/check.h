#pragma once
// BM_CHECK guards invariants inside a component: a failure is a bug, not bad input, so it aborts with the
// condition, file and line. Input from outside is validated at the boundary and returned as absl::Status.
#define BM_CHECK(cond)                                                  \
  do {                                                                  \
    if (!(cond)) ::bm::common::check_failed(#cond, __FILE__, __LINE__); \
  } while (0)

namespace bm::common {
[[noreturn]] void check_failed(const char* condition, const char* file, int line);
}  // namespace bm::common
