#pragma once
// The original took the hub as the first positional argument of every chat command (`chat list hf`,
// `chat serve ms NAME`); we also take --hub. This turns the positional words of a command into (hub, rest).
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace bm::cli {

// A leading `hf` or `ms` among `words` is the hub: it is removed and stored in `hub` (an explicit --hub that
// disagrees is an error). Then at most `max_rest` words may remain, and at least `min_rest`; `usage` (e.g.
// "bmserver chat serve [hf|ms] NAME") completes the sentence when they do not. Nothing changes on error.
absl::Status take_hub_argument(std::vector<std::string>& words, std::string& hub, size_t min_rest, size_t max_rest,
                               const std::string& usage);

}  // namespace bm::cli
