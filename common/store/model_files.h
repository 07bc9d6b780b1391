#pragma once
// Whether a model folder holds what serving needs: config.json and every weight file its index lists.
#include <filesystem>
#include <string>

#include "common/store/stored_model.h"

namespace bm::common {

struct FolderCheck {
  StoredState state = StoredState::kDownloaded;
  std::string reason;
};

// Looks at model.safetensors.index.json, else pytorch_model.bin.index.json; a folder without an index needs
// only config.json (single-file checkpoints are not required, as the original accepts any folder with
// config.json).
FolderCheck check_model_folder(const std::filesystem::path& folder);

}  // namespace bm::common
