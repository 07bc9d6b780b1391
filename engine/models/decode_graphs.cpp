#include "engine/models/decode_graphs.h"

#include <algorithm>

#include "common/check.h"

namespace bm::engine {
namespace {

constexpr int32_t kFirstContextBound = 1024;

int32_t round_up_to_block(int32_t tokens) {
  return (tokens + kBlockSize - 1) / kBlockSize * kBlockSize;
}

}  // namespace

DecodeGraphs::DecodeGraphs(int32_t max_seqs, int32_t max_seq_len) : max_seqs_(max_seqs) {
  BM_CHECK(max_seqs >= 1 && max_seq_len >= 1);
  // Few sizes below 8 (each doubles the work of the one before), then every multiple of 8: a step is padded by
  // at most 7 rows, which the GEMMs of a decode step (bound by reading the weights) barely notice.
  for (int32_t n : {1, 2, 4})
    if (n < max_seqs) batch_sizes_.push_back(n);
  for (int32_t n = 8; n < max_seqs; n += 8) batch_sizes_.push_back(n);
  batch_sizes_.push_back(max_seqs);
  // Context bounds grow 4× at a time: a short context never pays for attention splits and block tables sized for
  // the longest one.
  const int32_t longest = round_up_to_block(max_seq_len);
  for (int64_t bound = kFirstContextBound; bound < longest; bound *= 4) bounds_.push_back(static_cast<int32_t>(bound));
  bounds_.push_back(longest);
}

std::optional<DecodeGraphShape> DecodeGraphs::shape_for(const StepInputs& step) const {
  if (!stats_.disabled.empty() || step.num_seqs < 1 || step.num_seqs > max_seqs_) return std::nullopt;
  // A decode step: one new token per sequence, and every sequence wants its logits.
  if (step.num_tokens != step.num_seqs || static_cast<int32_t>(step.logits_rows.size()) != step.num_seqs)
    return std::nullopt;
  const auto batch = std::lower_bound(batch_sizes_.begin(), batch_sizes_.end(), step.num_seqs);
  const auto bound = std::lower_bound(bounds_.begin(), bounds_.end(), step.max_seq_len);
  if (bound == bounds_.end()) return std::nullopt;
  return DecodeGraphShape{*batch, *bound};
}

PaddedDecodeInputs DecodeGraphs::pad(const StepInputs& step, const std::vector<int32_t>& token_ids,
                                     DecodeGraphShape shape) {
  BM_CHECK(step.num_tokens == step.num_seqs && shape.num_seqs >= step.num_seqs);
  BM_CHECK(static_cast<int32_t>(token_ids.size()) == step.num_tokens);
  BM_CHECK(step.max_blocks_per_seq <= shape.blocks_per_seq());
  const size_t n = static_cast<size_t>(shape.num_seqs);
  const size_t width = static_cast<size_t>(shape.blocks_per_seq());
  PaddedDecodeInputs in;
  in.token_ids.assign(n, 0);
  in.positions.assign(n, 0);
  in.slot_mapping.assign(n, -1);
  in.seq_lens.assign(n, 1);
  in.block_tables.assign(n * width, 0);
  in.query_starts.resize(n + 1);
  in.logits_rows.resize(n);
  for (size_t i = 0; i <= n; ++i) in.query_starts[i] = static_cast<int32_t>(i);
  for (size_t i = 0; i < n; ++i) in.logits_rows[i] = static_cast<int32_t>(i);
  const size_t from_width = static_cast<size_t>(step.max_blocks_per_seq);
  for (size_t s = 0; s < static_cast<size_t>(step.num_seqs); ++s) {
    in.token_ids[s] = token_ids[s];
    in.positions[s] = step.positions[s];
    in.slot_mapping[s] = step.slot_mapping[s];
    in.seq_lens[s] = step.seq_lens[s];
    std::copy_n(step.block_tables.begin() + static_cast<std::ptrdiff_t>(s * from_width), from_width,
                in.block_tables.begin() + static_cast<std::ptrdiff_t>(s * width));
  }
  return in;
}

const StepGraph* DecodeGraphs::find(DecodeGraphShape shape) const {
  const auto it = graphs_.find(shape);
  return it == graphs_.end() ? nullptr : it->second.get();
}

void DecodeGraphs::add(DecodeGraphShape shape, std::unique_ptr<StepGraph> graph) {
  BM_CHECK(graph != nullptr);
  graphs_[shape] = std::move(graph);
  ++stats_.captured;
}

void DecodeGraphs::disable(std::string why) {
  graphs_.clear();
  stats_.disabled = std::move(why);
}

}  // namespace bm::engine
