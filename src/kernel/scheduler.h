// Scheduler: decides, once per engine step, who holds KV memory and which tokens run.
//
// One step is split in two, as in TensorRT-LLM's batch manager:
//   1. Capacity step (who holds memory). Ended processes have already left (Cancel, Finish)
//      and expired ones leave now, their memory released. The policy ranks the live
//      processes; walking that ranking, running processes keep their memory and grow by one
//      token, waiting ones are admitted while blocks (for their first prefill chunk) and batch
//      slots allow. When a running
//      process cannot grow, the lowest-ranked running processes below it are preempted (or it
//      is, if there are none). Under a preemptive policy a waiting process may also preempt
//      running ones ranked below it, if that frees enough, and only victims that have been fed
//      at least min_tokens_before_preempt tokens since admission (no thrash). Admission stops
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

#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kernel/clock.h"
#include "kernel/memory_model.h"
#include "kernel/policy.h"
#include "kernel/process.h"
#include "util/status.h"

namespace llmasos::kernel {

struct SchedulerOptions {
  size_t max_batch_tokens = 512;          // tokens per forward pass; >= 1
  size_t max_running = 64;                // processes holding memory at once (batch slots); >= 1
  size_t max_prefill_chunk_tokens = 512;  // longest prefill piece per process per step; >= 1
  size_t min_tokens_before_preempt = 8;   // a waiting process cannot evict one fed fewer since admission
  PreemptionCosts costs;
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
  uint64_t num_steps = 0;
  uint64_t num_preemptions = 0;
  uint64_t num_swap_preemptions = 0;
};

class Scheduler {
 public:
  // InvalidArgument naming the option for a zero limit. `memory` and `clock` must outlive
  // the scheduler.
  static StatusOr<std::unique_ptr<Scheduler>> Create(SchedulerOptions options,
                                                     std::unique_ptr<SchedulerPolicy> policy,
                                                     MemoryModel* memory, const Clock* clock);

  // Validates and queues a new process. ResourceExhausted when the whole KV pool could not hold
  // its prompt plus max_tokens, so that every admitted process can finish alone.
  StatusOr<ProcessId> Submit(ProcessSpec spec);
  // As Submit, with the id and arrival time chosen by the caller: the engine thread hands out
  // ids when a submission is queued, before its step loop takes it. InvalidArgument unless
  // `id` is above every id used so far (ids stay in arrival order); later Submit calls
  // continue after it.
  StatusOr<ProcessId> SubmitAs(ProcessSpec spec, ProcessId id, TimePoint submitted_at);
  // The ResourceExhausted check of Submit alone. Reads only the memory model's fixed sizes
  // (BlocksForTokens, NumTotalBlocks), so it may run beside the scheduler's thread.
  Status CheckCapacity(const ProcessSpec& spec) const;
  // Ends a live process now (kCancelled) and releases its memory. NotFound for an unknown id,
  // FailedPrecondition for one that already ended.
  Status Cancel(ProcessId id, std::string reason = "cancelled");
  // Ends a running process now (kFinished), e.g. on an end-of-generation token or a stop
  // string, and releases its memory.
  Status Finish(ProcessId id, std::string reason);
  // Replaces the policy between steps; live processes are re-announced in arrival order.
  void SetPolicy(std::unique_ptr<SchedulerPolicy> policy);
  const SchedulerPolicy& policy() const { return *policy_; }

  // The capacity step, then the batch step.
  StepPlan Schedule();
  // Records the forward pass of `plan`: `sampled` holds one token per entry with `samples`, in
  // batch order. Processes that reach max_tokens finish and release their memory. Entries of
  // processes cancelled since Schedule() are skipped. InvalidArgument if the count is wrong or
  // `plan` is not the latest plan.
  Status CompleteStep(const StepPlan& plan, std::span<const TokenId> sampled);

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
  void End(Process& p, ProcessState state, std::string reason);
  Status CheckCapacity(size_t num_prompt_tokens, int32_t max_tokens) const;
  size_t NumRunning() const;

  SchedulerOptions options_;
  std::unique_ptr<SchedulerPolicy> policy_;
  MemoryModel* memory_;
  const Clock* clock_;
  ProcessId next_id_ = 1;
  uint64_t next_step_idx_ = 0;
  uint64_t completed_step_idx_ = UINT64_MAX;  // last plan passed to CompleteStep
  uint64_t num_preemptions_ = 0;
  uint64_t num_swap_preemptions_ = 0;
  std::map<ProcessId, std::unique_ptr<Process>> live_;  // ordered by id = arrival
  std::vector<std::unique_ptr<Process>> ended_;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_SCHEDULER_H_
