#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace llmasos {
namespace {

TEST(ThreadPoolTest, RunsEveryTaskExactlyOnce) {
  for (size_t threads : {1u, 2u, 4u}) {
    ThreadPool pool(threads);
    for (size_t num_tasks : {0u, 1u, 3u, 1000u}) {
      std::vector<std::atomic<int>> hits(num_tasks);
      pool.Run(num_tasks, [&](size_t task_idx, size_t thread_idx) {
        ASSERT_LT(thread_idx, threads);
        hits[task_idx].fetch_add(1);
      });
      for (size_t i = 0; i < num_tasks; ++i) EXPECT_EQ(hits[i].load(), 1) << "task " << i;
    }
  }
}

TEST(ThreadPoolTest, ManyConsecutiveJobsDoNotLoseWork) {
  ThreadPool pool(3);
  std::atomic<long> sum{0};
  for (int job = 0; job < 2000; ++job) {
    pool.Run(7, [&](size_t task_idx, size_t) { sum.fetch_add(static_cast<long>(task_idx)); });
  }
  EXPECT_EQ(sum.load(), 2000L * 21);
}

// Alternating large and small jobs on more threads than cores: workers often wake up after
// their job is over, and a late claim must never run an index of the next job twice.
TEST(ThreadPoolTest, JobsOfVaryingSizeRunEachTaskOnceWithLateWorkers) {
  ThreadPool pool(4);
  for (int job = 0; job < 3000; ++job) {
    const size_t num_tasks = job % 2 == 0 ? 2 + job % 5 : 64;
    std::vector<std::atomic<int>> hits(num_tasks);
    pool.Run(num_tasks, [&](size_t task_idx, size_t) { hits[task_idx].fetch_add(1); });
    for (size_t i = 0; i < num_tasks; ++i) ASSERT_EQ(hits[i].load(), 1) << "job " << job << " task " << i;
  }
}

TEST(ThreadPoolTest, ParallelForCoversRangeWithGranuleAlignedChunks) {
  ThreadPool pool(2);
  for (size_t n : {1u, 31u, 32u, 33u, 1000u}) {
    std::vector<int> seen(n, 0);
    pool.ParallelFor(n, 8, [&](size_t begin, size_t end, size_t) {
      EXPECT_EQ(begin % 8, 0u);
      for (size_t i = begin; i < end; ++i) seen[i]++;
    }, 4);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i], 1) << "n=" << n << " i=" << i;
  }
}

}  // namespace
}  // namespace llmasos
