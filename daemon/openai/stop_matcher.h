#pragma once
// Stop strings over streamed text: text that may still turn into a stop string is held back, and output ends
// before the first stop string (OpenAI and vLLM exclude it from the output).
#include <string>
#include <string_view>
#include <vector>

namespace bm::daemon::openai {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  struct Result {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string matched; nothing after it may be emitted
  };
  Result push(std::string_view text);
  std::string finish();  // what was held back, at the end of generation
  bool empty() const { return stops_.empty(); }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace bm::daemon::openai
