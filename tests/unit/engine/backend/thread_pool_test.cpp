#include "engine/backend/cpu/thread_pool.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace bm::engine::cpu {
namespace {

// The default thread count follows the affinity mask (what taskset or a cpuset grants), not the machine.
TEST(ThreadPoolTest, DefaultsToTheCpusOfTheAffinityMask) {
  cpu_set_t original;
  ASSERT_EQ(sched_getaffinity(0, sizeof(original), &original), 0);
  EXPECT_EQ(available_cpus(), CPU_COUNT(&original));
  int first = 0;
  while (!CPU_ISSET(first, &original)) ++first;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  EXPECT_EQ(available_cpus(), 1);
  EXPECT_EQ(ThreadPool(0).num_threads(), 1);
  ASSERT_EQ(sched_setaffinity(0, sizeof(original), &original), 0);
}

// Pinned workers run on their one CPU each; the calling thread keeps the mask it had. Every chunk waits (bounded)
// until all three threads hold one, so each worker reports from inside a job.
TEST(ThreadPoolTest, PinnedWorkersRunOnTheirCpuAndTheCallerStaysFree) {
  const std::vector<int32_t> mask = affinity_cpus();
  ASSERT_EQ(static_cast<int32_t>(mask.size()), available_cpus());
  const std::vector<int32_t> pins = {mask[0], mask[mask.size() > 1 ? 1 : 0], mask.back()};
  ThreadPool pool(3, pins);
  std::mutex mutex;
  std::map<std::thread::id, std::vector<int32_t>> seen;
  pool.parallel_for(3, 1, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      seen[std::this_thread::get_id()] = affinity_cpus();  // of the calling thread
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard<std::mutex> lock(mutex);
        if (seen.size() == 3) break;
      }
      std::this_thread::yield();
    }
  });
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen.at(std::this_thread::get_id()), mask);
  std::vector<int32_t> worker_cpus;
  for (const auto& [id, cpus] : seen) {
    if (id == std::this_thread::get_id()) continue;
    ASSERT_EQ(cpus.size(), 1u);
    worker_cpus.push_back(cpus[0]);
  }
  std::sort(worker_cpus.begin(), worker_cpus.end());
  std::vector<int32_t> expected = {pins[1], pins[2]};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(worker_cpus, expected);
}

// Without a CPU per thread nobody is pinned.
TEST(ThreadPoolTest, TooFewPinsPinNobody) {
  const std::vector<int32_t> mask = affinity_cpus();
  ThreadPool pool(3, {mask[0]});
  std::atomic<bool> all_free{true};
  pool.parallel_for(64, 1, [&](int64_t, int64_t) {
    if (affinity_cpus() != mask) all_free = false;
  });
  EXPECT_TRUE(all_free);
}

TEST(ThreadPoolTest, VisitsEveryIndexOnceInGrainSizedChunks) {
  for (int32_t threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      std::vector<std::atomic<int>> visits(static_cast<size_t>(n));
      std::atomic<int> bad_chunks{0};
      pool.parallel_for(n, 3, [&](int64_t begin, int64_t end) {
        if (begin % 3 != 0 || end - begin > 3 || end <= begin) bad_chunks.fetch_add(1);
        for (int64_t i = begin; i < end; ++i) visits[static_cast<size_t>(i)].fetch_add(1);
      });
      EXPECT_EQ(bad_chunks.load(), 0);
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(visits[static_cast<size_t>(i)].load(), 1) << i;
    }
  }
}

TEST(ThreadPoolTest, RunsManyJobsBackToBack) {
  ThreadPool pool(4);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 2000; ++job) {
    pool.parallel_for(64, 1, [&](int64_t begin, int64_t end) { total.fetch_add(end - begin); });
  }
  EXPECT_EQ(total.load(), 2000 * 64);
}

}  // namespace
}  // namespace bm::engine::cpu
