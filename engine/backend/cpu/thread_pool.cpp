#include "engine/backend/cpu/thread_pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>

namespace bm::engine::cpu {
namespace {

// How long a thread polls for the next job (or for the last worker) before it sleeps on the condition variable.
// A decode step issues a few hundred small jobs back to back; waking a sleeping thread costs tens of microseconds
// on a VM, longer than many of those jobs, while polling for a few of them costs little.
constexpr int kSpinIterations = 1 << 12;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace


std::vector<int32_t> affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int32_t> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int32_t cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    }
  }
  return cpus;
}

int32_t available_cpus() {
  const std::vector<int32_t> cpus = affinity_cpus();
  if (!cpus.empty()) return static_cast<int32_t>(cpus.size());
  return static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
}

ThreadPool::ThreadPool(int32_t num_threads, const std::vector<int32_t>& pin_cpus) {
  if (num_threads <= 0) num_threads = available_cpus();
  const bool pin = static_cast<int32_t>(pin_cpus.size()) >= num_threads;
  for (int32_t i = 1; i < num_threads; ++i) {
    const int32_t cpu = pin ? pin_cpus[static_cast<size_t>(i)] : -1;
    workers_.emplace_back([this, cpu] { worker_loop(cpu); });
  }
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

void ThreadPool::worker_loop(int32_t pin_cpu) {
  if (pin_cpu >= 0 && pin_cpu < CPU_SETSIZE) {
    // A worker that stays on one core keeps its share of the weights' cache lines and TLB entries there, and is
    // not moved next to another worker mid-step. Refusal (a mask changed since) just leaves it to the scheduler.
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(pin_cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
  }
  uint64_t seen = 0;
  while (true) {
    for (int i = 0; i < kSpinIterations && generation_.load() == seen; ++i) cpu_relax();
    if (generation_.load() == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      ++sleepers_;  // seq_cst with the load in the predicate: parallel_for either sees us or we see its job
      wake_.wait(lock, [&] { return stopping_ || generation_.load() != seen; });
      --sleepers_;
      if (stopping_) return;
    }
    seen = generation_.load();
    run_chunks();
    if (busy_workers_.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller checks busy_workers_ under it before sleeping
      done_.notify_one();
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
  body_ = &body;
  n_ = n;
  grain_ = grain;
  next_chunk_.store(0);
  busy_workers_.store(static_cast<int32_t>(workers_.size()));
  generation_.fetch_add(1);  // publishes the job to polling workers
  if (sleepers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    wake_.notify_all();
  }
  run_chunks();
  for (int i = 0; i < kSpinIterations && busy_workers_.load() > 0; ++i) cpu_relax();
  if (busy_workers_.load() > 0) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_workers_.load() == 0; });
  }
  body_ = nullptr;
}

}  // namespace bm::engine::cpu
