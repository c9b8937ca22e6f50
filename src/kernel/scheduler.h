// Scheduler: decides, once per engine step, who holds KV memory and which tokens run.
//
// One step is split in two, as in TensorRT-LLM's batch manager:
//   1. Capacity step (who holds memory). Ended processes have already left (End) and
//      expired ones (past their deadline) leave now with EndReason::kDeadline, their memory
//      released. The policy ranks the live
//      processes; walking that ranking, running processes keep their memory and grow by one
//      token, waiting ones are admitted while blocks (for their first prefill chunk) and batch
//      slots allow. When a running
//      process cannot grow, the lowest-ranked running processes below it are preempted (or it
//      is, if there are none). Under a preemptive policy a waiting process may also preempt
//      running ones ranked below it, if that frees enough, and only victims that have been fed
//      at least min_tokens_before_preempt tokens since admission (no thrash); PreemptionOptions
//      can forbid this (waiting_may_preempt). Admission stops
//      at the first waiting process that does not fit, so large requests are not overtaken
//      forever. A victim is swapped out or dropped for recompute, whichever ChoosePreemptMode
//      says is cheaper.
//   2. Batch step (which tokens run now, within max_batch_tokens): one decode token for every
//      running process that has one pending, in rank order, then prefill chunks in rank order
//      (at most max_prefill_chunk_tokens each) from what is left. A long prompt is thus split
//      across steps and never holds back a decode of its class. Classes come from the policy
//      (SchedulerPolicy::BatchClass; one for all but under the priority policy) and are served
//      highest first, each its decodes then its prefills; a step that prefills a class serves
//      no class below it.
//
// The engine runs the forward pass over StepPlan::batch, samples one token for each entry
// with `samples`, and reports them with CompleteStep.
//
// Thread safety: none; one engine thread owns a Scheduler. Submissions and cancellations from
// other threads go through the engine's queue.
#ifndef LLMASOS_KERNEL_SCHEDULER_H_
#define LLMASOS_KERNEL_SCHEDULER_H_

#include <atomic>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/memory_model.h"
#include "kernel/policy.h"
#include "kernel/process.h"
#include "util/clock.h"
#include "util/status.h"

namespace llmasos::kernel {

// How preemption works; changeable between steps (Scheduler::SetPreemptionOptions).
struct PreemptionOptions {
  // Under a preemptive policy, whether a waiting process may evict running ones ranked below
  // it. false: only a running process that cannot grow preempts (as under fcfs and sjf).
  bool waiting_may_preempt = true;
  size_t min_tokens_before_preempt = 8;  // a waiting process cannot evict one fed fewer since admission
  PreemptChoice mode = PreemptChoice::kCheaper;
  PreemptionCosts costs;
};
// Largest min_tokens_before_preempt accepted.
inline constexpr size_t kMaxMinTokensBeforePreempt = 1'000'000;
// InvalidArgument naming the field ("preemption.swap_seconds_per_byte ...") for costs that
// are negative, not finite or absurd (a swap slower than 1 s per byte, a recompute slower than
// 60 s per token), or min_tokens_before_preempt above kMaxMinTokensBeforePreempt.
Status ValidatePreemptionOptions(const PreemptionOptions& options);

struct SchedulerOptions {
  size_t max_batch_tokens = 512;          // tokens per forward pass; >= 1
  size_t max_running = 64;                // processes holding memory at once (batch slots); >= 1
  size_t max_prefill_chunk_tokens = 512;  // longest prefill piece per process per step; >= 1
  PreemptionOptions preemption;
};

// One process's share of a forward pass: tokens [first_token_idx, first_token_idx +
// num_tokens) of process->tokens().
struct BatchEntry {
  ProcessId id = 0;
  size_t first_token_idx = 0;
  size_t num_tokens = 0;
  bool is_prefill = false;  // false: a single pending token (a decode, or a 1-token prompt)
  bool samples = false;     // the entry reaches the end of the sequence: sample a token
};

struct Preemption {
  ProcessId id = 0;
  PreemptMode mode = PreemptMode::kRecompute;
};

struct StepPlan {
  uint64_t step_idx = 0;
  std::vector<BatchEntry> batch;          // decodes first, then prefill chunks
  std::vector<Preemption> preempted;      // evicted this step
  std::vector<ProcessId> admitted;        // started or resumed this step
  std::vector<ProcessId> ended;           // left this step (expired) before the batch
  size_t num_batch_tokens = 0;
  size_t num_samples() const;
};

struct SchedulerStats {
  size_t num_queued = 0;     // kQueued + kPreempted
  size_t num_running = 0;
  // Of the queued: those preempted at least once, waiting to resume, and of those the ones
  // whose KV is swapped out (they kept their computed tokens; a recomputed one starts over).
  size_t num_preempted = 0;
  size_t num_swapped = 0;
  uint64_t num_steps = 0;
  uint64_t num_preemptions = 0;
  uint64_t num_swap_preemptions = 0;
  uint64_t num_abandoned_steps = 0;  // forward passes interrupted (AbandonStep)
};

class Scheduler {
 public:
  // InvalidArgument naming the option for a zero limit. `memory` and `clock` must outlive
  // the scheduler.
  static StatusOr<std::unique_ptr<Scheduler>> Create(SchedulerOptions options,
                                                     std::unique_ptr<SchedulerPolicy> policy,
                                                     MemoryModel* memory, const Clock* clock);

