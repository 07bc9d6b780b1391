#pragma once
// The vision tower's outputs by media hash, least recently used first out, within a byte budget: an image sent
// again (a later turn of the same chat, the same picture in another request) is not encoded twice. Engine thread
// only. Entries are shared with the requests using them, so an eviction never frees embeddings a prompt still needs.
#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

namespace bm::engine {

class EncoderCache {
 public:
  using Embeddings = std::shared_ptr<const std::vector<float>>;
  explicit EncoderCache(int64_t budget_bytes) : budget_bytes_(budget_bytes) {}

  Embeddings find(uint64_t hash);  // null on a miss; a hit becomes the most recently used
  void insert(uint64_t hash, Embeddings embeddings);
  int64_t bytes() const { return bytes_; }
  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }

 private:
  static int64_t size_of(const Embeddings& e) { return static_cast<int64_t>(e->size() * sizeof(float)); }
  int64_t budget_bytes_;
  int64_t bytes_ = 0;
  int64_t hits_ = 0, misses_ = 0;
  std::list<std::pair<uint64_t, Embeddings>> order_;  // most recently used first
  std::unordered_map<uint64_t, std::list<std::pair<uint64_t, Embeddings>>::iterator> index_;
};

}  // namespace bm::engine
