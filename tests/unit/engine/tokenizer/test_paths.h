#pragma once
// Where the tokenizer tests find their inputs. Environment first (set by bm_add_unit_test), else paths
// derived from this file (CMake compiles with absolute paths) so the binary also runs by hand.
#include <cstdlib>
#include <filesystem>
#include <string>

namespace bm::engine::testing {

inline std::filesystem::path env_path(const char* name, const std::filesystem::path& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::filesystem::path(value) : fallback;
}

inline std::filesystem::path source_dir() {
  return env_path("BMSERVER_SOURCE_DIR", std::filesystem::path(__FILE__).parent_path() / "../../../..");
}

inline std::filesystem::path tokenizer_data_dir() {
  return source_dir() / "tests/data/tokenizer";
}

inline std::filesystem::path shared_models_dir() {
  return env_path("BMSERVER_SHARED_MODELS", source_dir() / "../shared/models");
}

inline std::filesystem::path qwen_dir() {
  return shared_models_dir() / "Qwen/Qwen2.5-7B-Instruct";
}
inline std::filesystem::path llama_json_path() {
  return shared_models_dir() / "tokenizers/assembled/DeepSeek-R1-Distill-Llama.tokenizer.assembled.json";
}

// Written at test time by tests/tools/tokenizer_make_fixtures.py (a ctest fixture).
inline std::filesystem::path fixtures_dir() {
  return env_path("BMSERVER_BUILD_DIR", std::filesystem::current_path()) / "tokenizer_fixtures";
}

}  // namespace bm::engine::testing