  // Validates and queues a new process with a new id (NewId) arriving now. InvalidArgument
  // when the whole KV pool could not hold its prompt plus max_tokens, or, where the memory
  // frees what falls out of an attention window, the window plus a prefill chunk
  // (MemoryModel::PeakBlocks), so that every admitted process can finish alone; a pool that is only full for now is no error: the process
  // waits in line.
  StatusOr<ProcessId> Submit(ProcessSpec spec);
  // As Submit, with an id from NewId and the arrival time chosen by the caller: the engine
  // thread takes an id when a submission is queued, before its step loop takes it.
  // InvalidArgument unless `id` came from NewId and is above every id submitted so far (ids
  // stay in arrival order).
  StatusOr<ProcessId> SubmitAs(ProcessSpec spec, ProcessId id, TimePoint submitted_at);
  // As SubmitAs, for a process built from a spec that passed Process::Validate and
  // CheckCapacity (the engine validates a request once). Errors as SubmitAs's id checks.
  Status Enter(std::unique_ptr<Process> process);
  // Enters `child`, a follower of running process `parent` in an n > 1 group (same prompt,
  // id from NewId, nothing computed), as running: it shares parent's KV (MemoryModel::Fork;
  // parent's prompt must be all in memory, i.e. in the step that computed its last prompt
  // token, before CompleteStep), and `first` (sampled from parent's logits) is appended. It
  // ends at once with `end` (kEndOfGeneration, kStopString) or at max_tokens. It may take a
  // running slot beyond max_running until it ends or is preempted.
  Status EnterFork(ProcessId parent, std::unique_ptr<Process> child, TokenId first, EndReason end);
  // The one place process ids are minted: 1, 2, 3, ... Thread-safe.
  ProcessId NewId() { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  // The capacity check of Submit alone. Reads only the memory model's fixed sizes
  // (PeakBlocks, NumTotalBlocks), so it may run beside the scheduler's thread.
  Status CheckCapacity(const ProcessSpec& spec) const;
  // Ends a live process now, in TerminalStateOf(reason), and releases its memory (e.g.
  // kCancelled for a client that went away, kStopString when its text reached a stop string).
  // NotFound for an unknown id, FailedPrecondition for one that already ended or, for a
  // reason that finishes (kEndOfGeneration, kStopString, kLength), one that is not running.
  Status End(ProcessId id, EndReason reason, std::string message = "");
  Status Cancel(ProcessId id, std::string message = "") {
    return End(id, EndReason::kCancelled, std::move(message));
  }
  // Gives a live process a new priority (renice); the policy ranks by it from the next step
  // on, whatever the process's state. NotFound for an unknown id, FailedPrecondition for one
  // that ended.
  Status Renice(ProcessId id, int32_t priority);
  // Replaces the policy between steps; live processes are re-announced in arrival order.
  void SetPolicy(std::unique_ptr<SchedulerPolicy> policy);
  const SchedulerPolicy& policy() const { return *policy_; }
  // Replaces the preemption options between steps. Errors as ValidatePreemptionOptions.
  Status SetPreemptionOptions(const PreemptionOptions& options);
  const PreemptionOptions& preemption_options() const { return options_.preemption; }

  // The capacity step, then the batch step.
  StepPlan Schedule();
  // Records the forward pass of `plan`: `sampled` holds one token per entry with `samples`, in
  // batch order, and `ends` (empty, or one per sampled token) whether that token ends its
  // process (kEndOfGeneration, kStopString; kNone otherwise): the token is appended, then the
  // process finishes with that reason. Processes that reach max_tokens otherwise finish with
  // kLength. An embedding process (ProcessKind::kEmbed) ends with kEndOfGeneration at its
  // sampling entry and gets no token (its sampled value is ignored). Either way their memory
  // is released. Entries of processes cancelled since
  // Schedule() are skipped. InvalidArgument if a count is wrong, an end reason is not a
  // finishing one, or `plan` is not the latest plan.
  Status CompleteStep(const StepPlan& plan, std::span<const TokenId> sampled,
                      std::span<const EndReason> ends = {});

  // Records that the forward pass of `plan` was abandoned before it finished (an interrupt):
  // no process advances; what the plan admitted, preempted or grew stays as it is, and the
  // next Schedule plans from there. InvalidArgument if `plan` is not the latest uncompleted plan.
  Status AbandonStep(const StepPlan& plan);

  // A live or ended-but-not-taken process; nullptr if unknown.
  const Process* Find(ProcessId id) const;
  // Live processes in arrival order.
  std::vector<const Process*> LiveProcesses() const;
  // Hands over the processes that ended since the last call (for results and usage records).
  std::vector<std::unique_ptr<Process>> TakeEnded();
  SchedulerStats stats() const;

 private:
  Scheduler(SchedulerOptions options, std::unique_ptr<SchedulerPolicy> policy, MemoryModel* memory,
            const Clock* clock);

  void CapacityStep(StepPlan& plan, std::vector<Process*>& ranked);
  void BatchStep(StepPlan& plan, const std::vector<Process*>& ranked, TimePoint now);
  bool TryAdmit(Process& p, std::vector<Process*>& ranked, size_t rank_idx, size_t& num_running,
                StepPlan& plan);
  void Preempt(Process& victim, StepPlan& plan, size_t& num_running);
  void EndProcess(Process& p, EndReason reason, std::string message = "");
  Status CheckCapacity(size_t num_prompt_tokens, int32_t max_tokens) const;
  // InvalidArgument (naming `caller`) unless `plan` is the latest plan, not yet completed.
  Status CheckLatestPlan(const StepPlan& plan, std::string_view caller) const;
  size_t NumRunning() const;

  SchedulerOptions options_;
  std::unique_ptr<SchedulerPolicy> policy_;
  MemoryModel* memory_;
  const Clock* clock_;
  std::atomic<ProcessId> next_id_{1};  // the next id NewId hands out
  ProcessId last_entered_id_ = 0;       // the highest id submitted
  uint64_t next_step_idx_ = 0;
  uint64_t completed_step_idx_ = UINT64_MAX;  // last plan passed to CompleteStep or AbandonStep
  uint64_t num_preemptions_ = 0;
  uint64_t num_swap_preemptions_ = 0;
  uint64_t num_abandoned_steps_ = 0;
  std::map<ProcessId, std::unique_ptr<Process>> live_;  // ordered by id = arrival
  std::vector<std::unique_ptr<Process>> ended_;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_SCHEDULER_H_
