#pragma once
// Comparing a secret a client sent (a bearer token, an API key) with the expected one in time that does not
// depend on where they first differ, so the response time does not reveal how much of a guess was right.
#include <string_view>

namespace bm::common {

// True when both hold the same bytes. Time depends only on the length of `given`, never on the content of
// either; a length mismatch is folded in without an early return.
bool constant_time_equals(std::string_view given, std::string_view expected);

}  // namespace bm::common
