#pragma once
// Loading the tokenizers the tests share: each test process loads a tokenizer at most once.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/unit/engine/tokenizer/test_paths.h"

namespace bm::engine::testing {

// A model folder for the assembled R1-Distill-Llama tokenizer.json (shared/models keeps it as a single file):
// links in the build folder, made on first use.
inline std::filesystem::path llama_dir() {
  namespace fs = std::filesystem;
  const fs::path dir = env_path("BMSERVER_BUILD_DIR", fs::temp_directory_path()) / "tokenizer_links/r1-distill-llama";
  std::error_code ec;
  fs::create_directories(dir, ec);
  // Several test processes may race here; whoever loses finds the link in place.
  fs::create_symlink(llama_json_path(), dir / "tokenizer.json", ec);
  fs::create_symlink(shared_models_dir() / "deepseek-ai/DeepSeek-R1-Distill-Llama-8B/tokenizer_config.json",
                     dir / "tokenizer_config.json", ec);
  return dir;
}

// nullptr (after a GTEST_SKIP-worthy message in `why`) when the shared files are absent.
inline const Tokenizer* cached_tokenizer(const std::filesystem::path& dir, const std::filesystem::path& needed,
                                         std::string& why) {
  static std::vector<std::pair<std::string, std::unique_ptr<Tokenizer>>> cache;
  for (const auto& [key, tok] : cache) {
    if (key == dir.string()) return tok.get();
  }
  if (!std::filesystem::exists(needed)) {
    why = "shared model files absent: " + needed.string();
    return nullptr;
  }
  auto loaded = Tokenizer::load(dir);
  if (!loaded.ok()) {
    ADD_FAILURE() << loaded.status();
    why = std::string(loaded.status().message());
    return nullptr;
  }
  cache.emplace_back(dir.string(), *std::move(loaded));
  return cache.back().second.get();
}

inline const Tokenizer* qwen_tokenizer(std::string& why) {
  return cached_tokenizer(qwen_dir(), qwen_dir() / "vocab.json", why);
}
inline const Tokenizer* llama_tokenizer(std::string& why) {
  if (!std::filesystem::exists(llama_json_path())) {
    why = "shared model files absent: " + llama_json_path().string();
    return nullptr;
  }
  return cached_tokenizer(llama_dir(), llama_json_path(), why);
}

#define BM_REQUIRE_TOKENIZER(var, getter)   \
  std::string var##_why;                    \
  const Tokenizer* var = getter(var##_why); \
  if (var == nullptr) GTEST_SKIP() << var##_why

// FNV-1a over the ids' little-endian bytes: the compact form of an id sequence in the expectation files.
inline uint64_t hash_ids(const std::vector<int32_t>& ids) {
  uint64_t h = 1469598103934665603ull;
  for (int32_t id : ids) {
    const auto u = static_cast<uint32_t>(id);
    for (int shift = 0; shift < 32; shift += 8) {
      h ^= (u >> shift) & 0xFF;
      h *= 1099511628211ull;
    }
  }
  return h;
}

inline uint64_t hash_bytes(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace bm::engine::testing
