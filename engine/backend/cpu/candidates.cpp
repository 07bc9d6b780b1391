#include "engine/backend/cpu/candidates.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace bm::engine::cpu {

std::vector<int32_t> best_ids(std::span<const float> values, size_t k, std::span<const int32_t> skip,
                              std::span<const uint32_t> allowed) {
  using Entry = std::pair<float, int32_t>;
  auto better = [](const Entry& a, const Entry& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::vector<Entry> heap;  // a max-heap under `better`: its front is the worst of those kept
  heap.reserve(k);
  size_t next_skip = 0;
  for (size_t id = 0; id < values.size(); ++id) {
    if (next_skip < skip.size() && skip[next_skip] == static_cast<int32_t>(id)) {
      ++next_skip;
      continue;
    }
    const Entry e{values[id], static_cast<int32_t>(id)};
    // The value test first: it turns away almost every id of a long row, so the mask is read for the few others.
    if (heap.size() == k && (k == 0 || !better(e, heap.front()))) continue;
    if (!allowed.empty() && !mask_allows(allowed, static_cast<int64_t>(id))) continue;
    if (heap.size() < k) {
      heap.push_back(e);
      std::push_heap(heap.begin(), heap.end(), better);
    } else {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = e;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), better);
  std::vector<int32_t> ids(heap.size());
  for (size_t i = 0; i < heap.size(); ++i) ids[i] = heap[i].second;
  return ids;
}

namespace {

// out = row with the ids that `allowed` forbids at -inf. A grammar's mask is mostly whole words of 0 or of 1 bits (a
// handful of allowed tokens, or all but a handful), which are a fill or a copy.
void mask_row(std::span<const float> row, std::span<const uint32_t> allowed, std::vector<float>& out) {
  constexpr float kForbidden = -std::numeric_limits<float>::infinity();
  out.resize(row.size());
  for (size_t w = 0; w < allowed.size(); ++w) {
    const size_t first = w * 32;
    const size_t n = std::min<size_t>(32, row.size() - first);
    const uint32_t bits = allowed[w];
    if (bits == ~uint32_t{0}) {
      std::copy_n(row.begin() + static_cast<std::ptrdiff_t>(first), n,
                  out.begin() + static_cast<std::ptrdiff_t>(first));
    } else if (bits == 0) {
      std::fill_n(out.begin() + static_cast<std::ptrdiff_t>(first), n, kForbidden);
    } else {
      for (size_t j = 0; j < n; ++j) out[first + j] = (bits >> j) & 1u ? row[first + j] : kForbidden;
    }
  }
}

float row_log_sum_exp(std::span<const float> row) {
  const float max = *std::max_element(row.begin(), row.end());
  if (std::isinf(max) && max < 0) return max;
  double sum = 0;
  for (float l : row) sum += std::exp(static_cast<double>(l) - max);
  return static_cast<float>(std::log(sum) + max);
}

// log Σ exp(x * inverse_temperature) over the row without the (sorted) skipped ids, in double.
float unlisted_tempered_lse(std::span<const float> row, std::span<const int32_t> skip, float inverse_temperature) {
  float max = -std::numeric_limits<float>::infinity();
  size_t next = 0;
  for (size_t id = 0; id < row.size(); ++id) {
    if (next < skip.size() && skip[next] == static_cast<int32_t>(id)) {
      ++next;
      continue;
    }
    max = std::max(max, row[id] * inverse_temperature);
  }
  if (std::isinf(max) && max < 0) return max;
  double sum = 0;
  next = 0;
  for (size_t id = 0; id < row.size(); ++id) {
    if (next < skip.size() && skip[next] == static_cast<int32_t>(id)) {
      ++next;
      continue;
    }
    sum += std::exp(static_cast<double>(row[id] * inverse_temperature) - max);
  }
  return static_cast<float>(std::log(sum) + max);
}

}  // namespace

void top_candidates(ThreadPool& pool, const float* logits, int64_t rows, int64_t vocab, const int32_t* listed_starts,
                    const int32_t* listed_ids, int32_t k, float* listed_logits, int32_t* cand_ids, float* cand_logits,
                    float* log_sum_exp, const float* inverse_temperatures, float* tempered_lse,
                    const int32_t* mask_rows, const uint32_t* masks) {
  const size_t words = static_cast<size_t>((vocab + 31) / 32);
  pool.parallel_for(rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> skip;
    std::vector<float> constrained;
    for (int64_t r = begin; r < end; ++r) {
      std::span<const float> row(logits + r * vocab, static_cast<size_t>(vocab));
      std::span<const uint32_t> allowed;
      if (mask_rows != nullptr && mask_rows[r] >= 0) {
        // The constrained row, forbidden ids at -inf, is what every result below describes; the forbidden ids
        // also take no part in the selection (else a mask allowing fewer than k ids would pad with them).
        allowed = std::span(masks + static_cast<size_t>(mask_rows[r]) * words, words);
        mask_row(row, allowed, constrained);
        row = constrained;
      }
      if (log_sum_exp != nullptr) log_sum_exp[r] = row_log_sum_exp(row);
      skip.assign(listed_ids + listed_starts[r], listed_ids + listed_starts[r + 1]);
      for (int32_t j = listed_starts[r]; j < listed_starts[r + 1]; ++j) listed_logits[j] = row[listed_ids[j]];
      std::sort(skip.begin(), skip.end());
      if (tempered_lse != nullptr) tempered_lse[r] = unlisted_tempered_lse(row, skip, inverse_temperatures[r]);
      const std::vector<int32_t> best = best_ids(row, static_cast<size_t>(k), skip, allowed);
      for (int32_t i = 0; i < k; ++i) {
        const bool real = static_cast<size_t>(i) < best.size();
        cand_ids[r * k + i] = real ? best[i] : -1;
        cand_logits[r * k + i] = real ? row[best[i]] : -std::numeric_limits<float>::infinity();
      }
    }
  });
}

}  // namespace bm::engine::cpu
