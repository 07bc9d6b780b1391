#pragma once
// Paths and loaders for the committed fixtures in tests/data/vision (made by
// tests/tools/vision_make_preprocessing_fixtures.py).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

namespace bm::engine::vision::testing {

// ctest sets BMSERVER_SOURCE_DIR; run by hand, the repository is found upward from the working directory (the
// checkout or a build folder inside it). __FILE__ is no help: ccache's base-dir rewriting makes it relative.
inline std::filesystem::path source_dir() {
  if (const char* dir = std::getenv("BMSERVER_SOURCE_DIR"); dir != nullptr) return dir;
  for (auto p = std::filesystem::current_path();; p = p.parent_path()) {
    if (std::filesystem::exists(p / "tests/data/vision/expected.json")) return p;
    if (p == p.parent_path()) return std::filesystem::current_path();
  }
}

inline std::filesystem::path fixture_dir() {
  return source_dir() / "tests/data/vision";
}

inline std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline const nlohmann::json& expected() {
  static const nlohmann::json j = nlohmann::json::parse(read_bytes(fixture_dir() / "expected.json"));
  return j;
}

inline std::filesystem::path shared_models() {
  const char* dir = std::getenv("BMSERVER_SHARED_MODELS");
  return dir != nullptr ? std::filesystem::path(dir) : source_dir() / "../shared/models";
}

}  // namespace bm::engine::vision::testing
