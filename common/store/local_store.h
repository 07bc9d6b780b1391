#pragma once
// A local store (`--local-dir DIR`, the bmhub layout): DIR/{org}/{name}/ is a model iff it holds config.json.
#include "common/store/model_store.h"

namespace bm::common {

class LocalStore final : public ModelStore {
 public:
  explicit LocalStore(std::string root) : ModelStore(std::move(root)) {}
  std::string kind() const override { return "local"; }
  // Size counts every file under the folder but .DS_Store, as the original; the revision is the commit a
  // huggingface_hub local-dir download recorded for config.json, when there is one.
 protected:
  std::optional<StoredModel> inspect(const std::string& repo_id) const override;
};

}  // namespace bm::common
