#pragma once
// Writes a safetensors file (the layout SafetensorsFile reads). Used by tests and the CPU benchmark to make
// checkpoints at run time; the header is padded with spaces to 8 bytes as the reference writer does.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/model/dtype.h"

namespace bm::engine {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;  // num_elements(shape) * dtype_size(dtype) bytes
};

absl::Status write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors);

}  // namespace bm::engine
