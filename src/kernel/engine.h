// Engine: the step loop of one loaded model instance. It owns the instance's paged KV memory
// (KvMemory), the scheduler with its policy, one OutputPipeline per process (sampler,
// detokenizer, stop strings, end of generation), and the batched forward pass; each Step()
// asks the scheduler what runs, runs it as one batch over the paged cache, passes the logits
// of every process whose sequence reached its end through its pipeline, and reports back.
//
// This is the synchronous core: Step() is called by whoever owns the engine (EngineThread in
// engine_thread.h, which `llmasos batch` and the daemon use; the loop of `llmasos
// batched-bench`; a test with a simulated clock).
//
// Thread safety: none; one thread owns an Engine (Validate excepted).
#ifndef LLMASOS_KERNEL_ENGINE_H_
#define LLMASOS_KERNEL_ENGINE_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kernel/kv_memory.h"
#include "kernel/kv_memory_model.h"
#include "kernel/output_pipeline.h"
#include "kernel/scheduler.h"
#include "kernel/scheduling.h"
#include "model/arch/batch_forward.h"
#include "model/arch/llama_model.h"
#include "model/sampling/sampler.h"
#include "model/tokenizer/tokenizer.h"
#include "util/clock.h"
#include "util/thread_pool.h"

namespace llmasos::kernel {

struct EngineOptions {
  SchedulerOptions scheduler;   // its preemption options are the starting ones
  std::string policy = "fcfs";  // fcfs, sjf, rr, priority, fair
  PolicyOptions policy_options;
  size_t kv_budget_bytes = size_t{256} << 20;
  size_t kv_block_tokens = 16;
  // Element types of the cached keys and values (--cache-type-k / --cache-type-v): the pool
  // holds kv_budget_bytes / KvBlockBytes(...) blocks of them.
  cpu::KvType cache_type_k = cpu::KvType::kF16;
  cpu::KvType cache_type_v = cpu::KvType::kF16;
  size_t swap_budget_bytes = 0;  // host swap space; 0: preemption recomputes
  size_t max_context = 0;        // longest sequence; 0: the model's trained context
  bool share_prefix_across_tenants = false;
  bool float_activations = false;  // see arch::ContextOptions
  // Keep generating through end-of-generation tokens, to max_tokens (benchmarks only, as
  // llama-batched-bench does).
  bool ignore_eog = false;
  // Fault injection, for tests: called on the engine's thread before each forward pass with
  // the step's batch; an error fails that step as a failing forward pass would. Unset: none.
  std::function<Status(std::span<const BatchEntry> batch)> inject_step_fault;
};

// What one Step did, for progress displays and benchmarks.
struct StepReport {
  size_t num_tokens = 0;   // tokens through the model (prefill + decode)
  size_t num_sampled = 0;  // tokens generated
  size_t num_ended = 0;    // processes that ended in this step
  double seconds = 0;      // wall time of the step
  // The forward pass stopped at a layer boundary for a higher-priority arrival (InterruptFor):
  // the scheduler abandoned the step, nothing advanced, no token was sampled.
  bool interrupted = false;
};

// A process that ended, with the text its pipeline held back until the end.
struct EndedProcess {
  std::unique_ptr<Process> process;
  std::string text;  // OutputPipeline::Flush: an incomplete UTF-8 tail, an unmatched stop prefix
  // ProcessKind::kEmbed that completed: [embd], the prompt's final hidden states (after the
  // final norm) pooled as the model says (ModelConfig::pooling), L2-normalised. Else empty.
  std::vector<float> embedding;
};

// One live process as the process table shows it (/os/processes, `llmasos ps`).
struct ProcessSnapshot {
  ProcessId id = 0;
  std::string tenant;
  ProcessKind kind = ProcessKind::kGenerate;
  ProcessState state = ProcessState::kQueued;
  int32_t priority = 0;
  int64_t batch_class = 0;  // SchedulerPolicy::BatchClass now (the priority policy's level)
  size_t num_prompt_tokens = 0;
  size_t num_generated_tokens = 0;
  int32_t max_tokens = 0;
  size_t kv_resident_blocks = 0;  // KvMemoryModel::HoldingOf
  size_t kv_swapped_blocks = 0;
  int64_t num_preemptions = 0;
  std::string adapter;  // LoraWeights::name; empty: the base model
  Duration time_queued{};   // up to the snapshot, the open interval included
  Duration time_running{};
  Duration age{};           // since submission
};

// Accumulates one embedding process's final hidden states across its prefill chunks.
class EmbeddingPooler {
 public:
  // rows: [n, embd], the hidden states of tokens first_token_idx .. + n; `last`: they end the
  // prompt. A chunk starting at token 0 starts over (a recomputed process feeds it again).
  void Add(std::span<const float> rows, size_t embd, size_t first_token_idx, bool last);
  // The pooled vector, L2-normalised (left as is if its norm is 0).
  std::vector<float> Finish(arch::Pooling pooling) const;

