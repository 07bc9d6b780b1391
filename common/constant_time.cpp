#include "common/constant_time.h"

#include <cstddef>
#include <cstdint>

namespace bm::common {

bool constant_time_equals(std::string_view given, std::string_view expected) {
  // Every byte of `given` is compared against `expected` (cycled when shorter), so the loop length leaks only the
  // length the client chose itself.
  uint8_t difference = given.size() == expected.size() ? 0 : 1;
  const size_t expected_size = expected.size();
  for (size_t i = 0; i < given.size(); ++i) {
    uint8_t want = expected_size == 0 ? 0 : static_cast<uint8_t>(expected[i % expected_size]);
    difference |= static_cast<uint8_t>(static_cast<uint8_t>(given[i]) ^ want);
  }
  // Read through a volatile so the compiler cannot turn the loop into an early-exit compare.
  volatile uint8_t result = difference;
  return result == 0;
}

}  // namespace bm::common
