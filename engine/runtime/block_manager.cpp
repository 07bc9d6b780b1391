#include "engine/runtime/block_manager.h"

#include <algorithm>

#include "common/check.h"
#include "common/splitmix64.h"
#include "engine/models/causal_lm.h"

namespace bm::engine {

BlockManager::BlockManager(int32_t num_blocks, bool enable_prefix_caching)
    : blocks_(num_blocks), enable_prefix_caching_(enable_prefix_caching) {
  for (int32_t b = 0; b < num_blocks; ++b) blocks_[b].free_position = free_list_.insert(free_list_.end(), b);
}

int32_t BlockManager::blocks_for(int32_t num_tokens) {
  return (num_tokens + kBlockSize - 1) / kBlockSize;
}

// splitmix64 over the previous hash, the block's media (0: none) and its tokens; a zero result is nudged because 0
// means "no hash".
uint64_t BlockManager::chain_hash(uint64_t previous, const int32_t* tokens, uint64_t media) {
  uint64_t h = previous ^ 0x9e3779b97f4a7c15ULL ^ media;
  for (int32_t i = 0; i < kBlockSize; ++i) h = common::splitmix64(h + static_cast<uint32_t>(tokens[i]));
  return h == 0 ? 1 : h;
}

int32_t BlockManager::take_free_block() {
  BM_CHECK(!free_list_.empty());
  int32_t b = free_list_.front();
  free_list_.pop_front();
  Block& block = blocks_[b];
  if (block.hash != 0) {  // evict it from the prefix cache
    auto it = cached_.find(block.hash);
    if (it != cached_.end() && it->second == b) cached_.erase(it);
    block.hash = 0;
    block.tokens.clear();
  }
  block.ref_count = 1;
  return b;
}

void BlockManager::hold(int32_t b) {
  Block& block = blocks_[b];
  if (block.ref_count == 0) free_list_.erase(block.free_position);
  ++block.ref_count;
}

void BlockManager::attach_cached_prefix(Sequence& seq) {
  BM_CHECK(seq.block_table.empty());
  seq.num_computed_tokens = 0;
  if (!enable_prefix_caching_) return;
  const int32_t max_blocks = (seq.num_tokens() - 1) / kBlockSize;
  uint64_t hash = 0;
  for (int32_t i = 0; i < max_blocks; ++i) {
    const int32_t* tokens = seq.token_ids().data() + i * kBlockSize;
    hash = chain_hash(hash, tokens, seq.block_media_hash(i));
    auto it = cached_.find(hash);
    if (it == cached_.end()) break;
    const Block& block = blocks_[it->second];
    if (!std::equal(block.tokens.begin(), block.tokens.end(), tokens)) break;
    hold(it->second);
    seq.block_table.push_back(it->second);
    seq.block_hashes.push_back(hash);
  }
  seq.num_computed_tokens = static_cast<int32_t>(seq.block_table.size()) * kBlockSize;
  seq.num_cached_prompt_tokens = std::min(seq.num_computed_tokens, seq.num_prompt_tokens());
}

bool BlockManager::reserve(Sequence& seq, int32_t num_tokens) {
  const int32_t needed = blocks_for(num_tokens) - static_cast<int32_t>(seq.block_table.size());
  if (needed <= 0) return true;
  if (needed > num_free_blocks()) return false;
  for (int32_t i = 0; i < needed; ++i) seq.block_table.push_back(take_free_block());
  return true;
}

void BlockManager::cache_full_blocks(Sequence& seq) {
  if (!enable_prefix_caching_) return;
  const int32_t num_full = seq.num_computed_tokens / kBlockSize;
  for (int32_t i = static_cast<int32_t>(seq.block_hashes.size()); i < num_full; ++i) {
    const int32_t* tokens = seq.token_ids().data() + i * kBlockSize;
    uint64_t hash = chain_hash(i == 0 ? 0 : seq.block_hashes[i - 1], tokens, seq.block_media_hash(i));
    seq.block_hashes.push_back(hash);
    int32_t b = seq.block_table[i];
    if (blocks_[b].hash != 0 || cached_.contains(hash)) continue;  // shared, or the same content cached elsewhere
    blocks_[b].hash = hash;
    blocks_[b].tokens.assign(tokens, tokens + kBlockSize);
    cached_[hash] = b;
  }
}

void BlockManager::release(Sequence& seq) {
  // Tail blocks first, so that a prefix's first blocks are the last to be reused.
  for (auto it = seq.block_table.rbegin(); it != seq.block_table.rend(); ++it) {
    Block& block = blocks_[*it];
    BM_CHECK(block.ref_count > 0);
    if (--block.ref_count == 0) block.free_position = free_list_.insert(free_list_.end(), *it);
  }
  seq.block_table.clear();
  seq.block_hashes.clear();
}

}  // namespace bm::engine
