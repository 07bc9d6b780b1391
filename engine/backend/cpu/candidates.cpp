#include "engine/backend/cpu/candidates.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace bm::engine::cpu {

std::vector<int32_t> best_ids(std::span<const float> values, size_t k, std::span<const int32_t> skip) {
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
    if (heap.size() < k) {
      heap.push_back(e);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (k > 0 && better(e, heap.front())) {
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
                    float* log_sum_exp, const float* inverse_temperatures, float* tempered_lse) {
  pool.parallel_for(rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<int32_t> skip;
    for (int64_t r = begin; r < end; ++r) {
      const std::span<const float> row(logits + r * vocab, static_cast<size_t>(vocab));
      if (log_sum_exp != nullptr) log_sum_exp[r] = row_log_sum_exp(row);
      skip.assign(listed_ids + listed_starts[r], listed_ids + listed_starts[r + 1]);
      for (int32_t j = listed_starts[r]; j < listed_starts[r + 1]; ++j) listed_logits[j] = row[listed_ids[j]];
      std::sort(skip.begin(), skip.end());
      if (tempered_lse != nullptr) tempered_lse[r] = unlisted_tempered_lse(row, skip, inverse_temperatures[r]);
      const std::vector<int32_t> best = best_ids(row, static_cast<size_t>(k), skip);
      for (int32_t i = 0; i < k; ++i) {
        const bool real = static_cast<size_t>(i) < best.size();
        cand_ids[r * k + i] = real ? best[i] : -1;
        cand_logits[r * k + i] = real ? row[best[i]] : -std::numeric_limits<float>::infinity();
      }
    }
  });
}

}  // namespace bm::engine::cpu
