#include "kernel/engine.h"

#include <algorithm>
#include <cstring>

#include "kernel/kv_layout.h"

namespace llmasos::kernel {

Engine::Engine(const arch::Model& model, const tokenizer::Tokenizer& tokenizer, ThreadPool& pool,
               const Clock* clock)
    : model_(model), tokenizer_(tokenizer), clock_(clock) {}

StatusOr<std::unique_ptr<Engine>> Engine::Create(const arch::Model& model,
                                                 const tokenizer::Tokenizer& tokenizer,
                                                 ThreadPool& pool, const EngineOptions& options,
                                                 const Clock* clock) {
  const arch::ModelConfig& c = model.config();
  std::unique_ptr<Engine> e(new Engine(model, tokenizer, pool, clock));
  e->ignore_eog_ = options.ignore_eog;
  e->max_context_ = options.max_context == 0 ? c.context_length
                                             : std::min(options.max_context, c.context_length);
  KvMemoryOptions kv;
  kv.num_layers = c.num_layers;
  kv.kv_dim = c.kv_dim();
  kv.block_tokens = options.kv_block_tokens;
  kv.budget_bytes = options.kv_budget_bytes;
  kv.swap_budget_bytes = options.swap_budget_bytes;
  ASSIGN_OR_RETURN(e->kv_, KvMemory::Create(kv));
  e->memory_ = std::make_unique<KvMemoryModel>(e->kv_.get(), options.share_prefix_across_tenants);
  ASSIGN_OR_RETURN(std::unique_ptr<SchedulerPolicy> policy, NewPolicyByName(options.policy));
  ASSIGN_OR_RETURN(e->scheduler_, Scheduler::Create(options.scheduler, std::move(policy),
                                                    e->memory_.get(), clock));
  e->forward_ = std::make_unique<arch::BatchForward>(model, pool, options.scheduler.max_batch_tokens,
                                                     e->max_context_, options.float_activations);
  return e;
}

Status Engine::CheckModelLimits(const ProcessSpec& spec) const {
  const arch::ModelConfig& c = model_.config();
  for (size_t i = 0; i < spec.prompt.size(); ++i) {
    if (spec.prompt[i] < 0 || static_cast<size_t>(spec.prompt[i]) >= c.vocab_size) {
      return InvalidArgumentError("prompt token " + std::to_string(i) + " (id " +
                                  std::to_string(spec.prompt[i]) + ") is outside the vocabulary of " +
                                  std::to_string(c.vocab_size));
    }
  }
  if (spec.limits.max_tokens > 0 &&
      spec.prompt.size() + static_cast<size_t>(spec.limits.max_tokens) > max_context_) {
    return InvalidArgumentError("prompt (" + std::to_string(spec.prompt.size()) + " tokens) + max_tokens (" +
                                std::to_string(spec.limits.max_tokens) + ") exceed the context of " +
                                std::to_string(max_context_) + " tokens");
  }
  return OkStatus();
}

Status Engine::Validate(const ProcessSpec& spec, TimePoint now) const {
  RETURN_IF_ERROR(Process::Validate(spec, now));
  RETURN_IF_ERROR(CheckModelLimits(spec));
  return scheduler_->CheckCapacity(spec);
}

StatusOr<ProcessId> Engine::Submit(ProcessSpec spec) { return Enter(std::move(spec), 0, clock_->Now()); }

StatusOr<ProcessId> Engine::SubmitAs(ProcessSpec spec, ProcessId id, TimePoint submitted_at) {
  if (id == 0) return InvalidArgumentError("process id 0 is reserved");
  return Enter(std::move(spec), id, submitted_at);
}

StatusOr<ProcessId> Engine::Enter(ProcessSpec spec, ProcessId id, TimePoint submitted_at) {
  RETURN_IF_ERROR(sampling::ValidateSamplingParams(spec.sampling));
  RETURN_IF_ERROR(CheckModelLimits(spec));
  sampling::Sampler sampler(spec.sampling);
  for (TokenId t : spec.prompt) sampler.Accept(t);  // prompt tokens count for penalties
  ASSIGN_OR_RETURN(ProcessId entered, id == 0 ? scheduler_->Submit(std::move(spec))
                                              : scheduler_->SubmitAs(std::move(spec), id, submitted_at));
  samplers_.emplace(entered, std::move(sampler));
  return entered;
}

Status Engine::Cancel(ProcessId id, std::string reason) { return scheduler_->Cancel(id, std::move(reason)); }

Status Engine::SetPolicy(std::string_view name) {
  ASSIGN_OR_RETURN(std::unique_ptr<SchedulerPolicy> policy, NewPolicyByName(name));
  scheduler_->SetPolicy(std::move(policy));
  return OkStatus();
}

StatusOr<StepReport> Engine::Step() {
  const auto start = std::chrono::steady_clock::now();
  StepReport report;
  const StepPlan plan = scheduler_->Schedule();
  report.num_ended = plan.ended.size();
  if (plan.batch.empty()) return report;

  const size_t vocab = model_.config().vocab_size;
  logits_.resize(plan.num_samples() * vocab);
  std::vector<arch::BatchSegment> segments;
  std::vector<SequenceId> sequences;
  std::vector<const Process*> processes;
  segments.reserve(plan.batch.size());
  size_t sample_idx = 0;
  for (const BatchEntry& e : plan.batch) {
    const Process* p = scheduler_->Find(e.id);
    if (p == nullptr) return InternalError("scheduled process " + std::to_string(e.id) + " is unknown");
    ASSIGN_OR_RETURN(SequenceId seq, memory_->SequenceOf(e.id));
    ASSIGN_OR_RETURN(std::span<const BlockId> table, kv_->BlockTable(seq));
    arch::BatchSegment s;
    s.tokens = p->tokens().subspan(e.first_token_idx, e.num_tokens);
    s.pos0 = e.first_token_idx;
    s.block_table = table;
    s.logits = e.samples ? arch::LogitsMode::kLast : arch::LogitsMode::kNone;
    s.logits_out = e.samples ? &logits_[sample_idx++ * vocab] : nullptr;
    segments.push_back(s);
    sequences.push_back(seq);
    processes.push_back(p);
    report.num_tokens += e.num_tokens;
  }
  RETURN_IF_ERROR(forward_->Run(segments, KvLayoutOf(*kv_), kv_->num_blocks()));

  // The K/V just written make full blocks findable by later prompts with the same prefix.
  for (size_t i = 0; i < plan.batch.size(); ++i) {
    const BatchEntry& e = plan.batch[i];
    RETURN_IF_ERROR(
        kv_->CommitTokens(sequences[i], processes[i]->tokens().first(e.first_token_idx + e.num_tokens))
            .status());
  }

  std::vector<TokenId> sampled;
  std::vector<ProcessId> sampled_by;
  sample_idx = 0;
  for (const BatchEntry& e : plan.batch) {
    if (!e.samples) continue;
    sampling::Sampler& sampler = samplers_.at(e.id);
    const TokenId t = sampler.Sample(std::span<float>(&logits_[sample_idx++ * vocab], vocab));
    sampler.Accept(t);
    sampled.push_back(t);
    sampled_by.push_back(e.id);
  }
  RETURN_IF_ERROR(scheduler_->CompleteStep(plan, sampled));
  report.num_sampled = sampled.size();
  for (size_t i = 0; i < sampled.size(); ++i) {
    if (on_token_) on_token_(sampled_by[i], sampled[i]);
    const Process* p = scheduler_->Find(sampled_by[i]);
    // A process may already have ended at max_tokens in CompleteStep.
    if (!ignore_eog_ && p != nullptr && !IsTerminal(p->state()) && tokenizer_.IsEog(sampled[i])) {
      RETURN_IF_ERROR(scheduler_->Finish(sampled_by[i], "stop"));
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

std::vector<std::unique_ptr<Process>> Engine::TakeEnded() {
  std::vector<std::unique_ptr<Process>> ended = scheduler_->TakeEnded();
  for (const auto& p : ended) samplers_.erase(p->id());
  return ended;
}

}  // namespace llmasos::kernel
