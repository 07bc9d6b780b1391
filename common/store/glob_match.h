#pragma once
#include <string>

namespace bm::common {
// Python's fnmatch.fnmatchcase on POSIX (the original's pattern semantics): `*`, `?`, `[seq]`, `[!seq]`;
// `*` also crosses `/`, and there is no escape character.
bool glob_match(const std::string& pattern, const std::string& text);
}  // namespace bm::common
