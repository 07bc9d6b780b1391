#include "common/store/glob_match.h"

#include <fnmatch.h>

namespace bm::common {
bool glob_match(const std::string& pattern, const std::string& text) {
  // FNM_NOESCAPE: fnmatch.py treats a backslash as an ordinary character. Without FNM_PATHNAME and
  // FNM_PERIOD, `*` matches `/` and leading dots, as in Python.
  return ::fnmatch(pattern.c_str(), text.c_str(), FNM_NOESCAPE) == 0;
}
}  // namespace bm::common