 private:
  std::vector<double> sum_;  // [embd]
  size_t num_rows_ = 0;
  std::vector<float> first_, last_;  // [embd]
};

class Engine {
 public:
  // `model`, `tokenizer`, `pool` and `clock` must outlive the engine. InvalidArgument for an
  // unknown policy, a KV budget below one block, or scheduler options out of range.
  static StatusOr<std::unique_ptr<Engine>> Create(const arch::Model& model,
                                                  const tokenizer::Tokenizer& tokenizer,
                                                  ThreadPool& pool, const EngineOptions& options,
                                                  const Clock* clock);

  // Validates a process once (Validate) and queues it with a new id. The stream's text ends
  // at the first of spec.stop to appear.
  StatusOr<ProcessId> Submit(ProcessSpec spec);
  // Every check a submission gets, at `now`. Error codes (what the daemon maps to HTTP):
  //   InvalidArgument: permanent, the request itself is wrong and retrying cannot help:
  //     Process::Validate's checks (naming the field), a prompt id or logit_bias id outside
  //     the vocabulary, prompt + max_tokens longer than the context, or more KV than the whole
  //     pool holds (both numbers in the message). -> 400
  //   (EngineThread adds FailedPrecondition once it is shut down: transient for a daemon that
  //     is unloading or replacing the model. -> 503)
  // Nothing here is transient: a pool that is full now makes the process wait in the
  // scheduler's queue (and a running one may be preempted), never an error.
  // Thread-safe beside the owner's calls: it reads only what Create fixed (the model's shape,
  // the context, the pool's size).
  Status Validate(const ProcessSpec& spec, TimePoint now) const;
  // A new process id (Scheduler::NewId). Thread-safe.
  ProcessId NewProcessId() { return scheduler_->NewId(); }
  // n > 1 (OpenAI's `n`): a group of n processes with the same spec that share one prefill.
  // The first (the leader) computes the prompt; in the step that computes its last prompt
  // token the others fork its KV (copy-on-write, KvMemory::Fork) and each samples its first
  // token from the same logits through its own pipeline, so the prompt is computed once.
  // Member i runs with seed + i (or, unseeded, a seed of its own). Returns the n ids, in
  // order. InvalidArgument as ValidateGroup, else as Submit.
  static constexpr size_t kMaxGroupSize = 128;
  StatusOr<std::vector<ProcessId>> SubmitGroup(ProcessSpec spec, size_t n);
  // Queues a process (ids.size() == 1) or a group whose spec passed Validate(spec,
  // submitted_at) and ValidateGroup, under ids from NewProcessId (in increasing order):
  // how EngineThread submits what it validated on the caller's thread. InvalidArgument for an
  // id out of order.
  Status SubmitValidated(ProcessSpec spec, std::span<const ProcessId> ids, TimePoint submitted_at);
  // n in [1, kMaxGroupSize], and 1 for an embedding. Thread-safe.
  static Status ValidateGroup(const ProcessSpec& spec, size_t n);
  // Ends a live process now, as Scheduler::End (e.g. kCancelled, or kStopString for a running
  // process whose text reached a stop string). A group member still waiting for its leader's
  // prefill ends too.
  Status End(ProcessId id, EndReason reason, std::string message = "");
  Status Cancel(ProcessId id, std::string message = "") { return End(id, EndReason::kCancelled, std::move(message)); }
  // Installs `settings` between steps: a new policy object when the policy or its options
  // changed (its bookkeeping, e.g. fair share's service per tenant, starts over; live
  // processes are re-announced), new preemption options either way. InvalidArgument as
  // ValidateSchedulingSettings, and nothing changes then.
  Status Configure(const SchedulingSettings& settings);
  // The settings in force.
  SchedulingSettings scheduling() const;
  // Gives a live process (or a group member waiting for its leader) a new priority, ranked by
  // from the next step. Errors as Scheduler::Renice.
  Status Renice(ProcessId id, int32_t priority);
  // Every live process at `now`, in arrival order (group members waiting for their leader's
  // prefill included, as queued).
  std::vector<ProcessSnapshot> ProcessTable(TimePoint now) const;

