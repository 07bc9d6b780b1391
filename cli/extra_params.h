#pragma once
// The original passed `--extra-params "..."` verbatim to `vllm serve`. Here each vLLM engine argument that means
// something to our engine maps onto a ServeOptions field; every other one is refused with a sentence naming it,
// so a script never runs with settings silently dropped.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace bmserver::v1 {
class ServeOptions;
}

namespace bm::cli {

// Splits like a POSIX shell does for words: blanks separate, '…' and "…" quote, \ escapes outside '…'.
absl::StatusOr<std::vector<std::string>> split_shell_words(const std::string& text);

// Applies the arguments to `options`. On error `options` is unchanged (nothing half-applied) and the status
// names every argument it could not take.
absl::Status apply_extra_params(const std::string& text, bmserver::v1::ServeOptions& options);

// The vLLM arguments --extra-params accepts, for help texts and docs.
std::vector<std::string> accepted_extra_params();

}  // namespace bm::cli
