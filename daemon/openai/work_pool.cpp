#include "daemon/openai/work_pool.h"

#include <algorithm>
#include <exception>

#include <spdlog/spdlog.h>

namespace bm::daemon::openai {

WorkPool::WorkPool(int num_threads) {
  for (int i = 0; i < std::max(1, num_threads); ++i) threads_.emplace_back([this] { run(); });
}

WorkPool::~WorkPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WorkPool::post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(std::move(job));
  }
  wake_.notify_one();
}

size_t WorkPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return jobs_.size();
}

void WorkPool::run() {
  while (true) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, and nothing left
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    // A worker thread never lets an exception end the process (DESIGN §9).
    try {
      job();
    } catch (const std::exception& e) {
      spdlog::error("request worker: job threw: {}", e.what());
    } catch (...) {
      spdlog::error("request worker: job threw a non-standard exception");
    }
  }
}

}  // namespace bm::daemon::openai
