#pragma once
// A few threads for request work that may take long (JSON parsing of large bodies, chat templates,
// tokenization): it runs here rather than on the HTTP I/O threads, so /health and small requests keep
// answering while a large prompt is prepared. The queue needs no bound of its own: each connection has at most
// one request in handling, so it is bounded by the connection limit.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace bm::daemon::openai {

class WorkPool {
 public:
  explicit WorkPool(int num_threads);
  ~WorkPool();  // runs what is queued, then joins
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // `job` must not throw; one that does is logged and dropped (its exchange is left to the caller's guard).
  void post(std::function<void()> job);
  size_t queued() const;

 private:
  void run();

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace bm::daemon::openai
