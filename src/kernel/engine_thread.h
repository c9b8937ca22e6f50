// EngineThread: one thread per loaded model instance that runs an Engine's step loop, with a
// thread-safe front: Submit, Cancel, SetPolicy, Shutdown from any thread, and one Channel per
// process through which its tokens stream to the submitter.
//
// The loop: take what other threads queued (submissions, cancellations, a policy change),
// cancel processes whose channel was dropped, run one Engine::Step while there is work,
// decode the sampled tokens into text (incrementally, never splitting a UTF-8 character),
// apply stop strings (a match finishes the process through Engine::Finish), push token events
// and, for ended processes, the end event. With no work it sleeps on a condition variable.
//
// Locking (no lock is ever held while taking another, so there is no lock order to break):
//   - mu_ guards the inbox (queued submissions, cancellations, a policy name), the stopping
//     flag, the next id and the statistics. Callers hold it only to queue or copy; the engine
//     thread holds it only to drain the inbox and to publish statistics, never across a Step.
//   - The Engine, its KvMemory and scheduler, the decoders and stop matchers are touched only
//     by the engine thread, so they need no lock (the one exception is Engine::Validate, which
//     Submit calls on the caller's thread and which reads only what Engine::Create fixed).
//   - Each channel has its own mutex and condition variable over its event queue; the engine
//     thread takes it to push, the consumer to pop. Dropping a channel sets an atomic flag the
//     engine thread reads once per loop iteration.
// Per-process events are bounded by max_tokens + 1, so a channel's queue is bounded even when
// its consumer never reads.
//
// The ThreadPool given to the Engine is used by the engine thread only while it lives; no one
// else may run work on it meanwhile (ThreadPool::Run is not reentrant). The clock must be safe
// to read from any thread (RealClock is; SimulatedClock is not).
#ifndef LLMASOS_KERNEL_ENGINE_THREAD_H_
#define LLMASOS_KERNEL_ENGINE_THREAD_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kernel/engine.h"

namespace llmasos::kernel {

// What a channel carries: one kToken event per generated token, then one kEnd event.
struct StreamEvent {
  enum class Kind { kToken, kEnd };
  Kind kind = Kind::kToken;
  ProcessId id = 0;
  // kToken: the token and the text that became final with it (empty while a UTF-8 character
  // or a possible stop string is incomplete, and for end-of-generation tokens). kEnd: the text
  // held back until the end (an incomplete tail, or a stop-string prefix that never matched).
  TokenId token = -1;
  std::string text;
  // kEnd only.
  ProcessState state = ProcessState::kFinished;
  // "stop" (end-of-generation token or stop string), "length" (max_tokens), or why it was
  // cancelled or failed.
  std::string reason;
  bool stop_string = false;  // ended by one of the process's stop strings
  ProcessAccounting accounting;
};

class EngineThread;

// The consumer's end of one process's event stream, or of several processes' (see
// EngineThread::SubmitTo). Dropping it before the end event cancels its processes.
// Thread safety: Next may be called from one consumer thread at a time.
class Channel {
 public:
  Channel();
  ~Channel();  // cancels every process still streaming into it
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // The next event, waiting up to `timeout`. Unavailable when none came in time; OutOfRange
  // once every process submitted into the channel has delivered its end event and nothing is
  // left to read.
  StatusOr<StreamEvent> Next(std::chrono::milliseconds timeout);

 private:
  friend class EngineThread;
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<StreamEvent> events;  // GUARDED_BY(mu)
    size_t num_open = 0;             // GUARDED_BY(mu): submitted processes without an end event
    std::atomic<bool> dropped{false};
    void Push(StreamEvent event);
  };
  // Shared: the engine thread may still push after the consumer dropped its end (and the
  // consumer may read after the engine thread is gone); whoever lets go last frees it.
  std::shared_ptr<State> state_;
};

struct EngineThreadOptions {
  EngineOptions engine;
  size_t history_steps = 256;  // steps kept in EngineThreadStats::recent
};

// One step, as the engine thread saw it.
struct StepTiming {
  uint64_t step_idx = 0;  // 1-based count of steps that ran a batch
  StepReport step;        // tokens, sampled, wall time of Engine::Step
  size_t num_live = 0;    // processes queued, running or preempted after the step
  size_t kv_used_blocks = 0;
  size_t kv_stored_tokens = 0;
  double kv_utilisation = 0;  // stored tokens / capacity of the used blocks (KvStats)
};

