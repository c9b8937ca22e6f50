#include "kernel/engine.h"

#include <algorithm>
#include <cmath>
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
  e->inject_step_fault_ = options.inject_step_fault;
  e->max_context_ = options.max_context == 0 ? c.context_length
                                             : std::min(options.max_context, c.context_length);
  RETURN_IF_ERROR(cpu::CheckKvTypesFit(options.cache_type_k, options.cache_type_v, c.head_dim));
  // A model with global layers beside sliding ones pages each kind apart, so that the sliding
  // layers hold only their window (docs/kv-memory.md); any other model has one group.
  e->kv_groups_ = arch::LayerGroupsOf(c);
  KvMemoryOptions kv;
  kv.num_layers = e->kv_groups_.layers_per_group;
  kv.kv_dim = c.kv_dim();
  kv.k_type = options.cache_type_k;
  kv.v_type = options.cache_type_v;
  kv.block_tokens = options.kv_block_tokens;
  kv.budget_bytes = options.kv_budget_bytes;
  kv.swap_budget_bytes = options.swap_budget_bytes;
  ASSIGN_OR_RETURN(e->kv_, KvMemory::Create(kv));
  // Where a group's layers attend within a window, what falls out of it goes back to the pool.
  e->memory_ = std::make_unique<KvMemoryModel>(e->kv_.get(), options.share_prefix_across_tenants,
                                               e->kv_groups_.group_window);
  ASSIGN_OR_RETURN(std::unique_ptr<SchedulerPolicy> policy, NewPolicyByName(options.policy, options.policy_options));
  e->policy_options_ = options.policy_options;
  ASSIGN_OR_RETURN(e->scheduler_, Scheduler::Create(options.scheduler, std::move(policy),
                                                    e->memory_.get(), clock));
  e->forward_ = std::make_unique<arch::BatchForward>(model, pool, options.scheduler.max_batch_tokens,
                                                     e->max_context_, options.float_activations);
  e->forward_->set_interrupt(&e->interrupt_);
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
  for (const auto& [token, bias] : spec.sampling.logit_bias) {
    if (token < 0 || static_cast<size_t>(token) >= c.vocab_size) {
      return InvalidArgumentError("logit_bias token id " + std::to_string(token) + " is outside the vocabulary of " +
                                  std::to_string(c.vocab_size));
    }
  }
  if (spec.adapter != nullptr && spec.adapter->num_layers != c.num_layers) {
    return InvalidArgumentError("adapter '" + spec.adapter->name + "' was read for a " +
                                std::to_string(spec.adapter->num_layers) + "-layer model, this one has " +
                                std::to_string(c.num_layers));
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

StatusOr<ProcessId> Engine::Submit(ProcessSpec spec) {
  ASSIGN_OR_RETURN(std::vector<ProcessId> ids, SubmitGroup(std::move(spec), 1));
  return ids[0];
}

Status Engine::ValidateGroup(const ProcessSpec& spec, size_t n) {
  if (n < 1 || n > kMaxGroupSize) {
    return InvalidArgumentError("n must be in [1, " + std::to_string(kMaxGroupSize) + "], got " + std::to_string(n));
  }
  if (n > 1 && spec.kind != ProcessKind::kGenerate) {
    return InvalidArgumentError("n > 1 is for generation; an embedding has one result");
  }
  return OkStatus();
}

void EmbeddingPooler::Add(std::span<const float> rows, size_t embd, size_t first_token_idx, bool last) {
  if (first_token_idx == 0) {  // (re)started from the first token, e.g. after a recompute
    sum_.assign(embd, 0.0);
    num_rows_ = 0;
    first_.clear();
  }
  const size_t n = rows.size() / embd;
  for (size_t r = 0; r < n; ++r) {
    for (size_t d = 0; d < embd; ++d) sum_[d] += rows[r * embd + d];
  }
  num_rows_ += n;
  if (first_token_idx == 0) first_.assign(rows.begin(), rows.begin() + embd);
  if (last) last_.assign(rows.end() - embd, rows.end());
}

std::vector<float> EmbeddingPooler::Finish(arch::Pooling pooling) const {
  std::vector<float> v;
  switch (pooling) {
    case arch::Pooling::kMean:
      for (double x : sum_) v.push_back(static_cast<float>(x / static_cast<double>(num_rows_)));
      break;
    case arch::Pooling::kCls: v = first_; break;
    case arch::Pooling::kLast: v = last_; break;
  }
  double norm = 0.0;
  for (float x : v) norm += static_cast<double>(x) * x;
  norm = std::sqrt(norm);
  if (norm > 0) {
    for (float& x : v) x = static_cast<float>(x / norm);
  }
  return v;
}

StatusOr<std::vector<ProcessId>> Engine::SubmitGroup(ProcessSpec spec, size_t n) {
  const TimePoint now = clock_->Now();
  RETURN_IF_ERROR(ValidateGroup(spec, n));
  RETURN_IF_ERROR(Validate(spec, now));
  std::vector<ProcessId> ids(n);
  for (ProcessId& id : ids) id = NewProcessId();
  RETURN_IF_ERROR(SubmitValidated(std::move(spec), ids, now));
  return ids;
}

Status Engine::SubmitValidated(ProcessSpec spec, std::span<const ProcessId> ids, TimePoint submitted_at) {
  if (ids.empty()) return InvalidArgumentError("a submission needs at least one process id");
  // Drawn here, so the process's parameters say which seed it ran with.
  const bool seeded = spec.sampling.seed.has_value();
  if (!seeded) spec.sampling.seed = sampling::RandomSeed();
  std::vector<ProcessSpec> member_specs;
  for (size_t i = 1; i < ids.size(); ++i) {
    ProcessSpec m = spec;
    m.sampling.seed = seeded ? *spec.sampling.seed + i : sampling::RandomSeed();
    member_specs.push_back(std::move(m));
  }
  OutputPipeline pipeline(tokenizer_, spec.sampling, spec.prompt, spec.stop, ignore_eog_);
  RETURN_IF_ERROR(scheduler_->Enter(Process::CreateValidated(ids[0], std::move(spec), submitted_at)));
  pipelines_.emplace(ids[0], std::move(pipeline));
  if (ids.size() == 1) return OkStatus();
  std::vector<std::unique_ptr<Process>>& waiting = followers_[ids[0]];
  for (size_t i = 1; i < ids.size(); ++i) {
    ProcessSpec& m = member_specs[i - 1];
    pipelines_.emplace(ids[i], OutputPipeline(tokenizer_, m.sampling, m.prompt, m.stop, ignore_eog_));
    waiting.push_back(Process::CreateValidated(ids[i], std::move(m), submitted_at));
  }
  return OkStatus();
}

Status Engine::End(ProcessId id, EndReason reason, std::string message) {
  for (auto& [leader, waiting] : followers_) {
    for (auto it = waiting.begin(); it != waiting.end(); ++it) {
      if ((*it)->id() != id) continue;
      RETURN_IF_ERROR((*it)->End(reason, clock_->Now(), std::move(message)));
      ended_followers_.push_back(std::move(*it));
      waiting.erase(it);
      return OkStatus();
    }
  }
  const bool had_followers = followers_.contains(id);
  RETURN_IF_ERROR(scheduler_->End(id, reason, message));
  // A leader that ends before its prefill takes its waiting followers with it.
  if (had_followers) EndFollowers(id, reason, message);
  return OkStatus();
}

Status Engine::Renice(ProcessId id, int32_t priority) {
  for (auto& [leader, waiting] : followers_) {
    for (std::unique_ptr<Process>& p : waiting) {
      if (p->id() != id) continue;
      p->set_priority(priority);
      return OkStatus();
    }
  }
  return scheduler_->Renice(id, priority);
}

std::vector<ProcessSnapshot> Engine::ProcessTable(TimePoint now) const {
  std::vector<const Process*> live = scheduler_->LiveProcesses();
  for (const auto& [leader, waiting] : followers_) {
    for (const std::unique_ptr<Process>& p : waiting) live.push_back(p.get());
  }
  std::sort(live.begin(), live.end(), [](const Process* a, const Process* b) { return a->id() < b->id(); });
  std::vector<ProcessSnapshot> out;
  out.reserve(live.size());
  for (const Process* p : live) {
    ProcessSnapshot s;
    s.id = p->id();
    s.tenant = p->tenant();
    s.kind = p->kind();
    s.state = p->state();
    s.priority = p->priority();
    s.batch_class = scheduler_->policy().BatchClass(*p, now);
    s.num_prompt_tokens = p->num_prompt_tokens();
    s.num_generated_tokens = p->num_generated_tokens();
    s.max_tokens = p->limits().max_tokens;
    const KvMemoryModel::Holding h = memory_->HoldingOf(p->id());
    s.kv_resident_blocks = h.resident_blocks;
    s.kv_swapped_blocks = h.swapped_blocks;
    s.num_preemptions = p->accounting().num_preemptions;
    if (p->adapter() != nullptr) s.adapter = p->adapter()->name;
    s.time_queued = p->TimeQueued(now);
    s.time_running = p->TimeRunning(now);
    s.age = now - p->accounting().submitted_at;
    out.push_back(std::move(s));
  }
  return out;
}

void Engine::EndFollowers(ProcessId leader, EndReason reason, const std::string& message) {
  auto it = followers_.find(leader);
  if (it == followers_.end()) return;
  for (std::unique_ptr<Process>& p : it->second) {
    CHECK(p->End(reason, clock_->Now(), message).ok());
    ended_followers_.push_back(std::move(p));
  }
  followers_.erase(it);
}

Status Engine::ForkFollowers(ProcessId leader, std::span<const float> logits,
                             std::vector<std::pair<ProcessId, TokenOutput>>& outputs) {
  auto it = followers_.find(leader);
  if (it == followers_.end()) return OkStatus();
  std::vector<std::unique_ptr<Process>> waiting = std::move(it->second);
  followers_.erase(it);
  std::vector<float> scratch;
  for (size_t i = 0; i < waiting.size(); ++i) {
    const ProcessId id = waiting[i]->id();
    scratch.assign(logits.begin(), logits.end());
    TokenOutput out = pipelines_.at(id).Next(scratch);
    if (Status st = scheduler_->EnterFork(leader, std::move(waiting[i]), out.token, out.ends); !st.ok()) {
      // The members not forked yet still need their end events.
      for (size_t j = i + 1; j < waiting.size(); ++j) {
        CHECK(waiting[j]->End(EndReason::kError, clock_->Now(), "engine step failed: " + st.ToString()).ok());
        ended_followers_.push_back(std::move(waiting[j]));
      }
      return st;
    }
    outputs.emplace_back(id, std::move(out));
  }
  return OkStatus();
}

Status Engine::Configure(const SchedulingSettings& settings) {
  RETURN_IF_ERROR(ValidateSchedulingSettings(settings));
  if (settings.policy != scheduler_->policy().name() || !(settings.policy_options == policy_options_)) {
    ASSIGN_OR_RETURN(std::unique_ptr<SchedulerPolicy> policy,
                     NewPolicyByName(settings.policy, settings.policy_options));
    scheduler_->SetPolicy(std::move(policy));
    policy_options_ = settings.policy_options;
  }
  return scheduler_->SetPreemptionOptions(settings.preemption);
}

SchedulingSettings Engine::scheduling() const {
  return SchedulingSettings{.policy = std::string(scheduler_->policy().name()),
                            .policy_options = policy_options_,
                            .preemption = scheduler_->preemption_options()};
}

StatusOr<StepReport> Engine::Step() {
  const auto start = std::chrono::steady_clock::now();
  StepReport report;
  const StepPlan plan = scheduler_->Schedule();
  report.num_ended = plan.ended.size();
  if (on_plan_) on_plan_(plan);
  if (plan.batch.empty()) return report;
  // From here an arrival that outranks the whole batch may stop it (InterruptFor).
  const TimePoint now = clock_->Now();
  int64_t top_class = INT64_MIN;
  for (const BatchEntry& e : plan.batch) {
    if (const Process* p = scheduler_->Find(e.id)) {
      top_class = std::max(top_class, scheduler_->policy().BatchClass(*p, now));
    }
  }
  interrupting_priority_.store(scheduler_->policy().InterruptingPriority(top_class), std::memory_order_relaxed);
  std::vector<std::pair<ProcessId, TokenOutput>> outputs;
  Status st = RunBatch(plan, report, outputs);
  // An interrupt asked for after the last layer's check comes too late for this step; the
  // arrival is in the next plan anyway.
  interrupting_priority_.store(SchedulerPolicy::kNeverInterrupts, std::memory_order_relaxed);
  ClearInterrupt();
  if (st.code() == StatusCode::kCancelled && st.message() == arch::BatchForward::kInterrupted) {
    // Nothing was sampled and no process advanced: the scheduler plans again from here.
    RETURN_IF_ERROR(scheduler_->AbandonStep(plan));
    report.num_tokens = 0;
    report.interrupted = true;
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return report;
  }
  if (!st.ok()) {
    FailStep(plan, outputs, st);
    return st;
  }
  if (on_output_) {
    for (const auto& [id, out] : outputs) on_output_(id, out);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

void Engine::FailStep(const StepPlan& plan, std::span<const std::pair<ProcessId, TokenOutput>> outputs,
                      const Status& error) {
  // Their KV may be half written and their pipelines a token ahead: they cannot go on. End
  // refuses (harmlessly) those CompleteStep ended before the failure; a leader takes the
  // followers still waiting for it along.
  const std::string message = "engine step failed: " + error.ToString();
  for (const BatchEntry& e : plan.batch) (void)End(e.id, EndReason::kError, message);
  for (const auto& [id, out] : outputs) (void)End(id, EndReason::kError, message);
}

Status Engine::RunBatch(const StepPlan& plan, StepReport& report,
                        std::vector<std::pair<ProcessId, TokenOutput>>& outputs) {
  const size_t vocab = model_.config().vocab_size;
  logits_.resize(plan.num_samples() * vocab);
  std::vector<arch::BatchSegment> segments;
  std::vector<const Process*> processes;
  // Per batch entry: one block table per layer group.
  std::vector<std::vector<std::span<const BlockId>>> tables(plan.batch.size());
  segments.reserve(plan.batch.size());
  size_t sample_idx = 0;
  // Embedding entries: where their rows of hidden_ start (SIZE_MAX: not an embedding).
  std::vector<size_t> hidden_offsets(plan.batch.size(), SIZE_MAX);
  size_t num_hidden_rows = 0;
  for (const BatchEntry& e : plan.batch) {
    const Process* p = scheduler_->Find(e.id);
    if (p == nullptr) return InternalError("scheduled process " + std::to_string(e.id) + " is unknown");
    ASSIGN_OR_RETURN(std::span<const SequenceId> seqs, memory_->SequencesOf(e.id));
    std::vector<std::span<const BlockId>>& group_tables = tables[segments.size()];
    for (const SequenceId seq : seqs) {
      ASSIGN_OR_RETURN(std::span<const BlockId> table, kv_->BlockTable(seq));
      group_tables.push_back(table);
    }
    arch::BatchSegment s;
    s.tokens = p->tokens().subspan(e.first_token_idx, e.num_tokens);
    s.pos0 = e.first_token_idx;
    s.block_table = group_tables[0];
    s.group_tables = group_tables;
    s.lora = p->adapter();
    const bool embeds = p->kind() == ProcessKind::kEmbed;
    s.logits = e.samples && !embeds ? arch::LogitsMode::kLast : arch::LogitsMode::kNone;
    s.logits_out = s.logits == arch::LogitsMode::kLast ? &logits_[sample_idx * vocab] : nullptr;
    if (e.samples) ++sample_idx;
    if (embeds) {
      hidden_offsets[segments.size()] = num_hidden_rows;
      num_hidden_rows += e.num_tokens;
    }
    segments.push_back(s);
    processes.push_back(p);
    report.num_tokens += e.num_tokens;
  }
  const size_t embd = model_.config().embd;
  hidden_.resize(num_hidden_rows * embd);
  for (size_t i = 0; i < segments.size(); ++i) {
    if (hidden_offsets[i] != SIZE_MAX) segments[i].hidden_out = &hidden_[hidden_offsets[i] * embd];
  }
  if (inject_step_fault_) RETURN_IF_ERROR(inject_step_fault_(plan.batch));
  RETURN_IF_ERROR(forward_->Run(segments, arch::WithLayerGroups(KvLayoutOf(*kv_), kv_groups_), kv_->num_blocks()));
  for (size_t i = 0; i < plan.batch.size(); ++i) {
    if (hidden_offsets[i] == SIZE_MAX) continue;
    const BatchEntry& e = plan.batch[i];
    poolers_[e.id].Add(std::span<const float>(&hidden_[hidden_offsets[i] * embd], e.num_tokens * embd), embd,
                       e.first_token_idx, e.samples);
  }

  // The K/V just written make full blocks findable by later prompts with the same prefix;
  // then, under a sliding window, the blocks no later token reads go back to the pool.
  for (size_t i = 0; i < plan.batch.size(); ++i) {
    const BatchEntry& e = plan.batch[i];
    const size_t next_position = e.first_token_idx + e.num_tokens;
    RETURN_IF_ERROR(memory_->CommitTokens(*processes[i], processes[i]->tokens().first(next_position)));
    RETURN_IF_ERROR(memory_->ReleaseOutOfWindow(*processes[i], next_position));
  }

  std::vector<TokenId> sampled;
  std::vector<EndReason> ends;
  sample_idx = 0;
  for (const BatchEntry& e : plan.batch) {
    if (!e.samples) continue;
    const std::span<float> logits(&logits_[sample_idx++ * vocab], vocab);
    if (auto pooler = poolers_.find(e.id); pooler != poolers_.end()) {
      // An embedding's prompt is complete: its vector is ready, and it ends in CompleteStep.
      embeddings_[e.id] = pooler->second.Finish(model_.config().pooling);
      poolers_.erase(pooler);
      sampled.push_back(0);
      ends.push_back(EndReason::kNone);
      continue;
    }
    // A group's leader computed the shared prompt: its followers fork it now, before
    // CompleteStep (which may end the leader and release its KV).
    RETURN_IF_ERROR(ForkFollowers(e.id, logits, outputs));
    TokenOutput out = pipelines_.at(e.id).Next(logits);
    sampled.push_back(out.token);
    ends.push_back(out.ends);
    outputs.emplace_back(e.id, std::move(out));
  }
  RETURN_IF_ERROR(scheduler_->CompleteStep(plan, sampled, ends));
  report.num_sampled = sampled.size();
  return OkStatus();
}

bool Engine::InterruptFor(int32_t priority) {
  if (priority < interrupting_priority_.load(std::memory_order_relaxed)) return false;
  interrupt_.store(true, std::memory_order_relaxed);
  return true;
}

std::vector<EndedProcess> Engine::TakeEnded() {
  std::vector<std::unique_ptr<Process>> processes = scheduler_->TakeEnded();
  // Leaders that ended before their prefill (expired, failed) take their followers along.
  for (const std::unique_ptr<Process>& p : processes) {
    if (followers_.contains(p->id())) EndFollowers(p->id(), p->end_reason(), p->end_message());
  }
  for (std::unique_ptr<Process>& p : ended_followers_) processes.push_back(std::move(p));
  ended_followers_.clear();
  std::vector<EndedProcess> ended;
  for (std::unique_ptr<Process>& p : processes) {
    EndedProcess e;
    poolers_.erase(p->id());
    if (auto emb = embeddings_.find(p->id()); emb != embeddings_.end()) {
      e.embedding = std::move(emb->second);
      embeddings_.erase(emb);
    }
    auto it = pipelines_.find(p->id());
    if (it != pipelines_.end()) {
      e.text = it->second.Flush();
      pipelines_.erase(it);
    }
    e.process = std::move(p);
    ended.push_back(std::move(e));
  }
  return ended;
}

}  // namespace llmasos::kernel
