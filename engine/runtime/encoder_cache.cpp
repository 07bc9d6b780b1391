#include "engine/runtime/encoder_cache.h"

namespace bm::engine {

EncoderCache::Embeddings EncoderCache::find(uint64_t hash) {
  auto it = index_.find(hash);
  if (it == index_.end()) {
    ++misses_;
    return nullptr;
  }
  ++hits_;
  order_.splice(order_.begin(), order_, it->second);
  return it->second->second;
}

void EncoderCache::insert(uint64_t hash, Embeddings embeddings) {
  if (embeddings == nullptr || size_of(embeddings) > budget_bytes_ || index_.contains(hash)) return;
  order_.emplace_front(hash, std::move(embeddings));
  index_[hash] = order_.begin();
  bytes_ += size_of(order_.front().second);
  while (bytes_ > budget_bytes_) {
    bytes_ -= size_of(order_.back().second);
    index_.erase(order_.back().first);
    order_.pop_back();
  }
}

}  // namespace bm::engine