struct EngineThreadStats {
  uint64_t num_steps = 0;       // steps that ran a batch
  uint64_t num_tokens = 0;      // through the model, all steps
  uint64_t num_sampled = 0;     // generated, all steps
  double step_seconds = 0;      // in Engine::Step, all steps
  uint64_t num_submitted = 0;
  uint64_t num_ended = 0;
  size_t num_live = 0;
  KvStats kv;                      // after the latest loop iteration
  std::vector<StepTiming> recent;  // the latest steps, oldest first
  Status error;                    // the first failed Step, if any
};

class EngineThread {
 public:
  // Creates the Engine (errors as Engine::Create) and starts its thread. `model`,
  // `tokenizer`, `pool` and `clock` must outlive the EngineThread.
  static StatusOr<std::unique_ptr<EngineThread>> Start(const arch::Model& model,
                                                       const tokenizer::Tokenizer& tokenizer,
                                                       ThreadPool& pool, const EngineThreadOptions& options,
                                                       const Clock* clock);
  ~EngineThread();  // Shutdown()
  EngineThread(const EngineThread&) = delete;
  EngineThread& operator=(const EngineThread&) = delete;

  struct Submission {
    ProcessId id = 0;
    std::unique_ptr<Channel> channel;
  };
  // Queues a process and returns at once with its id and its channel; the stream ends early
  // at the first of `stop` strings to appear in the text (which is cut before it). Errors as
  // Engine::Submit, checked here on the caller's thread; FailedPrecondition after Shutdown.
  // Thread-safe.
  StatusOr<Submission> Submit(ProcessSpec spec, std::vector<std::string> stop = {});
  // As Submit, streaming into `channel`, which may carry several processes (events name
  // their process), so one consumer can follow many. Thread-safe.
  StatusOr<ProcessId> SubmitTo(Channel& channel, ProcessSpec spec, std::vector<std::string> stop = {});

  // Asks for `id` to be cancelled; it ends before the next step, its memory released, and
  // its channel gets the end event (kCancelled with `reason`). A process that already ended
  // is left as it was. NotFound for an id never handed out. Thread-safe.
  Status Cancel(ProcessId id, std::string reason = "cancelled");
  // Switches the scheduling policy before the next step; InvalidArgument for an unknown name.
  // Thread-safe.
  Status SetPolicy(std::string_view name);
  // Cancels every live and queued process (reason "shutdown"), delivers their end events and
  // joins the thread. Idempotent. Thread-safe (not from a channel consumer that the call
  // would wait on: it never waits on consumers).
  void Shutdown();

  // A copy of the counters and the recent-step history. Thread-safe.
  EngineThreadStats Stats() const;

 private:
  struct Queued {
    ProcessId id = 0;
    TimePoint submitted_at;
    ProcessSpec spec;
    std::vector<std::string> stop;
    std::shared_ptr<Channel::State> channel;
  };
  // A live process's stream, owned by the engine thread.
  struct Stream {
    std::shared_ptr<Channel::State> channel;
    std::unique_ptr<tokenizer::IncrementalDecoder> decoder;
    std::unique_ptr<sampling::StopMatcher> stops;
  };

  EngineThread(std::unique_ptr<Engine> engine, const tokenizer::Tokenizer& tokenizer, const Clock* clock,
               size_t history_steps);
  StatusOr<ProcessId> Enqueue(const std::shared_ptr<Channel::State>& channel, ProcessSpec spec,
                              std::vector<std::string> stop);
  void Loop();
  // Engine-thread helpers.
  void Admit(std::vector<Queued>& queued);
  void OnToken(ProcessId id, TokenId token);
  void DeliverEnded();
  void CancelAll(const std::string& reason);
  void Publish(const std::optional<StepReport>& step);

  const std::unique_ptr<Engine> engine_;  // engine thread only (Validate excepted)
  const tokenizer::Tokenizer& tokenizer_;
  const Clock* clock_;
  const size_t history_steps_;

  // Engine thread only.
  std::unordered_map<ProcessId, Stream> streams_;
  std::vector<ProcessId> to_finish_;  // matched a stop string in this step

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Queued> inbox_;                                // GUARDED_BY(mu_)
  std::vector<std::pair<ProcessId, std::string>> cancels_;  // GUARDED_BY(mu_)
  std::optional<std::string> policy_;                        // GUARDED_BY(mu_)
  bool stopping_ = false;                                    // GUARDED_BY(mu_)
  ProcessId next_id_ = 1;                                    // GUARDED_BY(mu_)
  EngineThreadStats stats_;                                  // GUARDED_BY(mu_)
  std::deque<StepTiming> recent_;                            // GUARDED_BY(mu_)
  std::thread thread_;
  std::once_flag joined_;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_ENGINE_THREAD_H_
