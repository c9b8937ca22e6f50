#include "util/mutex.h"

#include <gtest/gtest.h>

#include <thread>

namespace llmasos {
namespace {

struct Counter {
  Mutex mu;
  CondVar cv;
  int value GUARDED_BY(mu) = 0;
};

TEST(MutexTest, CondVarWakesAWaiterWhenThePredicateHolds) {
  Counter c;
  std::thread producer([&c] {
    for (int i = 0; i < 100; ++i) {
      MutexLock lock(c.mu);
      ++c.value;
      c.cv.NotifyAll();
    }
  });
  {
    MutexLock lock(c.mu);
    c.cv.Wait(c.mu, [&c]() REQUIRES(c.mu) { return c.value == 100; });
    EXPECT_EQ(c.value, 100);
    EXPECT_FALSE(c.cv.WaitFor(c.mu, std::chrono::milliseconds(0), [&c]() REQUIRES(c.mu) { return c.value > 100; }));
  }
  producer.join();
}

}  // namespace
}  // namespace llmasos
