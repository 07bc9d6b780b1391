#include "engine/grammar/token_vocabulary.h"

#include <algorithm>
#include <numeric>

#include "common/check.h"
#include "engine/grammar/unicode_ranges.h"
#include "engine/tokenizer/tokenizer.h"

namespace bm::engine::grammar {

TokenVocabulary::TokenVocabulary(std::vector<std::string> token_bytes, int32_t vocab_size)
    : vocab_size_(vocab_size), token_bytes_(std::move(token_bytes)) {
  BM_CHECK(static_cast<int32_t>(token_bytes_.size()) <= vocab_size_);
  token_bytes_.resize(static_cast<size_t>(vocab_size_));
  std::vector<int32_t> order;
  for (int32_t id = 0; id < vocab_size_; ++id)
    if (!token_bytes_[id].empty()) order.push_back(id);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return token_bytes_[a] < token_bytes_[b] || (token_bytes_[a] == token_bytes_[b] && a < b);
  });
  // Sorted strings give the trie in depth-first order: each string shares its longest common prefix with the
  // one before it, and the nodes below that prefix close their subtrees.
  node_byte_.push_back(0);
  node_depth_.push_back(0);
  subtree_end_.push_back(0);
  std::vector<int32_t> path = {0};  // path[d]: the node at depth d of the current string
  std::vector<int32_t> parent = {-1};
  std::vector<int32_t> node_of_token(order.size());
  const std::string* previous = nullptr;
  for (size_t k = 0; k < order.size(); ++k) {
    const std::string& s = token_bytes_[order[k]];
    size_t common = 0;
    if (previous)
      while (common < previous->size() && common < s.size() && (*previous)[common] == s[common]) ++common;
    while (path.size() > common + 1) {
      subtree_end_[path.back()] = num_nodes();
      path.pop_back();
    }
    for (size_t d = common; d < s.size(); ++d) {
      node_byte_.push_back(static_cast<uint8_t>(s[d]));
      node_depth_.push_back(static_cast<int32_t>(d + 1));
      subtree_end_.push_back(0);
      parent.push_back(path.back());
      path.push_back(num_nodes() - 1);
    }
    max_depth_ = std::max<int32_t>(max_depth_, static_cast<int32_t>(s.size()));
    node_of_token[k] = path.back();
    previous = &s;
  }
  while (!path.empty()) {
    subtree_end_[path.back()] = num_nodes();
    path.pop_back();
  }
  // Sorted order visits terminal nodes in depth-first order, so the token lists are contiguous per node.
  tokens_begin_.assign(static_cast<size_t>(num_nodes()) + 1, 0);
  for (int32_t node : node_of_token) ++tokens_begin_[node + 1];
  std::partial_sum(tokens_begin_.begin(), tokens_begin_.end(), tokens_begin_.begin());
  token_ids_ = order;
  node_words_.resize(static_cast<size_t>(num_nodes()));
  for (int32_t node = 0; node < num_nodes(); ++node)
    node_words_[node] = node_byte_[node] | static_cast<uint32_t>(node_depth_[node]) << 8 |
                        (tokens_begin_[node + 1] > tokens_begin_[node] ? kHasTokens : 0);
  // A node is plain text when its parent is (the root is) and its byte is plain.
  std::vector<char> plain(static_cast<size_t>(num_nodes()), 0);
  plain[0] = 1;
  for (int32_t node = 1; node < num_nodes(); ++node) {
    plain[node] = plain[parent[node]] && is_plain(node_byte_[node]);
    if (plain[parent[node]] && !plain[node]) exit_nodes_.push_back(node);
  }
  std::stable_sort(exit_nodes_.begin(), exit_nodes_.end(),
                   [&](int32_t a, int32_t b) { return node_depth_[a] < node_depth_[b]; });
  for (int32_t id : token_ids_) {
    const std::string& s = token_bytes_[id];
    if (std::all_of(s.begin(), s.end(), [](char c) { return is_plain(static_cast<uint8_t>(c)); }))
      plain_ids_by_length_.push_back(id);
  }
  std::stable_sort(plain_ids_by_length_.begin(), plain_ids_by_length_.end(),
                   [&](int32_t a, int32_t b) { return token_bytes_[a].size() < token_bytes_[b].size(); });

  // A node is text when its parent is (the root is) and its byte is plain or goes on a valid UTF-8 character;
  // by node: the UTF-8 state after it (-1: not text), its whole characters and the depth where the last one ends.
  std::vector<int8_t> utf8_state(static_cast<size_t>(num_nodes()), -1);
  std::vector<int32_t> chars(static_cast<size_t>(num_nodes()), 0);
  std::vector<int32_t> boundary(static_cast<size_t>(num_nodes()), 0);
  utf8_state[0] = kUtf8Boundary;
  std::vector<std::pair<int32_t, int32_t>> text_tokens;  // (count, id)
  for (int32_t node = 1; node < num_nodes(); ++node) {
    const int32_t p = parent[node];
    if (utf8_state[p] < 0) continue;
    const uint8_t b = node_byte_[node];
    const int state = b < 0x80 && !is_plain(b) ? -1 : utf8_next(utf8_state[p], b);
    if (state < 0) {
      TextExit exit{node, chars[p], node_depth_[p] - boundary[p], 0};
      for (int32_t q = p, k = exit.partial_length - 1; k >= 0; q = parent[q], --k)
        exit.partial |= static_cast<uint32_t>(node_byte_[q]) << (8 * k);
      text_exits_.push_back(exit);
      continue;
    }
    utf8_state[node] = static_cast<int8_t>(state);
    chars[node] = chars[p] + (state == kUtf8Boundary);
    boundary[node] = state == kUtf8Boundary ? node_depth_[node] : boundary[p];
    if (plain[node]) continue;
    for (int32_t t = tokens_begin_[node]; t < tokens_begin_[node + 1]; ++t)
      text_tokens.emplace_back(chars[node] + (state != kUtf8Boundary), token_ids_[t]);
  }
  std::stable_sort(text_tokens.begin(), text_tokens.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::stable_sort(text_exits_.begin(), text_exits_.end(),
                   [](const TextExit& a, const TextExit& b) { return a.chars < b.chars; });
  text_up_to_.assign(static_cast<size_t>(max_depth_) + 1, 0);
  text_exits_up_to_.assign(static_cast<size_t>(max_depth_) + 1, 0);
  for (const auto& [count, id] : text_tokens) {
    text_ids_by_count_.push_back(id);
    ++text_up_to_[count];
  }
  for (const TextExit& exit : text_exits_) ++text_exits_up_to_[exit.chars];
  std::partial_sum(text_up_to_.begin(), text_up_to_.end(), text_up_to_.begin());
  std::partial_sum(text_exits_up_to_.begin(), text_exits_up_to_.end(), text_exits_up_to_.begin());
  const size_t words = (static_cast<size_t>(vocab_size_) + 63) / 64;
  for (int text = 0; text < 2; ++text)
    for (int32_t n = 0; n <= kKeptCounts; ++n) {
      std::vector<uint64_t> bits(words, 0);
      for (int32_t i = 0, end = num_plain_up_to(n); i < end; ++i)
        bits[plain_ids_by_length_[i] / 64] |= uint64_t{1} << (plain_ids_by_length_[i] % 64);
      for (int32_t i = 0, end = text ? num_text_up_to(n) : 0; i < end; ++i)
        bits[text_ids_by_count_[i] / 64] |= uint64_t{1} << (text_ids_by_count_[i] % 64);
      kept_bits_[text].push_back(std::move(bits));
    }
}

