#pragma once
// Stop strings over streamed text: text that may still turn into a stop string is held back, and output ends
// before the first stop string (OpenAI and vLLM exclude it from the output).
//
// The stop strings of a request are compiled once into an Aho–Corasick automaton (StopStrings) that every
// choice of the request shares; each choice's StopMatcher keeps only a state and the held-back tail, so a
// token costs time in proportion to its own bytes, whatever the stop strings' number and length.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bm::daemon::openai {

class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops);  // empty strings are ignored
  bool empty() const { return nodes_.size() == 1; }
  const std::vector<std::string>& strings() const { return stops_; }

  // The automaton's state after `byte` from `state` (0 is the start state).
  int32_t next(int32_t state, uint8_t byte) const;
  // Length of the text matched so far that may still become a stop string (what must be held back).
  int32_t depth(int32_t state) const { return nodes_[state].depth; }
  // Length of the longest stop string ending at this state, 0 when none does.
  int32_t match_length(int32_t state) const { return nodes_[state].match_length; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte; sparse, as stop strings are few
    int32_t fail = 0;
    int32_t depth = 0;
    int32_t match_length = 0;
  };
  int32_t child(int32_t state, uint8_t byte) const;  // -1 when the trie has no such edge

  std::vector<std::string> stops_;
  std::vector<Node> nodes_;
};

class StopMatcher {
 public:
  explicit StopMatcher(std::shared_ptr<const StopStrings> stops);
  explicit StopMatcher(std::vector<std::string> stops)
      : StopMatcher(std::make_shared<const StopStrings>(std::move(stops))) {}
  struct Result {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string matched; nothing after it may be emitted
  };
  Result push(std::string_view text);
  std::string finish();  // what was held back, at the end of generation
  bool empty() const { return stops_->empty(); }

 private:
  std::shared_ptr<const StopStrings> stops_;
  int32_t state_ = 0;
  std::string pending_;  // held back: exactly the last depth(state_) bytes pushed
  bool stopped_ = false;
};

}  // namespace bm::daemon::openai
