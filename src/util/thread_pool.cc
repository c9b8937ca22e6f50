#include "util/thread_pool.h"

#include <immintrin.h>

#include "util/logging.h"

namespace llmasos {
namespace {

// About 50 µs of spinning before a worker sleeps: long enough to span the gap between two
// matrix multiplies of one forward pass, short enough not to burn a core between tokens.
constexpr int kSpinIterations = 20000;

}  // namespace

ThreadPool::ThreadPool(size_t num_threads) {
  CHECK_GE(num_threads, 1u);
  workers_.reserve(num_threads - 1);
  for (size_t i = 1; i < num_threads; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

size_t ThreadPool::DefaultNumThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

void ThreadPool::DoTasks(size_t thread_idx) {
  for (;;) {
    size_t task_idx = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task_idx >= num_tasks_) return;
    fn_(ctx_, task_idx, thread_idx);
  }
}

void ThreadPool::RunImpl(size_t num_tasks, TaskFn fn, const void* ctx) {
  if (num_tasks == 0) return;
  if (workers_.empty() || num_tasks == 1) {
    for (size_t i = 0; i < num_tasks; ++i) fn(ctx, i, 0);
    return;
  }
  fn_ = fn;
  ctx_ = ctx;
  num_tasks_ = num_tasks;
  next_task_.store(0, std::memory_order_relaxed);
  num_busy_workers_.store(workers_.size(), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  DoTasks(0);
  // Wait for the workers to finish their last task; they finish within one task's time.
  while (num_busy_workers_.load(std::memory_order_acquire) != 0) _mm_pause();
}

void ThreadPool::WorkerLoop(size_t thread_idx) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
      _mm_pause();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;
    }
    seen = gen;
    if (stop_.load(std::memory_order_acquire)) return;
    DoTasks(thread_idx);
    num_busy_workers_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace llmasos