void TokenVocabulary::settled_bits(int32_t n, bool text, std::vector<uint64_t>& bits) const {
  const int32_t kept = std::clamp(n, 0, kKeptCounts);
  bits = kept_bits_[text][kept];
  for (int32_t i = num_plain_up_to(kept), end = num_plain_up_to(n); i < end; ++i)
    bits[plain_ids_by_length_[i] / 64] |= uint64_t{1} << (plain_ids_by_length_[i] % 64);
  for (int32_t i = text ? num_text_up_to(kept) : 0, end = text ? num_text_up_to(n) : 0; i < end; ++i)
    bits[text_ids_by_count_[i] / 64] |= uint64_t{1} << (text_ids_by_count_[i] % 64);
}

int32_t TokenVocabulary::num_plain_up_to(int32_t length) const {
  auto end = std::partition_point(plain_ids_by_length_.begin(), plain_ids_by_length_.end(),
                                  [&](int32_t id) { return static_cast<int32_t>(token_bytes_[id].size()) <= length; });
  return static_cast<int32_t>(end - plain_ids_by_length_.begin());
}

int32_t TokenVocabulary::num_exits_up_to(int32_t depth) const {
  auto end = std::partition_point(exit_nodes_.begin(), exit_nodes_.end(),
                                  [&](int32_t node) { return node_depth_[node] <= depth; });
  return static_cast<int32_t>(end - exit_nodes_.begin());
}

