#include "engine/backend/cpu/thread_pool.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
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
