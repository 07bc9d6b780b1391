#pragma once
// Which decode steps run as recorded step graphs (Backend::begin_capture / replay; CUDA graphs on the GPU), and
// the graphs recorded so far. A graph fixes every shape and scalar argument of a step, so a decode step is
// padded up to a graph's shape: its batch to the next of a few batch sizes (1, 2, 4, 8, then multiples of 8, as
// vLLM), and its longest sequence to the next of a few context bounds (1k, 4k, 16k, … tokens, the model's
// context last), which size the attention launch and the block tables. Padding rows attend to one position of
// block 0 and store nothing (slot -1); their logits are never read.
//
// Graphs are recorded at load for the common shapes (CausalLM::capture_decode_graphs: every batch size, shortest
// context bound first, within a time budget), and lazily for the rest, the first time a shape is seen: that step
// runs uncaptured (which also grows every scratch buffer to the shape), then its ops are recorded without running. Only decode steps qualify: every
// sequence brings one new token and wants its logits.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/models/causal_lm.h"
#include "engine/models/step_inputs.h"

namespace bm::engine {

struct DecodeGraphShape {
  int32_t num_seqs = 0;     // padded batch
  int32_t max_seq_len = 0;  // context bound: a multiple of kBlockSize
  int32_t blocks_per_seq() const { return max_seq_len / kBlockSize; }
  auto operator<=>(const DecodeGraphShape&) const = default;
};

// A decode step's inputs padded to a graph's shape (what is uploaded before the replay).
struct PaddedDecodeInputs {
  std::vector<int32_t> token_ids;     // num_seqs; padding 0
  std::vector<int32_t> positions;     // padding 0
  std::vector<int32_t> slot_mapping;  // padding -1: store_kv skips it
  std::vector<int32_t> query_starts;  // 0, 1, …, num_seqs
  std::vector<int32_t> seq_lens;      // padding 1
  std::vector<int32_t> block_tables;  // num_seqs × blocks_per_seq; padding block 0
  std::vector<int32_t> logits_rows;   // 0, 1, …, num_seqs - 1
};

class DecodeGraphs {
 public:
  // Graphs for up to max_seqs sequences of up to max_seq_len tokens (the model's context).
  DecodeGraphs(int32_t max_seqs, int32_t max_seq_len);

  int32_t max_seqs() const { return max_seqs_; }
  int32_t max_blocks_per_seq() const { return bounds_.back() / kBlockSize; }
  const std::vector<int32_t>& batch_sizes() const { return batch_sizes_; }
  const std::vector<int32_t>& context_bounds() const { return bounds_; }

  // The shape a step runs as, or nothing when it must run uncaptured (not a decode step, too many sequences,
  // graphs disabled).
  std::optional<DecodeGraphShape> shape_for(const StepInputs& step) const;
  static PaddedDecodeInputs pad(const StepInputs& step, const std::vector<int32_t>& token_ids, DecodeGraphShape shape);

  const StepGraph* find(DecodeGraphShape shape) const;
  void add(DecodeGraphShape shape, std::unique_ptr<StepGraph> graph);
  // Drops every graph (they point at buffers about to be replaced, e.g. a new KV cache).
  void clear() { graphs_.clear(); }
  // After a failed capture: every later step runs uncaptured.
  void disable(std::string why);
  void count_replay() { ++stats_.replayed; }
  void count_eager() { ++stats_.eager; }
  void count_captured_at_load() { ++stats_.captured_at_load; }
  void set_load_capture_ms(double ms) { stats_.load_capture_ms = ms; }
  const DecodeGraphStats& stats() const { return stats_; }

 private:
  int32_t max_seqs_;
  std::vector<int32_t> batch_sizes_;
  std::vector<int32_t> bounds_;
  std::map<DecodeGraphShape, std::unique_ptr<StepGraph>> graphs_;
  DecodeGraphStats stats_;
};

}  // namespace bm::engine
