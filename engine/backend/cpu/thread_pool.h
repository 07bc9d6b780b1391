#pragma once
// A fixed set of worker threads for data-parallel loops. parallel_for hands out chunks of an index range from
// an atomic counter (uneven work such as attention over sequences of different lengths balances itself) and the
// calling thread works too. Idle threads poll briefly for the next job before sleeping (see thread_pool.cpp). One
// parallel_for runs at a time; it is called from one thread (the model runner). Workers may be pinned one per CPU
// (docs/engine-backend.md, "Threads"); the calling thread is not, since it is not the pool's to confine.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace bm::engine::cpu {

// CPUs this process may run on (its affinity mask: taskset, cgroup cpusets, docker --cpuset-cpus), at least 1.
// std::thread::hardware_concurrency() counts the machine's CPUs instead, which oversubscribes a confined process.
int32_t available_cpus();
// The CPU numbers of that mask, in increasing order.
std::vector<int32_t> affinity_cpus();

class ThreadPool {
 public:
  // num_threads counts the calling thread; 0 means available_cpus(). With pin_cpus (one per thread, the caller's
  // first), worker i runs on pin_cpus[i] alone; a CPU the kernel refuses leaves that worker unpinned.
  explicit ThreadPool(int32_t num_threads, const std::vector<int32_t>& pin_cpus = {});
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int32_t num_threads() const { return static_cast<int32_t>(workers_.size()) + 1; }

  // Calls body(begin, end) over [0, n) in chunks of `grain` indices (the last may be shorter), in parallel,
  // and returns when all chunks are done. Chunk boundaries do not depend on the thread count.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& body);

 private:
  void worker_loop(int32_t pin_cpu);
  void run_chunks();

  std::vector<std::thread> workers_;
  std::mutex mutex_;  // for sleeping and waking only; the job itself is published through generation_
  std::condition_variable wake_;
  std::condition_variable done_;
  bool stopping_ = false;                 // guarded by mutex_
  std::atomic<uint64_t> generation_{0};   // bumped for every job (seq_cst, as every atomic here)
  std::atomic<int32_t> busy_workers_{0};  // workers still in the current job
  std::atomic<int32_t> sleepers_{0};      // workers waiting on wake_ (the rest poll generation_)
  // The current job, written before generation_ is bumped.
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  std::atomic<int64_t> next_chunk_{0};
};

}  // namespace bm::engine::cpu
