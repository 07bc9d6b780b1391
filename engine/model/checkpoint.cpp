#include "engine/model/checkpoint.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace bm::engine {
namespace {

absl::StatusOr<std::string> read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A shard name must stay inside the model folder: a plain relative path without "..".
bool is_safe_shard_name(const std::string& name) {
  const std::filesystem::path path(name);
  if (name.empty() || path.is_absolute()) return false;
  return std::none_of(path.begin(), path.end(), [](const std::filesystem::path& part) { return part == ".."; });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::open(const std::filesystem::path& model_dir) {
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  std::error_code error;
  if (std::filesystem::exists(model_dir / kIndexFile, error)) {
    if (absl::Status status = checkpoint->open_index(model_dir); !status.ok()) return status;
    return checkpoint;
  }
  if (!std::filesystem::exists(model_dir / kSingleFile, error)) {
    std::string hint;
    if (std::filesystem::exists(model_dir / "pytorch_model.bin", error) ||
        std::filesystem::exists(model_dir / "pytorch_model.bin.index.json", error)) {
      hint = " (it has PyTorch .bin weights; only safetensors checkpoints are supported)";
    }
    return absl::NotFoundError(absl::StrCat("model folder ", model_dir.string(), " has neither ",
                                            std::string(kSingleFile), " nor ", std::string(kIndexFile), hint));
  }
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::open(model_dir / kSingleFile);
  if (!file.ok()) return file.status();
  for (const TensorInfo& tensor : (*file)->tensors()) checkpoint->tensors_[tensor.name] = &tensor;
  checkpoint->files_.push_back(std::move(*file));
  return checkpoint;
}

absl::Status Checkpoint::open_index(const std::filesystem::path& model_dir) {
  const std::filesystem::path index_path = model_dir / kIndexFile;
  absl::StatusOr<std::string> text = read_text_file(index_path);
  if (!text.ok()) return text.status();
  const nlohmann::json index = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path.string(), " is not a JSON object"));
  }
  const auto weight_map = index.find("weight_map");
  if (weight_map == index.end() || !weight_map->is_object() || weight_map->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path.string(), " has no 'weight_map' object"));
  }
  std::map<std::string, std::vector<std::string>> names_by_shard;
  for (const auto& [tensor, shard] : weight_map->items()) {
    if (!shard.is_string() || !is_safe_shard_name(shard.get<std::string>())) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), " maps tensor '", tensor, "' to an invalid shard name"));
    }
    names_by_shard[shard.get<std::string>()].push_back(tensor);
  }
  for (const auto& [shard, names] : names_by_shard) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::open(model_dir / shard);
    if (!file.ok()) {
      if (absl::IsNotFound(file.status())) {
        return absl::NotFoundError(
            absl::StrCat("shard ", shard, " listed in ", index_path.string(), " is missing (incomplete download?)"));
      }
      return file.status();
    }
    for (const std::string& name : names) {
      const TensorInfo* tensor = (*file)->find(name);
      if (tensor == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), " places tensor '", name, "' in ", shard, ", which has no such tensor"));
      }
      tensors_[name] = tensor;
    }
    files_.push_back(std::move(*file));
  }
  return absl::OkStatus();
}

const TensorInfo* Checkpoint::find(std::string_view name) const {
  const auto it = tensors_.find(absl::string_view(name.data(), name.size()));
  return it == tensors_.end() ? nullptr : it->second;
}

std::vector<std::string> Checkpoint::tensor_names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, tensor] : tensors_) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace bm::engine
