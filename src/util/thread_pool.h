// A persistent pool of worker threads for data-parallel loops (matrix multiplies, attention).
//
// Run(num_tasks, fn) calls fn(task_idx, thread_idx) once for every task_idx in [0, num_tasks),
// spread over the pool's threads (the calling thread takes part as thread 0), and returns when
// all calls have returned. Tasks are claimed one at a time, so the caller never waits for a
// worker that has not woken up yet: it runs the remaining tasks itself and waits only for
// tasks already running elsewhere. Workers spin briefly between jobs, then sleep on a futex,
// so a step loop that calls Run many times per token pays no thread wake-up on the hot path,
// and the futex is only touched when a worker actually sleeps.
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

// Lowers (or, with privileges, raises) the calling thread's scheduling priority to `nice`
// (-20 .. 19; threads it starts afterwards inherit it). False when the kernel refuses.
bool SetThisThreadNice(int nice);

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
  // The current job. fn_ and ctx_ are written by Run() before job_ is published and read by
  // a worker only after it has claimed one of the job's tasks, which keeps the job (and so
  // these fields) alive until that task is done.
  TaskFn fn_ = nullptr;
  const void* ctx_ = nullptr;
  // (num_tasks << 32) | next task index. One word, so a worker that claims an index also
  // learns the task count of the same job: a worker waking late for a finished job claims
  // an index >= num_tasks and does nothing, and can never run a stale index of a new job.
  std::atomic<uint64_t> job_{0};
  std::atomic<size_t> num_done_tasks_{0};
  // Bumped once per job to wake workers; they spin on it, then sleep on it (futex).
  std::atomic<uint32_t> generation_{0};
  std::atomic<uint32_t> num_sleeping_workers_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace llmasos

#endif  // LLMASOS_UTIL_THREAD_POOL_H_
