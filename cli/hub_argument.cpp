#include "cli/hub_argument.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace bm::cli {

absl::Status take_hub_argument(std::vector<std::string>& words, std::string& hub, size_t min_rest, size_t max_rest,
                               const std::string& usage) {
  std::vector<std::string> rest = words;
  std::string positional_hub;
  if (!rest.empty() && (rest.front() == "hf" || rest.front() == "ms")) {
    positional_hub = rest.front();
    rest.erase(rest.begin());
  }
  if (!positional_hub.empty() && !hub.empty() && hub != positional_hub)
    return absl::InvalidArgumentError(
        absl::StrCat("the hub is given twice, as '", positional_hub, "' and as --hub ", hub, "; give it once"));
  if (rest.size() < min_rest)
    return absl::InvalidArgumentError(
        absl::StrCat(positional_hub.empty() ? "" : "after the hub, ", "name a model: ", usage));
  if (rest.size() > max_rest)
    return absl::InvalidArgumentError(absl::StrCat("unexpected argument", rest.size() - max_rest > 1 ? "s" : "", " '",
                                                   absl::StrJoin(rest.begin() + max_rest, rest.end(), " "),
                                                   "': ", usage));
  if (!positional_hub.empty()) hub = positional_hub;
  words = std::move(rest);
  return absl::OkStatus();
}

}  // namespace bm::cli
