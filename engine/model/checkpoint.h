#pragma once
// The weights of a Hugging Face model folder: one `model.safetensors`, or shards listed by
// `model.safetensors.index.json` ({"weight_map": {tensor: shard file}}). Every shard is mapped and validated
// when the checkpoint opens; a name in the index that its shard lacks is an error then, not at first use.
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/model/safetensors_file.h"

namespace bm::engine {

class Checkpoint {
 public:
  static constexpr std::string_view kSingleFile = "model.safetensors";
  static constexpr std::string_view kIndexFile = "model.safetensors.index.json";

  static absl::StatusOr<std::unique_ptr<Checkpoint>> open(const std::filesystem::path& model_dir);

  // nullptr when no shard holds that tensor.
  const TensorInfo* find(std::string_view name) const;
  // Names of all tensors, sorted.
  std::vector<std::string> tensor_names() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  Checkpoint() = default;
  absl::Status open_index(const std::filesystem::path& model_dir);

  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  absl::flat_hash_map<std::string, const TensorInfo*> tensors_;
};

}  // namespace bm::engine
