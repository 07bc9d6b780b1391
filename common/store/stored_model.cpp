#include "common/store/stored_model.h"

#include "common/check.h"

namespace bm::common {
std::string_view stored_state_name(StoredState state) {
  switch (state) {
    case StoredState::kDownloaded:
      return "downloaded";
    case StoredState::kIncomplete:
      return "incomplete";
    case StoredState::kCorrupt:
      return "corrupt";
  }
  BM_CHECK(false);
}
}  // namespace bm::common
