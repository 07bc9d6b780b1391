#pragma once
// Where the committed test data lives: $BMSERVER_SOURCE_DIR, else derived from this file's path (CMake
// compiles with absolute paths), so the tests also run when a runner drops the environment.
#include <cstdlib>
#include <filesystem>

namespace bm::engine::testing {

inline std::filesystem::path template_test_data_dir() {
  const char* source = std::getenv("BMSERVER_SOURCE_DIR");
  std::filesystem::path root = source != nullptr && *source != '\0'
                                   ? std::filesystem::path(source)
                                   : std::filesystem::path(__FILE__).parent_path() / "../../../..";
  return root / "tests/data/template";
}

}  // namespace bm::engine::testing
