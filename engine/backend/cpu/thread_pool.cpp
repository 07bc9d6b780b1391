#include "engine/backend/cpu/thread_pool.h"

#include <algorithm>

namespace bm::engine::cpu {

ThreadPool::ThreadPool(int32_t num_threads) {
  if (num_threads <= 0) num_threads = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
  for (int32_t i = 1; i < num_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::run_chunks() {
  const int64_t num_chunks = (n_ + grain_ - 1) / grain_;
  for (int64_t chunk = next_chunk_.fetch_add(1); chunk < num_chunks; chunk = next_chunk_.fetch_add(1)) {
    const int64_t begin = chunk * grain_;
    (*body_)(begin, std::min(n_, begin + grain_));
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
    }
    run_chunks();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_workers_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  // A single chunk is not worth waking anyone for.
  if (workers_.empty() || n <= grain) {
    for (int64_t begin = 0; begin < n; begin += grain) body(begin, std::min(n, begin + grain));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    body_ = &body;
    n_ = n;
    grain_ = grain;
    next_chunk_.store(0);
    busy_workers_ = static_cast<int32_t>(workers_.size());
    ++generation_;
  }
  wake_.notify_all();
  run_chunks();
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [&] { return busy_workers_ == 0; });
  body_ = nullptr;
}

}  // namespace bm::engine::cpu
