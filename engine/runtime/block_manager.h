#pragma once
// The paged KV cache's bookkeeping: which 16-token blocks are free, who holds each (reference counts, so that
// samples of one prompt and requests with a common prefix share blocks), and a prefix cache that finds full
// blocks by the chained hash of their tokens. Nothing here touches the KV bytes themselves.
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

#include "engine/runtime/sequence.h"

namespace bm::engine {

class BlockManager {
 public:
  BlockManager(int32_t num_blocks, bool enable_prefix_caching);

  int32_t num_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  // Free blocks, counting cached blocks nobody holds (they are reused oldest first).
  int32_t num_free_blocks() const { return static_cast<int32_t>(free_list_.size()); }
  int32_t num_used_blocks() const { return num_blocks() - num_free_blocks(); }
  static int32_t blocks_for(int32_t num_tokens);

  // For a sequence that holds no blocks: takes the cached blocks of its longest full-block prefix, always leaving
  // the last token to compute (its logits are needed), and counts those tokens as computed.
  void attach_cached_prefix(Sequence& seq);
  // Grows the block table to cover `num_tokens` tokens. Returns false, changing nothing, when too few blocks are free.
  bool reserve(Sequence& seq, int32_t num_tokens);
  // Makes the blocks that are full up to seq.num_computed_tokens findable by later sequences.
  void cache_full_blocks(Sequence& seq);
  // Drops the sequence's hold on its blocks; cached ones stay findable until they are reused.
  void release(Sequence& seq);

 private:
  struct Block {
    int32_t ref_count = 0;
    uint64_t hash = 0;            // 0: not in the prefix cache
    std::vector<int32_t> tokens;  // the cached block's tokens, compared on a hit so a hash collision cannot alias
    std::list<int32_t>::iterator free_position;
  };

  // media: the hash of the images and videos whose tokens the block holds (their pad tokens are the same ids for
  // any image, so the ids alone would let two images share KV); 0 for text.
  static uint64_t chain_hash(uint64_t previous, const int32_t* tokens, uint64_t media = 0);
  int32_t take_free_block();
  void hold(int32_t block);

  std::vector<Block> blocks_;
  std::list<int32_t> free_list_;  // front: reused first
  std::unordered_map<uint64_t, int32_t> cached_;
  bool enable_prefix_caching_;
};

}  // namespace bm::engine
