#include "util/thread_pool.h"

#include <immintrin.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>

#include "util/logging.h"

namespace llmasos {

bool SetThisThreadNice(int nice) {
  // On Linux a nice value belongs to a thread, named by its thread id.
  return setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) == 0;
}

namespace {

// How long a worker spins after a job before it sleeps: long enough to span the gap between
// two matrix multiplies of one forward pass, short enough not to burn a core between tokens.
// Measured in time, not pause instructions: one pause takes 10 cycles on some CPUs and 140 on
// others (Skylake and later).
constexpr auto kSpinTime = std::chrono::microseconds(100);
// The caller's wait for tasks running on workers: after this many pauses it yields its core,
// so on an oversubscribed machine the worker it waits for can run.
constexpr int kCallerSpinsBeforeYield = 2000;

constexpr uint64_t kIndexMask = 0xFFFFFFFFu;

}  // namespace

ThreadPool::ThreadPool(size_t num_threads) {
  CHECK_GE(num_threads, 1u);
  workers_.reserve(num_threads - 1);
  for (size_t i = 1; i < num_threads; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

size_t ThreadPool::DefaultNumThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

void ThreadPool::DoTasks(size_t thread_idx) {
  for (;;) {
    const uint64_t job = job_.fetch_add(1, std::memory_order_acq_rel);
    const size_t task_idx = job & kIndexMask;
    if (task_idx >= (job >> 32)) return;
    fn_(ctx_, task_idx, thread_idx);
    num_done_tasks_.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::RunImpl(size_t num_tasks, TaskFn fn, const void* ctx) {
  if (num_tasks == 0) return;
  if (workers_.empty() || num_tasks == 1) {
    for (size_t i = 0; i < num_tasks; ++i) fn(ctx, i, 0);
    return;
  }
  // Leaves room for the stale claims of late workers (at most one each per job).
  CHECK_LT(num_tasks, kIndexMask / 2) << "too many tasks for one Run";
  fn_ = fn;
  ctx_ = ctx;
  num_done_tasks_.store(0, std::memory_order_relaxed);
  job_.store(static_cast<uint64_t>(num_tasks) << 32, std::memory_order_release);
  // seq_cst pairs with the worker's increment of num_sleeping_workers_ before it sleeps:
  // either we see it asleep and wake it, or it sees the new generation and does not sleep.
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (num_sleeping_workers_.load(std::memory_order_seq_cst) != 0) generation_.notify_all();
  DoTasks(0);
  // Every task is claimed; wait for those still running on workers.
  for (int spin = 0; num_done_tasks_.load(std::memory_order_acquire) != num_tasks; ++spin) {
    if (spin < kCallerSpinsBeforeYield) {
      _mm_pause();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::WorkerLoop(size_t thread_idx) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = generation_.load(std::memory_order_acquire);
    if (gen == seen) {
      const auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
      for (int spin = 1; gen == seen; ++spin) {
        _mm_pause();
        gen = generation_.load(std::memory_order_acquire);
        if (spin % 64 == 0 && std::chrono::steady_clock::now() > spin_until) break;
      }
    }
    if (gen == seen) {
      num_sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
      generation_.wait(seen, std::memory_order_seq_cst);
      num_sleeping_workers_.fetch_sub(1, std::memory_order_relaxed);
      continue;
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    DoTasks(thread_idx);
  }
}

}  // namespace llmasos
