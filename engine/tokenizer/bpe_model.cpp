#include "engine/tokenizer/bpe_model.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "engine/tokenizer/byte_level.h"

namespace bm::engine {
namespace {

// Debian's abseil has its own string_view, which its string-keyed maps take for heterogeneous lookup.
absl::string_view key_of(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool removed;
};

struct Candidate {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
};

// std heap functions build a max-heap; "greater" puts the lowest rank, then the leftmost pair, on top.
bool lower_priority(const Candidate& a, const Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::create(
    const std::vector<std::pair<std::string, int32_t>>& vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  model->ignore_merges_ = ignore_merges;
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab) {
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat("vocabulary token '", token, "' has a negative id"));
    max_id = std::max(max_id, id);
  }
  model->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  model->present_.resize(static_cast<size_t>(max_id + 1), false);
  model->token_to_id_.reserve(vocab.size());
  model->bytes_to_id_.reserve(vocab.size());
  for (const auto& [token, id] : vocab) {
    model->id_to_token_[id] = token;
    model->present_[id] = true;
    model->token_to_id_[token] = id;
    if (std::optional<std::string> bytes = byte_level::token_to_bytes(token)) model->bytes_to_id_[*bytes] = id;
  }
  model->num_tokens_ = static_cast<int32_t>(model->token_to_id_.size());
  for (int b = 0; b < 256; ++b) {
    const std::string token = byte_level::bytes_to_token(std::string(1, static_cast<char>(b)));
    auto it = model->token_to_id_.find(token);
    if (it == model->token_to_id_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the vocabulary has no token for byte ", b, " ('", token, "'); not a byte-level BPE"));
    }
    model->byte_ids_[b] = it->second;
  }
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto l = model->token_to_id_.find(left);
    auto r = model->token_to_id_.find(right);
    auto merged = model->token_to_id_.find(absl::StrCat(left, right));
    if (l == model->token_to_id_.end() || r == model->token_to_id_.end() || merged == model->token_to_id_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " ('", left, " ", right, "') names a token that is not in the vocabulary"));
    }
    // A repeated pair keeps its last rank, as in Hugging Face's map construction.
    model->merges_[pair_key(l->second, r->second)] = Merge{static_cast<int32_t>(rank), merged->second};
  }
  return model;
}

const BpeModel::Merge* BpeModel::find_merge(int32_t left, int32_t right) const {
  auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::merge_all(std::string_view piece, std::vector<int32_t>& out) const {
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  const auto n = static_cast<int32_t>(piece.size());
  symbols.clear();
  heap.clear();
  for (int32_t i = 0; i < n; ++i) {
    symbols.push_back(Symbol{byte_ids_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1, false});
  }
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const Merge* m = find_merge(symbols[i].id, symbols[i + 1].id)) heap.push_back({m->rank, i, m->new_id});
  }
  std::make_heap(heap.begin(), heap.end(), lower_priority);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.removed || left.next < 0) continue;
    // An entry is stale when either side has changed since it was queued; like Hugging Face, compare the
    // token the pair would now make.
    const Merge* current = find_merge(left.id, symbols[left.next].id);
    if (current == nullptr || current->new_id != top.new_id) continue;
    Symbol& right = symbols[left.next];
    left.id = top.new_id;
    right.removed = true;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const Merge* m = find_merge(symbols[left.prev].id, left.id)) {
        heap.push_back({m->rank, left.prev, m->new_id});
        std::push_heap(heap.begin(), heap.end(), lower_priority);
      }
    }
    if (left.next >= 0) {
      if (const Merge* m = find_merge(left.id, symbols[left.next].id)) {
        heap.push_back({m->rank, top.pos, m->new_id});
        std::push_heap(heap.begin(), heap.end(), lower_priority);
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_ || piece.size() == 1) {
    auto it = bytes_to_id_.find(key_of(piece));
    if (it != bytes_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (piece.size() > kMaxCachedPieceBytes) {
    merge_all(piece, out);
    return;
  }
  CacheShard& shard = cache_[absl::Hash<absl::string_view>{}(key_of(piece)) % kNumCacheShards];
  {
    absl::ReaderMutexLock lock(&shard.mutex);
    auto it = shard.entries.find(key_of(piece));
    if (it != shard.entries.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_all(piece, out);
  absl::MutexLock lock(&shard.mutex);
  if (shard.entries.size() >= kMaxCacheEntriesPerShard) shard.entries.clear();
  shard.entries.emplace(piece, std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = token_to_id_.find(key_of(token));
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

bool BpeModel::has_id(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < present_.size() && present_[id];
}

std::string_view BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size()) return {};
  return id_to_token_[id];
}

}  // namespace bm::engine
