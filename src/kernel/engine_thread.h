// EngineThread: one thread per loaded model instance that runs an Engine's step loop, with a
// thread-safe front: Submit, Cancel, Renice, UpdateScheduling, Shutdown from any thread, and one Channel per
// process through which its tokens stream to the submitter.
//
// The loop: take what other threads queued (submissions, cancellations, renices, new
// scheduling settings),
// cancel processes whose channel was dropped, run one Engine::Step while there is work, push
// a token event for each token the engine's output pipelines produced (token, text, see
// OutputPipeline) and, for ended processes, the end event; then publish the statistics and
// the process table (what Stats and Processes copy). With no work it sleeps on a condition
// variable. A kill (Cancel) or a renice takes effect before the next step. An arrival that
// outranks every process of the step in flight under a preemptive priority policy stops that
// step at its next layer (Engine::InterruptFor): the step is planned anew with the arrival in
// it, so a high-priority prompt waits one layer, not a whole step.
//
// Locking (no lock is ever held while taking another, so there is no lock order to break):
//   - mu_ guards the inbox (queued submissions, cancellations, renices, scheduling settings), the
//     stopping flag, the next id, the statistics and the published process table. Callers hold it only to queue or copy; the engine
//     thread holds it only to drain the inbox and to publish statistics, never across a Step.
//   - The Engine, its KvMemory, scheduler and output pipelines are touched only by the engine
//     thread, so they need no lock (the exceptions are Engine::Validate, which Submit calls on
//     the caller's thread and which reads only what Engine::Create fixed, and
//     Engine::NewProcessId, InterruptFor and ClearInterrupt, which are atomic).
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
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kernel/engine.h"
#include "kernel/event_bus.h"
#include "util/mutex.h"
#include "util/thread_annotations.h"

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
  // kToken, with SamplingParams::logprobs: see TokenOutput::logprobs.
  std::optional<sampling::TokenLogprobs> logprobs;
  // kEnd only: how it ended (state == TerminalStateOf(reason)), with the error's text for
  // kError (and a canceller's detail, if it gave one).
  ProcessState state = ProcessState::kFinished;
  EndReason reason = EndReason::kNone;
  std::string message;
  ProcessAccounting accounting;
  // kEnd of a completed ProcessKind::kEmbed process: its vector (EndedProcess::embedding).
  std::vector<float> embedding;
};

class EngineThread;

// The consumer's end of one process's event stream, or of several processes' (see
// EngineThread::SubmitTo). Dropping it before the end event cancels its processes.
// Thread safety: Next may be called from one consumer thread at a time.
//
// Two ways to consume: block in Next(timeout) on a thread of one's own, or set a notifier
// and read with Next(0ms) when it fires, so that no thread waits per stream (the daemon
// posts to its Asio executor from the notifier).
class Channel {
 public:
  Channel();
  ~Channel();  // cancels every process still streaming into it
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // The next event, waiting up to `timeout` (0: do not wait). Unavailable when none came in
  // time; OutOfRange once every process submitted into the channel has delivered its end
  // event and nothing is left to read.
  StatusOr<StreamEvent> Next(std::chrono::milliseconds timeout);

  // `notify` is called by the engine thread after each event it pushes into this channel,
  // with no lock held; it must not block (post a handler, write an eventfd) and must not call
  // back into the EngineThread. One call may cover several events: on each call, read until
  // Next(0ms) is Unavailable. It may still be called while (not after) the channel is being
  // destroyed, so it should hold what it uses by shared or weak pointer.
  // REQUIRES: called before the first submission into the channel.
  void SetNotifier(std::function<void()> notify);

 private:
  friend class EngineThread;
  struct State {
    Mutex mu;
    CondVar cv;
    std::deque<StreamEvent> events GUARDED_BY(mu);
    size_t num_open GUARDED_BY(mu) = 0;  // submitted processes without an end event
    std::atomic<bool> dropped{false};
    // Set before the first submission (the submission's locking publishes it), read-only after.
    std::function<void()> notify;
    void Push(StreamEvent event);
  };
  // Shared: the engine thread may still push after the consumer dropped its end (and the
  // consumer may read after the engine thread is gone); whoever lets go last frees it.
  std::shared_ptr<State> state_;
};

struct EngineThreadOptions {
  EngineOptions engine;
  size_t history_steps = 256;  // steps kept in EngineThreadStats::recent
  // The admission bound: processes live at once (queued, running, preempted, and submitted
  // but not yet taken in); a submission that would exceed it is refused with kUnavailable.
  // 0: no bound.
  size_t max_live = 0;
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
  SchedulerStats scheduler;        // after the latest loop iteration: queued, running, preempted
  KvStats kv;                      // after the latest loop iteration
  std::string policy;              // the scheduling policy's name, after the latest iteration
  SchedulingSettings scheduling;   // the scheduler's parameters in force (policy included)
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
  // at the first of spec.stop (and `stop`, appended to them) to appear in the text, which is
  // cut before it. Errors as Engine::Validate, checked here on the caller's thread, once;
  // FailedPrecondition after Shutdown; Unavailable when the options' max_live would be
  // exceeded. Thread-safe.
  StatusOr<Submission> Submit(ProcessSpec spec, std::vector<std::string> stop = {});
  // As Submit, streaming into `channel`, which may carry several processes (events name
  // their process), so one consumer can follow many. Thread-safe.
  StatusOr<ProcessId> SubmitTo(Channel& channel, ProcessSpec spec, std::vector<std::string> stop = {});
  // n > 1: a group of n processes sharing one prefill (Engine::SubmitGroup), all streaming
  // into `channel`; returns their ids in order (choice i is ids[i]). Errors as
  // Engine::ValidateGroupSize and Submit. Thread-safe.
  StatusOr<std::vector<ProcessId>> SubmitGroupTo(Channel& channel, ProcessSpec spec, size_t n);

