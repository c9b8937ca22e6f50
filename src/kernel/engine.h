// Engine: the step loop of one loaded model instance. It owns the instance's paged KV memory
// (KvMemory), the scheduler with its policy, one sampler per process, and the batched forward
// pass; each Step() asks the scheduler what runs, runs it as one batch over the paged cache,
// samples one token for every process whose sequence reached its end, and reports back.
//
// This is the synchronous core: Step() is called by whoever owns the engine (EngineThread in
// engine_thread.h, which `llmasos batch` and the daemon use; the loop of `llmasos
// batched-bench`; a test with a simulated clock).
//
// Thread safety: none; one thread owns an Engine (Validate excepted).
#ifndef LLMASOS_KERNEL_ENGINE_H_
#define LLMASOS_KERNEL_ENGINE_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernel/clock.h"
#include "kernel/kv_memory.h"
#include "kernel/kv_memory_model.h"
#include "kernel/scheduler.h"
#include "model/arch/batch_forward.h"
#include "model/arch/llama_model.h"
#include "model/sampling/sampler.h"
#include "model/tokenizer/tokenizer.h"
#include "util/thread_pool.h"

namespace llmasos::kernel {

struct EngineOptions {
  SchedulerOptions scheduler;
  std::string policy = "fcfs";  // fcfs, sjf, rr, priority, fair
  size_t kv_budget_bytes = size_t{256} << 20;
  size_t kv_block_tokens = 16;
  size_t swap_budget_bytes = 0;  // host swap space; 0: preemption recomputes
  size_t max_context = 0;        // longest sequence; 0: the model's trained context
  bool share_prefix_across_tenants = false;
  bool float_activations = false;  // see arch::ContextOptions
  // Keep generating through end-of-generation tokens, to max_tokens (benchmarks only, as
  // llama-batched-bench does).
  bool ignore_eog = false;
};

// What one Step did, for progress displays and benchmarks.
struct StepReport {
  size_t num_tokens = 0;   // tokens through the model (prefill + decode)
  size_t num_sampled = 0;  // tokens generated
  size_t num_ended = 0;    // processes that ended in this step
  double seconds = 0;      // wall time of the step
};

class Engine {
 public:
  // `model`, `tokenizer`, `pool` and `clock` must outlive the engine. InvalidArgument for an
  // unknown policy, a KV budget below one block, or scheduler options out of range.
  static StatusOr<std::unique_ptr<Engine>> Create(const arch::Model& model,
                                                  const tokenizer::Tokenizer& tokenizer,
                                                  ThreadPool& pool, const EngineOptions& options,
                                                  const Clock* clock);

  // Queues a process. InvalidArgument for bad sampling parameters, a prompt id outside the
  // vocabulary or a prompt + max_tokens longer than the context; otherwise as
  // Scheduler::Submit.
  StatusOr<ProcessId> Submit(ProcessSpec spec);
  // As Submit, with the id and arrival time chosen by the caller (Scheduler::SubmitAs).
  StatusOr<ProcessId> SubmitAs(ProcessSpec spec, ProcessId id, TimePoint submitted_at);
  // Every check of Submit, at `now`, without submitting. Thread-safe beside the owner's calls:
  // it reads only what Create fixed (the model's shape, the context, the pool's size).
  Status Validate(const ProcessSpec& spec, TimePoint now) const;
  Status Cancel(ProcessId id, std::string reason = "cancelled");
  // Ends a running process as finished (e.g. its text reached a stop string).
  Status Finish(ProcessId id, std::string reason) { return scheduler_->Finish(id, std::move(reason)); }
  Status SetPolicy(std::string_view name);

  // One scheduler step and its forward pass. A process ends with reason "stop" on an
  // end-of-generation token (kept as its last generated token), "length" at max_tokens.
  StatusOr<StepReport> Step();
  // Whether any process is queued, running or preempted.
  bool HasWork() const { return !scheduler_->LiveProcesses().empty(); }

  // Processes that ended since the last call, with their tokens and accounting.
  std::vector<std::unique_ptr<Process>> TakeEnded();

  // Called after every step with each token generated in it (ids in batch order).
  void SetTokenCallback(std::function<void(ProcessId, TokenId)> fn) { on_token_ = std::move(fn); }

  const Scheduler& scheduler() const { return *scheduler_; }
  const KvMemory& kv() const { return *kv_; }

 private:
  Engine(const arch::Model& model, const tokenizer::Tokenizer& tokenizer, ThreadPool& pool,
         const Clock* clock);
  // The checks Process::Create and the scheduler do not make: vocabulary and context.
  Status CheckModelLimits(const ProcessSpec& spec) const;
  // Submit (id 0: the scheduler's next id) or SubmitAs.
  StatusOr<ProcessId> Enter(ProcessSpec spec, ProcessId id, TimePoint submitted_at);

  const arch::Model& model_;
  const tokenizer::Tokenizer& tokenizer_;
  const Clock* clock_;
  size_t max_context_ = 0;
  bool ignore_eog_ = false;
  std::unique_ptr<KvMemory> kv_;
  std::unique_ptr<KvMemoryModel> memory_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<arch::BatchForward> forward_;
  std::unordered_map<ProcessId, sampling::Sampler> samplers_;
  std::function<void(ProcessId, TokenId)> on_token_;
  std::vector<float> logits_;  // [sampled entries, vocab]
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_ENGINE_H_
