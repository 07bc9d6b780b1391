#pragma once
// Byte-level BPE: a pre-token's bytes start as one symbol each and the adjacent pair with the lowest merge
// rank is merged until no pair has a rank (ties go to the leftmost pair), as Hugging Face `tokenizers` does.
// Results for short pre-tokens are cached; the cache is sharded and locked, so encode() is thread-safe.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace bm::engine {

class BpeModel {
 public:
  // `vocab` maps token text (byte-level alphabet) to id; `merges` are pairs of token texts, highest priority
  // first. With `ignore_merges` a pre-token that is itself in the vocabulary is one token (Llama-3).
  static absl::StatusOr<std::unique_ptr<BpeModel>> create(
      const std::vector<std::pair<std::string, int32_t>>& vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges);

  // Appends the ids of one pre-token (raw bytes).
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // Token text, empty for an id outside the vocabulary.
  std::string_view id_to_token(int32_t id) const;
  bool has_id(int32_t id) const;
  int32_t num_tokens() const { return num_tokens_; }
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  struct CacheShard {
    absl::Mutex mutex;
    absl::flat_hash_map<std::string, std::vector<int32_t>> entries;
  };
  static constexpr size_t kNumCacheShards = 16;
  static constexpr size_t kMaxCacheEntriesPerShard = 8192;
  static constexpr size_t kMaxCachedPieceBytes = 64;

  BpeModel() = default;
  void merge_all(std::string_view piece, std::vector<int32_t>& out) const;
  const Merge* find_merge(int32_t left, int32_t right) const;

  bool ignore_merges_ = false;
  int32_t num_tokens_ = 0;
  std::vector<std::string> id_to_token_;
  std::vector<bool> present_;
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  absl::flat_hash_map<std::string, int32_t> bytes_to_id_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};
  mutable std::array<CacheShard, kNumCacheShards> cache_;
};

}  // namespace bm::engine
