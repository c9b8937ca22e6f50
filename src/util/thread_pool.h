// A persistent pool of worker threads for data-parallel loops (matrix multiplies, attention).
//
// Run(num_tasks, fn) calls fn(task_idx, thread_idx) once for every task_idx in [0, num_tasks),
// spread over the pool's threads (the calling thread takes part as thread 0), and returns when
// all calls have returned. Workers spin briefly between jobs, then sleep on a futex, so a step
// loop that calls Run many times per token pays no thread wake-up on the hot path.
//
// Thread safety: Run() must not be called concurrently on one pool, nor from inside fn.
#ifndef LLMASOS_UTIL_THREAD_POOL_H_
#define LLMASOS_UTIL_THREAD_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace llmasos {

class ThreadPool {
 public:
  // num_threads >= 1 counts the calling thread; num_threads - 1 workers are started.
  explicit ThreadPool(size_t num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t num_threads() const { return workers_.size() + 1; }

  template <typename Fn>
  void Run(size_t num_tasks, const Fn& fn) {
    RunImpl(num_tasks, [](const void* ctx, size_t task_idx, size_t thread_idx) {
      (*static_cast<const Fn*>(ctx))(task_idx, thread_idx);
    }, &fn);
  }

  // Splits [0, n) into about num_threads() * chunks_per_thread contiguous ranges, each a
  // multiple of `granule` long (except the last), and calls fn(begin, end, thread_idx).
  template <typename Fn>
  void ParallelFor(size_t n, size_t granule, const Fn& fn, size_t chunks_per_thread = 1) {
    if (n == 0) return;
    if (granule == 0) granule = 1;
    size_t num_granules = (n + granule - 1) / granule;
    size_t num_chunks = num_threads() * chunks_per_thread;
    if (num_chunks > num_granules) num_chunks = num_granules;
    size_t granules_per_chunk = (num_granules + num_chunks - 1) / num_chunks;
    num_chunks = (num_granules + granules_per_chunk - 1) / granules_per_chunk;
    Run(num_chunks, [&](size_t chunk_idx, size_t thread_idx) {
      size_t begin = chunk_idx * granules_per_chunk * granule;
      size_t end = begin + granules_per_chunk * granule;
      if (end > n) end = n;
      fn(begin, end, thread_idx);
    });
  }

  // The number of threads to use by default: the machine's hardware threads.
  static size_t DefaultNumThreads();

 private:
  using TaskFn = void (*)(const void* ctx, size_t task_idx, size_t thread_idx);

  void RunImpl(size_t num_tasks, TaskFn fn, const void* ctx);
  void WorkerLoop(size_t thread_idx);
  void DoTasks(size_t thread_idx);

  std::vector<std::thread> workers_;
  // Job description; written by Run() before `generation_` is bumped, read by workers after.
  TaskFn fn_ = nullptr;
  const void* ctx_ = nullptr;
  size_t num_tasks_ = 0;
  std::atomic<size_t> next_task_{0};
  std::atomic<size_t> num_busy_workers_{0};
  std::atomic<uint32_t> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace llmasos

#endif  // LLMASOS_UTIL_THREAD_POOL_H_
