#pragma once
// Helpers for tests that write model files: a fresh temporary folder and raw safetensors bytes.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace bm::engine::testing {

// A folder under the system temp dir, removed with everything in it when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::random_device seed;
    path_ =
        std::filesystem::temp_directory_path() / ("bm-model-test-" + std::to_string(seed()) + std::to_string(seed()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// The 8-byte little-endian length, the header text, then `data`.
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string bytes;
  const uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  return bytes + header + data;
}

}  // namespace bm::engine::testing