  // One scheduler step and its forward pass. A process ends with kEndOfGeneration on an
  // end-of-generation token (kept as its last generated token), kLength at max_tokens.
  // A step that fails (the forward pass, the KV bookkeeping) returns its error after ending
  // the processes in its batch with kError (with the group members waiting on, or forked
  // from, a leader in it), their memory released: the engine stays usable, and the processes
  // that were not in the step go on at the next one.
  StatusOr<StepReport> Step();
  // Thread-safe. Asks the step in flight to stop at its next layer when an arrival of
  // `priority` outranks every process in it (SchedulerPolicy::InterruptingPriority); that step
  // is then abandoned (StepReport::interrupted) and the next one is planned with the arrival
  // in it. Between steps it asks nothing. Returns whether it asked.
  bool InterruptFor(int32_t priority);
  // Thread-safe. Forgets an interrupt asked for so far: the owner calls it when it takes the
  // arrivals in, so only those that come after can stop the next step.
  void ClearInterrupt() { interrupt_.store(false, std::memory_order_relaxed); }

  // Whether any process is queued, running or preempted (group members waiting for their
  // leader's prefill have a live leader).
  bool HasWork() const { return !scheduler_->LiveProcesses().empty(); }

  // Processes that ended since the last call, with their tokens, accounting and held-back text.
  std::vector<EndedProcess> TakeEnded();

  // Called after every step with each token generated in it (in batch order), as its
  // pipeline made it: the token, its text, whether it ended its process.
  void SetOutputCallback(std::function<void(ProcessId, const TokenOutput&)> fn) { on_output_ = std::move(fn); }
  // Called in every Step with the scheduler's plan, before its forward pass: who was admitted
  // (or resumed) and who was preempted, and how (the kernel log of EngineThread).
  void SetPlanCallback(std::function<void(const StepPlan&)> fn) { on_plan_ = std::move(fn); }

  const Scheduler& scheduler() const { return *scheduler_; }
  const KvMemory& kv() const { return *kv_; }

 private:
  Engine(const arch::Model& model, const tokenizer::Tokenizer& tokenizer, ThreadPool& pool,
         const Clock* clock);
  // The checks Process::Validate and the scheduler do not make: vocabulary and context.
  Status CheckModelLimits(const ProcessSpec& spec) const;

  const arch::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  const Clock* clock_;
  size_t max_context_ = 0;
  bool ignore_eog_ = false;
  // How the pool's pages split the layers (one group: a page holds every layer).
  arch::KvLayerGroups kv_groups_;
  std::unique_ptr<KvMemory> kv_;
  std::unique_ptr<KvMemoryModel> memory_;
  std::unique_ptr<Scheduler> scheduler_;
  PolicyOptions policy_options_;  // those of the installed policy (all five kinds)
  std::unique_ptr<arch::BatchForward> forward_;
  std::unordered_map<ProcessId, OutputPipeline> pipelines_;
  // n > 1 groups whose leader has not finished its prefill: leader id -> the other members,
  // queued, their pipelines in pipelines_.
  std::unordered_map<ProcessId, std::vector<std::unique_ptr<Process>>> followers_;
  std::vector<std::unique_ptr<Process>> ended_followers_;  // ended before they forked
  // Forks the followers of `leader` (if any) from `logits` ([vocab], left unchanged).
  Status ForkFollowers(ProcessId leader, std::span<const float> logits,
                       std::vector<std::pair<ProcessId, TokenOutput>>& outputs);
  // Ends the waiting followers of `leader` with `reason`.
  void EndFollowers(ProcessId leader, EndReason reason, const std::string& message);
  // Step's work after Schedule: the forward pass over plan.batch, sampling, CompleteStep.
  // `outputs` receives each token sampled (leaders' and forked followers').
  Status RunBatch(const StepPlan& plan, StepReport& report,
                  std::vector<std::pair<ProcessId, TokenOutput>>& outputs);
  // Ends the processes of a failed step with kError (Step's contract).
  void FailStep(const StepPlan& plan, std::span<const std::pair<ProcessId, TokenOutput>> outputs,
                const Status& error);
  // Whether the step in flight should stop (BatchForward reads it between layers), and the
  // lowest arrival priority that may ask it to (SchedulerPolicy::kNeverInterrupts between steps).
  std::atomic<bool> interrupt_{false};
  std::atomic<int64_t> interrupting_priority_{SchedulerPolicy::kNeverInterrupts};
  std::function<Status(std::span<const BatchEntry>)> inject_step_fault_;
  std::function<void(ProcessId, const TokenOutput&)> on_output_;
  std::function<void(const StepPlan&)> on_plan_;
  std::vector<float> logits_;  // [sampled entries, vocab]
  std::vector<float> hidden_;  // [tokens of embedding entries, embd]
  std::unordered_map<ProcessId, EmbeddingPooler> poolers_;         // embeddings being computed
  std::unordered_map<ProcessId, std::vector<float>> embeddings_;  // done, until TakeEnded
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_ENGINE_H_
