#include "engine/backend/cpu/cpu_communicator.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"

namespace bm::engine::cpu {

std::vector<std::unique_ptr<CpuCommunicator>> CpuCommunicator::create_group(int32_t size) {
  BM_CHECK(size >= 1);
  auto group = std::make_shared<Group>(size);
  std::vector<std::unique_ptr<CpuCommunicator>> out;
  for (int32_t r = 0; r < size; ++r) out.push_back(std::unique_ptr<CpuCommunicator>(new CpuCommunicator(group, r)));
  return out;
}

void CpuCommunicator::barrier() {
  group_->sync.arrive_and_wait();
}

void CpuCommunicator::all_reduce_sum(float* data, int64_t count) {
  const int32_t n = size();
  if (n == 1) return;
  group_->slots[static_cast<size_t>(rank_)] = data;
  barrier();
  // Reduce-scatter: this rank sums its slice of every rank's buffer, in rank order...
  const int64_t per = (count + n - 1) / n;
  const int64_t first = std::min(count, per * rank_), last = std::min(count, first + per);
  partial_.assign(static_cast<size_t>(last - first), 0.0f);
  for (int32_t r = 0; r < n; ++r) {
    const float* src = group_->slots[static_cast<size_t>(r)];
    for (int64_t i = first; i < last; ++i) partial_[static_cast<size_t>(i - first)] += src[i];
  }
  barrier();  // every rank has read the inputs it needs before anyone overwrites them
  // ...then all-gathers it into every rank's buffer. With fewer elements than ranks a rank may own none (and an
  // empty vector's data() may be null, which memcpy must not be given even for zero bytes).
  if (!partial_.empty())
    for (int32_t r = 0; r < n; ++r)
      std::memcpy(group_->slots[static_cast<size_t>(r)] + first, partial_.data(), partial_.size() * sizeof(float));
  barrier();
}

void CpuCommunicator::all_gather(const float* in, float* out, int64_t count) {
  group_->slots[static_cast<size_t>(rank_)] = const_cast<float*>(in);
  barrier();
  if (count > 0)
    for (int32_t r = 0; r < size(); ++r)
      std::memcpy(out + int64_t{r} * count, group_->slots[static_cast<size_t>(r)],
                  static_cast<size_t>(count) * sizeof(float));
  barrier();
}

void CpuCommunicator::broadcast(float* data, int64_t count, int32_t root) {
  BM_CHECK(root >= 0 && root < size());
  group_->slots[static_cast<size_t>(rank_)] = data;
  barrier();
  if (rank_ != root && count > 0)
    std::memcpy(data, group_->slots[static_cast<size_t>(root)], static_cast<size_t>(count) * sizeof(float));
  barrier();
}

}  // namespace bm::engine::cpu
