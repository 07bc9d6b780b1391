#include "common/store/model_files.h"

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

namespace bm::common {
namespace {

namespace fs = std::filesystem;

FolderCheck incomplete(std::string reason) {
  return {StoredState::kIncomplete, std::move(reason)};
}
FolderCheck corrupt(std::string reason) {
  return {StoredState::kCorrupt, std::move(reason)};
}

bool is_present(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);  // follows links: a dangling one is not present
}

}  // namespace

FolderCheck check_model_folder(const fs::path& folder) {
  if (!is_present(folder / "config.json")) return incomplete("config.json is missing");
  for (const char* index_name : {"model.safetensors.index.json", "pytorch_model.bin.index.json"}) {
    fs::path index_path = folder / index_name;
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(index_path, ec))) continue;
    if (!is_present(index_path)) return incomplete(std::string(index_name) + " is a dangling link");
    std::ifstream in(index_path);
    nlohmann::json index = nlohmann::json::parse(in, nullptr, false);
    if (!in.good() && !in.eof()) return corrupt(std::string(index_name) + " cannot be read");
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      return corrupt(std::string(index_name) + " has no weight_map object");
    std::set<std::string> files;
    for (const auto& [tensor, file] : index["weight_map"].items()) {
      if (!file.is_string()) return corrupt(std::string(index_name) + " maps " + tensor + " to a non-string");
      files.insert(file.get<std::string>());
    }
    size_t num_missing = 0;
    std::string first_missing;
    for (const std::string& file : files) {
      fs::path relative(file);
      bool escapes = relative.is_absolute();
      for (const fs::path& part : relative) escapes = escapes || part == "..";
      if (escapes) return corrupt(std::string(index_name) + " names a file outside the folder: " + file);
      if (!is_present(folder / relative)) {
        if (num_missing++ == 0) first_missing = file;
      }
    }
    if (num_missing > 0)
      return incomplete(std::to_string(num_missing) + " of " + std::to_string(files.size()) +
                        " weight files are missing (first: " + first_missing + ")");
    return {};
  }
  return {};
}

}  // namespace bm::common