int32_t TokenVocabulary::num_text_up_to(int32_t count) const {
  return count < 0 ? 0 : text_up_to_[static_cast<size_t>(std::min(count, max_depth_))];
}

int32_t TokenVocabulary::num_text_exits_up_to(int32_t chars) const {
  return chars < 0 ? 0 : text_exits_up_to_[static_cast<size_t>(std::min(chars, max_depth_))];
}

std::shared_ptr<const TokenVocabulary::ClassIndex> TokenVocabulary::class_index(const ByteClass& bytes) const {
  std::lock_guard<std::mutex> lock(class_mutex_);
  for (const auto& [cls, index] : class_indexes_)
    if (cls == bytes) return index;
  if (class_indexes_.size() >= kMaxClassIndexes) return nullptr;
  auto index = std::make_shared<ClassIndex>();
  // Depth-first order: the last node seen at depth d - 1 is the parent of a node at depth d.
  std::vector<char> in_class(static_cast<size_t>(max_depth_) + 1, 0);
  in_class[0] = 1;
  std::vector<std::vector<int32_t>> ids(static_cast<size_t>(max_depth_) + 1), exits(ids.size());
  for (int32_t node = 1; node < num_nodes(); ++node) {
    const int32_t d = node_depth_[node];
    in_class[d] = in_class[d - 1] && bytes.has(node_byte_[node]);
    if (in_class[d])
      ids[d].insert(ids[d].end(), token_ids_.begin() + tokens_begin_[node],
                    token_ids_.begin() + tokens_begin_[node + 1]);
    else if (in_class[d - 1])
      exits[d].push_back(node);
  }
  index->ids_up_to.assign(ids.size(), 0);
  index->exits_up_to.assign(ids.size(), 0);
  for (size_t d = 0; d < ids.size(); ++d) {
    index->ids_by_length.insert(index->ids_by_length.end(), ids[d].begin(), ids[d].end());
    index->exits.insert(index->exits.end(), exits[d].begin(), exits[d].end());
    index->ids_up_to[d] = static_cast<int32_t>(index->ids_by_length.size());
    index->exits_up_to[d] = static_cast<int32_t>(index->exits.size());
  }
  class_indexes_.emplace_back(bytes, index);
  return index;
}

std::shared_ptr<const TokenVocabulary> TokenVocabulary::from_tokenizer(const Tokenizer& tokenizer, int32_t vocab_size) {
  const int32_t n = std::min(tokenizer.vocab_size(), vocab_size);
  std::vector<std::string> bytes(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id)
    if (!tokenizer.is_special(id)) bytes[id] = std::string(tokenizer.token_bytes(id, /*skip_special_tokens=*/true));
  return std::make_shared<const TokenVocabulary>(std::move(bytes), vocab_size);
}

}  // namespace bm::engine::grammar