  // Asks for `id` to be ended with `reason` (kCancelled, kKilled, kShutdown, kDeadline or
  // kError; InvalidArgument for the others); it ends before the next step, its memory
  // released, and its channel gets the end event with `reason` and `message`. A process that
  // already ended is left as it was. NotFound for an id never handed out. Thread-safe.
  Status Cancel(ProcessId id, EndReason reason = EndReason::kCancelled, std::string message = "");
  // Gives process `id` a new priority before the next step (also a running one: the policy
  // ranks by it from then on). A process that already ended is left as it was. NotFound for
  // an id never handed out, FailedPrecondition after Shutdown. Thread-safe.
  Status Renice(ProcessId id, int32_t priority);
  // Changes the scheduler's parameters (policy, policy options, preemption) before the next
  // step: `update` is merged into the settings asked for so far (so concurrent updates of
  // different fields both stay), and the result is returned. InvalidArgument naming the field
  // as ValidateSchedulingSettings, and nothing changes then; FailedPrecondition after Shutdown.
  // Stats().scheduling shows the settings once the engine thread installed them. Thread-safe.
  StatusOr<SchedulingSettings> UpdateScheduling(const SchedulingUpdate& update);
  // The settings the next step runs under: the latest UpdateScheduling's (installed before
  // that step), else the ones the engine started with. Thread-safe.
  SchedulingSettings Scheduling() const;
  // Cancels every live and queued process (EndReason::kShutdown), delivers their end events and
  // joins the thread. Idempotent. Thread-safe (not from a channel consumer that the call
  // would wait on: it never waits on consumers).
  void Shutdown();

  // From the next loop iteration on, publishes this engine's process events to `bus` (null:
  // none), as model instance `instance` running `model` ("name@version"): admitted (also a
  // resume), preempted (with its mode), swapped out and in, finished (with the end reason),
  // killed, reniced. `bus` must outlive the EngineThread or a later call that replaces it.
  // Thread-safe.
  void SetEventBus(EventBus* bus, uint64_t instance, std::string model);

  // A copy of the counters and the recent-step history. Thread-safe.
  EngineThreadStats Stats() const;
  // The live processes as of the latest loop iteration (Engine::ProcessTable), in arrival
  // order. Thread-safe.
  std::vector<ProcessSnapshot> Processes() const;

 private:
  struct Queued {
    std::vector<ProcessId> ids;  // one, or a group's
    TimePoint submitted_at;
    ProcessSpec spec;
    std::shared_ptr<Channel::State> channel;
  };
  EngineThread(std::unique_ptr<Engine> engine, const Clock* clock, size_t history_steps, size_t max_live);
  StatusOr<std::vector<ProcessId>> Enqueue(const std::shared_ptr<Channel::State>& channel, ProcessSpec spec,
                                           size_t n);
  void Loop() EXCLUDES(mu_);
  // Engine-thread helpers.
  void Admit(std::vector<Queued>& queued);
  void OnOutput(ProcessId id, const TokenOutput& out);
  void DeliverEnded();
  void EndAll(EndReason reason, const std::string& message);
  void Publish(const std::optional<StepReport>& step);
  // The kernel log (SetEventBus): what the step's plan did, and one process event.
  void OnPlan(const StepPlan& plan);
  void Emit(EventKind kind, const Process& p, std::string reason = "", std::string direction = "");

  const std::unique_ptr<Engine> engine_;  // engine thread only (Validate excepted)
  const Clock* clock_;
  const size_t history_steps_;
  const size_t max_live_;

  // Engine thread only: the channel of each live process.
  std::unordered_map<ProcessId, std::shared_ptr<Channel::State>> streams_;
  // Engine thread only: where events go (SetEventBus, taken in from mu_'s copy each loop),
  // and the live processes whose KV is swapped out (their next admission swaps them in).
  struct EventTarget {
    EventBus* bus = nullptr;
    uint64_t instance = 0;
    std::string model;
  };
  EventTarget events_;
  std::unordered_set<ProcessId> swapped_out_;

  mutable Mutex mu_;
  CondVar cv_;
  std::vector<Queued> inbox_ GUARDED_BY(mu_);
  struct CancelRequest {
    ProcessId id;
    EndReason reason;
    std::string message;
  };
  std::vector<CancelRequest> cancels_ GUARDED_BY(mu_);
  struct ReniceRequest {
    ProcessId id;
    int32_t priority;
  };
  std::vector<ReniceRequest> renices_ GUARDED_BY(mu_);
  SchedulingSettings scheduling_ GUARDED_BY(mu_);  // the latest asked for
  bool scheduling_changed_ GUARDED_BY(mu_) = false;  // not yet installed
  std::optional<EventTarget> new_events_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  ProcessId last_id_ GUARDED_BY(mu_) = 0;  // highest id queued
  EngineThreadStats stats_ GUARDED_BY(mu_);
  std::deque<StepTiming> recent_ GUARDED_BY(mu_);
  std::vector<ProcessSnapshot> table_ GUARDED_BY(mu_);
  std::thread thread_;
  std::once_flag joined_;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_ENGINE_THREAD_H_
