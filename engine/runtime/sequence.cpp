#include "engine/runtime/sequence.h"

#include <algorithm>

namespace bm::engine {

Sequence::Sequence(int64_t id, int32_t index, std::shared_ptr<Request> request, std::vector<int32_t> prompt_ids,
                   uint64_t seed)
    : rng(seed),
      id_(id),
      index_(index),
      request_(std::move(request)),
      token_ids_(std::move(prompt_ids)),
      num_prompt_tokens_(static_cast<int32_t>(token_ids_.size())) {
  pending.index = index_;
  pending.num_prompt_tokens = num_prompt_tokens_;
  distinct_tokens_ = token_ids_;
  std::sort(distinct_tokens_.begin(), distinct_tokens_.end());
  distinct_tokens_.erase(std::unique(distinct_tokens_.begin(), distinct_tokens_.end()), distinct_tokens_.end());
  if (request_->params.grammar) matcher = std::make_unique<grammar::GrammarMatcher>(request_->params.grammar);
}

void Sequence::append_token(int32_t token_id) {
  token_ids_.push_back(token_id);
  ++output_counts_[token_id];
  auto at = std::lower_bound(distinct_tokens_.begin(), distinct_tokens_.end(), token_id);
  if (at == distinct_tokens_.end() || *at != token_id) distinct_tokens_.insert(at, token_id);
}

}  // namespace bm::engine
