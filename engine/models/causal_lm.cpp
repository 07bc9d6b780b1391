#include "engine/models/causal_lm.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/check.h"
#include "engine/backend/cpu/candidates.h"

namespace bm::engine {

void select_candidates(std::span<const float> logits, int32_t vocab_size, const CandidateRequest& request,
                       Candidates& out) {
  const int64_t rows = static_cast<int64_t>(logits.size()) / vocab_size;
  BM_CHECK(static_cast<int64_t>(request.listed_starts.size()) == rows + 1);
  BM_CHECK(request.listed_starts.back() == static_cast<int32_t>(request.listed_ids.size()));
  out.k = request.k;
  out.ids.assign(static_cast<size_t>(rows * request.k), -1);
  out.logits.assign(out.ids.size(), 0.0f);
  out.listed_logits.assign(request.listed_ids.size(), 0.0f);
  out.log_sum_exp.assign(request.log_sum_exp ? static_cast<size_t>(rows) : 0, 0.0f);
  const bool wants_mass = !request.inverse_temperatures.empty();
  BM_CHECK(!wants_mass || static_cast<int64_t>(request.inverse_temperatures.size()) == rows);
  out.tempered_lse.assign(wants_mass ? static_cast<size_t>(rows) : 0, 0.0f);
  const bool masked = !request.mask_rows.empty();
  BM_CHECK(!masked || static_cast<int64_t>(request.mask_rows.size()) == rows);
  const int64_t num_masks = static_cast<int64_t>(request.masks.size()) / mask_words(vocab_size);
  BM_CHECK(static_cast<int64_t>(request.masks.size()) == num_masks * mask_words(vocab_size));
  for (int32_t m : request.mask_rows) BM_CHECK(m >= -1 && m < num_masks);
  cpu::ThreadPool caller_only(1);
  cpu::top_candidates(caller_only, logits.data(), rows, vocab_size, request.listed_starts.data(),
                      request.listed_ids.data(), request.k, out.listed_logits.data(), out.ids.data(), out.logits.data(),
                      request.log_sum_exp ? out.log_sum_exp.data() : nullptr,
                      wants_mass ? request.inverse_temperatures.data() : nullptr,
                      wants_mass ? out.tempered_lse.data() : nullptr, masked ? request.mask_rows.data() : nullptr,
                      masked ? request.masks.data() : nullptr);
}

absl::Status CausalLM::forward_candidates(const ForwardBatch& batch, const CandidateRequest& request, Candidates& out) {
  if (absl::Status s = forward(batch, host_logits_); !s.ok()) return s;
  select_candidates(host_logits_, info().vocab_size, request, out);
  return absl::OkStatus();
}

absl::Status CausalLM::begin_forward(const ForwardBatch& batch) {
  begun_ = &batch;
  return absl::OkStatus();
}

absl::Status CausalLM::finish_logits(std::vector<float>& logits) {
  if (begun_ == nullptr) return absl::FailedPreconditionError("finish_logits without a begin_forward");
  const ForwardBatch* batch = std::exchange(begun_, nullptr);
  return forward(*batch, logits);
}

absl::Status CausalLM::finish_candidates(const CandidateRequest& request, Candidates& out) {
  if (begun_ == nullptr) return absl::FailedPreconditionError("finish_candidates without a begin_forward");
  const ForwardBatch* batch = std::exchange(begun_, nullptr);
  return forward_candidates(*batch, request, out);
}

absl::Status CausalLM::last_logits_rows(std::span<const int32_t> rows, std::vector<float>& out) {
  const size_t vocab = static_cast<size_t>(info().vocab_size);
  out.resize(rows.size() * vocab);
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t row = static_cast<size_t>(rows[i]);
    if (rows[i] < 0 || (row + 1) * vocab > host_logits_.size())
      return absl::InvalidArgumentError(absl::StrCat("row ", rows[i], " is not among the last step's logits"));
    std::copy_n(host_logits_.begin() + static_cast<std::ptrdiff_t>(row * vocab), vocab,
                out.begin() + static_cast<std::ptrdiff_t>(i * vocab));
  }
  return absl::OkStatus();
}

absl::Status CausalLM::enable_decode_graphs(int32_t) {
  return absl::UnimplementedError(absl::StrCat("the ", backend_name(), " model cannot record decode steps"));
}

}  // namespace bm::engine

namespace bm::engine {

uint64_t SequenceMedia::hash_of_range(int32_t first, int32_t count) const {
  uint64_t h = 0;
  for (const Item& item : items) {
    if (item.start >= first + count || item.start + item.count <= first) continue;
    // Order-dependent combination (boost's hash_combine constant): the same images in another order differ.
    h ^= item.hash + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  }
  return h;
}

absl::Status CausalLM::media_support() const {
  return absl::FailedPreconditionError(
      absl::StrCat("model architecture ", info().architecture, " takes text only (no vision tower)"));
}

absl::StatusOr<std::shared_ptr<SequenceMedia>> CausalLM::prepare_media(std::span<const int32_t> prompt_ids,
                                                                       const PromptMedia* media) const {
  (void)prompt_ids;
  if (media == nullptr || media->items.empty()) return std::shared_ptr<SequenceMedia>();
  return media_support();
}

absl::StatusOr<std::vector<std::vector<float>>> CausalLM::encode_media(std::span<const MediaItem* const> items) {
  (void)items;
  return media_support();
}

}  // namespace bm::engine
