#pragma once
// A read-only, memory-mapped safetensors file (https://huggingface.co/docs/safetensors): an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the tensor
// bytes. Opening validates the whole header against the file (dtypes, shapes, offsets inside the data, no
// overlaps, no duplicate names), so that a tensor handed out is always safe to read.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/dtype.h"

namespace bm::engine {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;  // inside the file's mapping; valid while the file is open

  int64_t num_elements() const;
};

class SafetensorsFile {
 public:
  // The header may be at most this long (the reference implementation's limit).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> open(const std::filesystem::path& path);
  // The same validation over bytes already in memory (open() maps the file and parses it so). The tensors' data
  // points into `bytes`, which must outlive the result; `name` only labels the error messages.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> from_bytes(std::span<const std::byte> bytes,
                                                                     const std::filesystem::path& name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // nullptr when the file has no tensor of that name.
  const TensorInfo* find(std::string_view name) const;

 private:
  SafetensorsFile() = default;
  absl::Status parse(std::span<const std::byte> bytes);

  std::filesystem::path path_;
  void* mapping_ = nullptr;
  size_t mapping_bytes_ = 0;
  std::vector<TensorInfo> tensors_;  // sorted by name
  std::map<std::string, std::string> metadata_;
};

}  // namespace bm::engine
