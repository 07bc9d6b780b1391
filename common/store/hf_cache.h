#pragma once
// The Hugging Face hub cache (reference/hub-protocols.md §2): models--{org}--{name}/{blobs,refs,snapshots}.
#include "common/store/model_store.h"

namespace bm::common {

class HfCache final : public ModelStore {
 public:
  explicit HfCache(std::string root) : ModelStore(std::move(root)) {}
  std::string kind() const override { return "hf"; }

 protected:
  // Downloaded when refs/main names a snapshot holding config.json and every indexed weight file. Sizes are
  // over the unique blobs of all snapshots, as scan_cache_dir() reports them.
  std::optional<StoredModel> inspect(const std::string& repo_id) const override;
};

// "Qwen/Qwen2.5-7B-Instruct" -> "models--Qwen--Qwen2.5-7B-Instruct"
std::string hf_repo_folder_name(const std::string& repo_id);

}  // namespace bm::common
