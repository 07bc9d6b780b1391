#pragma once
// The ModelScope cache (reference/hub-protocols.md §4.2), all three layouts, newest first:
//   >= 1.38:     {base}/models/{org}--{name}/snapshots/{revision}/   (plain files)
//   1.23–1.37:  {base}/models/{org}/{name with . -> ___}             (+ an absolute link {name} -> it)
//   <= 1.22:    {base}/{org}/{name with . -> ___}
// base is MODELSCOPE_CACHE, else ~/.cache/modelscope/hub and, for the >= 1.38 layout, ~/.cache/modelscope.
#include "common/store/model_store.h"

namespace bm::common {

class ModelScopeCache final : public ModelStore {
 public:
  explicit ModelScopeCache(const StoreRoots& roots);
  std::string kind() const override { return "ms"; }

 protected:
  std::optional<StoredModel> inspect(const std::string& repo_id) const override;

 private:
  std::vector<std::string> new_layout_bases_;
};

// "Qwen2.5-7B" -> "Qwen2___5-7B": how modelscope <= 1.37 names folders of dotted repos.
std::string modelscope_folder_name(const std::string& name);

}  // namespace bm::common
