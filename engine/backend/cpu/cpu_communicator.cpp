#include "engine/backend/cpu/cpu_communicator.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/check.h"

namespace bm::engine::cpu {

std::vector<std::unique_ptr<CpuCommunicator>> CpuCommunicator::create_group(int32_t size) {
  BM_CHECK(size >= 1);
  auto group = std::make_shared<Group>(size);
  std::vector<std::unique_ptr<CpuCommunicator>> out;
  for (int32_t r = 0; r < size; ++r) out.push_back(std::unique_ptr<CpuCommunicator>(new CpuCommunicator(group, r)));
  return out;
}

void CpuCommunicator::abort(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(group_->reason_mutex);
    if (group_->aborted.load()) return;
    group_->reason = absl::StrCat("rank ", rank_, " of ", size(), " failed: ", reason);
    group_->aborted.store(true);
  }
  // Wake every waiter: they see the phase move, then the flag.
  group_->phase.fetch_add(1);
  group_->phase.notify_all();
}

std::string CpuCommunicator::abort_reason() const {
  std::lock_guard<std::mutex> lock(group_->reason_mutex);
  return group_->reason;
}

bool CpuCommunicator::barrier() {
  Group& g = *group_;
  if (g.aborted.load()) return false;
  // Read the phase before arriving: the last arrival advances it only after every rank has arrived. aborted is
  // set before abort() advances the phase, so a waiter that read the phase after an abort sees the flag below.
  const uint32_t phase = g.phase.load();
  if (g.arrived.fetch_add(1) + 1 == size()) {
    g.arrived.store(0);
    g.phase.fetch_add(1);
    g.phase.notify_all();
  } else {
    while (g.phase.load() == phase && !g.aborted.load()) g.phase.wait(phase);
  }
  return !g.aborted.load();
}

bool CpuCommunicator::all_reduce_sum(float* data, int64_t count) {
  const int32_t n = size();
  if (n == 1) return true;
  if (group_->aborted.load()) return false;
  group_->slots[static_cast<size_t>(rank_)] = data;
  if (!barrier()) return false;
  // Reduce-scatter: this rank sums its slice of every rank's buffer, in rank order...
  const int64_t per = (count + n - 1) / n;
  const int64_t first = std::min(count, per * rank_), last = std::min(count, first + per);
  partial_.assign(static_cast<size_t>(last - first), 0.0f);
  for (int32_t r = 0; r < n; ++r) {
    const float* src = group_->slots[static_cast<size_t>(r)];
    for (int64_t i = first; i < last; ++i) partial_[static_cast<size_t>(i - first)] += src[i];
  }
  if (!barrier()) return false;  // every rank has read the inputs it needs before anyone overwrites them
  // ...then all-gathers it into every rank's buffer. With fewer elements than ranks a rank may own none (and an
  // empty vector's data() may be null, which memcpy must not be given even for zero bytes).
  if (!partial_.empty())
    for (int32_t r = 0; r < n; ++r)
      std::memcpy(group_->slots[static_cast<size_t>(r)] + first, partial_.data(), partial_.size() * sizeof(float));
  return barrier();
}

bool CpuCommunicator::all_gather(const float* in, float* out, int64_t count) {
  if (group_->aborted.load()) return false;
  group_->slots[static_cast<size_t>(rank_)] = const_cast<float*>(in);
  if (!barrier()) return false;
  if (count > 0)
    for (int32_t r = 0; r < size(); ++r)
      std::memcpy(out + int64_t{r} * count, group_->slots[static_cast<size_t>(r)],
                  static_cast<size_t>(count) * sizeof(float));
  return barrier();
}

bool CpuCommunicator::broadcast(float* data, int64_t count, int32_t root) {
  BM_CHECK(root >= 0 && root < size());
  if (group_->aborted.load()) return false;
  group_->slots[static_cast<size_t>(rank_)] = data;
  if (!barrier()) return false;
  if (rank_ != root && count > 0)
    std::memcpy(data, group_->slots[static_cast<size_t>(root)], static_cast<size_t>(count) * sizeof(float));
  return barrier();
}

}  // namespace bm::engine::cpu
