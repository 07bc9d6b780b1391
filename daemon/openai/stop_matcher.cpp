#include "daemon/openai/stop_matcher.h"

#include <algorithm>
#include <deque>

namespace bm::daemon::openai {

StopStrings::StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
  nodes_.emplace_back();
  for (const std::string& stop : stops_) {
    int32_t state = 0;
    for (unsigned char byte : stop) {
      int32_t next = child(state, byte);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        Node node;
        node.depth = nodes_[state].depth + 1;
        nodes_.push_back(std::move(node));
        auto& children = nodes_[state].children;
        children.insert(std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{-1})),
                        {byte, next});
      }
      state = next;
    }
    nodes_[state].match_length = nodes_[state].depth;
  }
  // Failure links breadth-first, so a node's link (always shallower) is final before its children need it.
  std::deque<int32_t> queue;
  for (auto [byte, c] : nodes_[0].children) queue.push_back(c);
  while (!queue.empty()) {
    int32_t state = queue.front();
    queue.pop_front();
    Node& node = nodes_[state];
    if (node.match_length == 0) node.match_length = nodes_[node.fail].match_length;
    for (auto [byte, c] : node.children) {
      int32_t f = node.fail;
      while (f != 0 && child(f, byte) < 0) f = nodes_[f].fail;
      int32_t target = child(f, byte);
      nodes_[c].fail = target >= 0 && target != c ? target : 0;
      queue.push_back(c);
    }
  }
}

int32_t StopStrings::child(int32_t state, uint8_t byte) const {
  const auto& children = nodes_[state].children;
  auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{-1}));
  return it != children.end() && it->first == byte ? it->second : -1;
}

int32_t StopStrings::next(int32_t state, uint8_t byte) const {
  // Each failure step shortens the match, and a byte lengthens it by at most one: amortised O(1) per byte.
  while (true) {
    int32_t c = child(state, byte);
    if (c >= 0) return c;
    if (state == 0) return 0;
    state = nodes_[state].fail;
  }
}

StopMatcher::StopMatcher(std::shared_ptr<const StopStrings> stops) : stops_(std::move(stops)) {}

StopMatcher::Result StopMatcher::push(std::string_view text) {
  Result out;
  if (stopped_) return out;
  if (stops_->empty()) {
    out.text = std::string(text);
    return out;
  }
  // Positions below are offsets into pending_ + text; pending_ is the held-back tail.
  const size_t base = pending_.size();
  size_t best_start = std::string::npos;  // earliest start of a completed stop string
  for (size_t i = 0; i < text.size(); ++i) {
    state_ = stops_->next(state_, static_cast<uint8_t>(text[i]));
    size_t end = base + i + 1;
    if (int32_t len = stops_->match_length(state_); len > 0) best_start = std::min(best_start, end - len);
    // A match still to complete starts no earlier than end - depth: once that is past the best start, no later
    // byte can give an earlier one (the old rule: the stop string that starts first wins).
    if (best_start != std::string::npos && end - stops_->depth(state_) >= best_start) break;
  }
  if (best_start != std::string::npos) {
    pending_.append(text.substr(0, best_start > base ? best_start - base : 0));
    out.text = pending_.substr(0, best_start);
    out.stopped = stopped_ = true;
    pending_.clear();
    return out;
  }
  pending_.append(text);
  size_t hold = static_cast<size_t>(stops_->depth(state_));
  out.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::finish() {
  std::string rest = stopped_ ? std::string() : std::move(pending_);
  pending_.clear();
  return rest;
}

}  // namespace bm::daemon::openai
