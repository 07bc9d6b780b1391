#include "engine/grammar/token_vocabulary.h"

#include <algorithm>
#include <numeric>

#include "common/check.h"
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

std::shared_ptr<const TokenVocabulary> TokenVocabulary::from_tokenizer(const Tokenizer& tokenizer, int32_t vocab_size) {
  const int32_t n = std::min(tokenizer.vocab_size(), vocab_size);
  std::vector<std::string> bytes(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id)
    if (!tokenizer.is_special(id)) bytes[id] = std::string(tokenizer.token_bytes(id, /*skip_special_tokens=*/true));
  return std::make_shared<const TokenVocabulary>(std::move(bytes), vocab_size);
}

}  // namespace bm::engine::grammar
