#include "kernel/scheduler.h"

#include <algorithm>
#include <utility>

namespace llmasos::kernel {

std::string_view PreemptModeName(PreemptMode mode) {
  return mode == PreemptMode::kSwap ? "swap" : "recompute";
}

std::string_view PreemptChoiceName(PreemptChoice choice) {
  switch (choice) {
    case PreemptChoice::kCheaper: return "auto";
    case PreemptChoice::kSwap: return "swap";
    case PreemptChoice::kRecompute: return "recompute";
  }
  return "";
}

std::optional<PreemptChoice> ParsePreemptChoice(std::string_view name) {
  for (PreemptChoice c : {PreemptChoice::kCheaper, PreemptChoice::kSwap, PreemptChoice::kRecompute}) {
    if (name == PreemptChoiceName(c)) return c;
  }
  return std::nullopt;
}

PreemptMode ChoosePreemptMode(size_t swap_bytes, size_t free_swap_bytes, size_t recompute_tokens,
                              const PreemptionCosts& costs, PreemptChoice choice) {
  if (choice == PreemptChoice::kRecompute) return PreemptMode::kRecompute;
  if (swap_bytes == 0 || swap_bytes > free_swap_bytes) return PreemptMode::kRecompute;
  if (choice == PreemptChoice::kSwap) return PreemptMode::kSwap;
  // Swap pays the copy twice: out now, back in on resume.
  const double swap_s = 2.0 * static_cast<double>(swap_bytes) * costs.swap_seconds_per_byte;
  const double recompute_s = static_cast<double>(recompute_tokens) * costs.recompute_seconds_per_token;
  return swap_s < recompute_s ? PreemptMode::kSwap : PreemptMode::kRecompute;
}

Status ValidatePreemptionOptions(const PreemptionOptions& o) {
  if (o.min_tokens_before_preempt > kMaxMinTokensBeforePreempt) {
    return InvalidArgumentError("preemption.min_tokens_before_preempt: must be at most " +
                                std::to_string(kMaxMinTokensBeforePreempt));
  }
  // NaN fails both comparisons.
  if (!(o.costs.swap_seconds_per_byte >= 0 && o.costs.swap_seconds_per_byte <= 1)) {
    return InvalidArgumentError("preemption.swap_seconds_per_byte: must be a number in [0, 1]");
  }
  if (!(o.costs.recompute_seconds_per_token >= 0 && o.costs.recompute_seconds_per_token <= 60)) {
    return InvalidArgumentError("preemption.recompute_seconds_per_token: must be a number in [0, 60]");
  }
  return OkStatus();
}

size_t StepPlan::num_samples() const {
  return static_cast<size_t>(
      std::count_if(batch.begin(), batch.end(), [](const BatchEntry& e) { return e.samples; }));
}

StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(SchedulerOptions options,
                                                       std::unique_ptr<SchedulerPolicy> policy,
                                                       MemoryModel* memory, const Clock* clock) {
  if (options.max_batch_tokens == 0) return InvalidArgumentError("scheduler max_batch_tokens must be >= 1");
  if (options.max_running == 0) return InvalidArgumentError("scheduler max_running must be >= 1");
  if (options.max_prefill_chunk_tokens == 0) {
    return InvalidArgumentError("scheduler max_prefill_chunk_tokens must be >= 1");
  }
  RETURN_IF_ERROR(ValidatePreemptionOptions(options.preemption));
  if (policy == nullptr) return InvalidArgumentError("scheduler needs a policy");
  CHECK(memory != nullptr);
  CHECK(clock != nullptr);
  return std::unique_ptr<Scheduler>(new Scheduler(options, std::move(policy), memory, clock));
}

Scheduler::Scheduler(SchedulerOptions options, std::unique_ptr<SchedulerPolicy> policy,
                     MemoryModel* memory, const Clock* clock)
    : options_(options), policy_(std::move(policy)), memory_(memory), clock_(clock) {}

StatusOr<ProcessId> Scheduler::Submit(ProcessSpec spec) {
  const TimePoint now = clock_->Now();
  RETURN_IF_ERROR(Process::Validate(spec, now));
  RETURN_IF_ERROR(CheckCapacity(spec));
  const ProcessId id = NewId();
  RETURN_IF_ERROR(Enter(Process::CreateValidated(id, std::move(spec), now)));
  return id;
}

Status Scheduler::CheckCapacity(const ProcessSpec& spec) const {
  return CheckCapacity(spec.prompt.size(), spec.limits.max_tokens);
}

Status Scheduler::CheckCapacity(size_t num_prompt_tokens, int32_t max_tokens) const {
  if (max_tokens < 1) return OkStatus();  // Process::Validate names this
  // The last generated token is never fed back, so the KV holds prompt + max_tokens - 1.
  const size_t max_kv_tokens = num_prompt_tokens + static_cast<size_t>(max_tokens) - 1;
  const size_t need = memory_->PeakBlocks(max_kv_tokens, options_.max_prefill_chunk_tokens);
  if (need > memory_->NumTotalBlocks()) {
    // Permanent: no amount of waiting makes it fit, so it is the request that is wrong.
    return InvalidArgumentError("process needs " + std::to_string(need) + " KV blocks (" +
                                std::to_string(num_prompt_tokens) + " prompt tokens + max_tokens " +
                                std::to_string(max_tokens) + ") but the whole KV pool has " +
                                std::to_string(memory_->NumTotalBlocks()) + "; it could never run");
  }
  return OkStatus();
}

StatusOr<ProcessId> Scheduler::SubmitAs(ProcessSpec spec, ProcessId id, TimePoint submitted_at) {
  RETURN_IF_ERROR(Process::Validate(spec, submitted_at));
  RETURN_IF_ERROR(CheckCapacity(spec));
  RETURN_IF_ERROR(Enter(Process::CreateValidated(id, std::move(spec), submitted_at)));
  return id;
}

Status Scheduler::Enter(std::unique_ptr<Process> p) {
  const ProcessId id = p->id();
  if (id == 0 || id >= next_id_.load(std::memory_order_relaxed)) {
    return InvalidArgumentError("process id " + std::to_string(id) + " was not handed out by NewId");
  }
  if (id <= last_entered_id_) {
    return InvalidArgumentError("process id " + std::to_string(id) + " is not above the last id (" +
                                std::to_string(last_entered_id_) + ")");
  }
  last_entered_id_ = id;
  policy_->OnSubmitted(*p);
  live_.emplace(id, std::move(p));
  return OkStatus();
}

Status Scheduler::EnterFork(ProcessId parent_id, std::unique_ptr<Process> child, TokenId first, EndReason end) {
  auto it = live_.find(parent_id);
  if (it == live_.end() || it->second->state() != ProcessState::kRunning) {
    return FailedPreconditionError("fork: process " + std::to_string(parent_id) + " is not running");
  }
  const Process& parent = *it->second;
  const ProcessId id = child->id();
  if (id == 0 || id >= next_id_.load(std::memory_order_relaxed) || live_.contains(id)) {
    return InvalidArgumentError("fork: process id " + std::to_string(id) + " was not handed out by NewId");
  }
  if (child->num_tokens() != parent.num_prompt_tokens() || child->num_computed_tokens() != 0 ||
      !std::equal(child->tokens().begin(), child->tokens().end(), parent.prompt().begin())) {
    return InvalidArgumentError("fork: process " + std::to_string(id) + " does not have the prompt of " +
                                std::to_string(parent_id));
  }
  if (end != EndReason::kNone && TerminalStateOf(end) != ProcessState::kFinished) {
    return InvalidArgumentError("fork: a sampled token cannot end its process with " +
                                std::string(EndReasonName(end)));
  }
  RETURN_IF_ERROR(memory_->Fork(parent, *child));
  const TimePoint now = clock_->Now();
  Process& p = *child;
  CHECK(p.TransitionTo(ProcessState::kRunning, now).ok());
  p.MarkForked();
  p.AppendToken(first, now);
  policy_->OnSubmitted(p);
  live_.emplace(id, std::move(child));
  if (end != EndReason::kNone) {
    EndProcess(p, end);
  } else if (p.num_remaining_tokens() == 0) {
    EndProcess(p, EndReason::kLength);
  }
  return OkStatus();
}

Status Scheduler::End(ProcessId id, EndReason reason, std::string message) {
  if (reason == EndReason::kNone) return InvalidArgumentError("ending process " + std::to_string(id) + " needs a reason");
  auto it = live_.find(id);
  if (it == live_.end()) {
    if (Find(id) != nullptr) return FailedPreconditionError("process " + std::to_string(id) + " already ended");
    return NotFoundError("no process " + std::to_string(id));
  }
  if (TerminalStateOf(reason) == ProcessState::kFinished && it->second->state() != ProcessState::kRunning) {
    return FailedPreconditionError("process " + std::to_string(id) + " is " +
                                   std::string(ProcessStateName(it->second->state())) + ", not running");
  }
  EndProcess(*it->second, reason, std::move(message));
  return OkStatus();
}

void Scheduler::EndProcess(Process& p, EndReason reason, std::string message) {
  memory_->Release(p);
  Status st = p.End(reason, clock_->Now(), std::move(message));
  CHECK(st.ok()) << st.ToString();
  policy_->OnRemoved(p);
  auto it = live_.find(p.id());
  CHECK(it != live_.end());
  ended_.push_back(std::move(it->second));
  live_.erase(it);
}

Status Scheduler::Renice(ProcessId id, int32_t priority) {
  auto it = live_.find(id);
  if (it == live_.end()) {
    if (Find(id) != nullptr) return FailedPreconditionError("process " + std::to_string(id) + " already ended");
    return NotFoundError("no process " + std::to_string(id));
  }
  it->second->set_priority(priority);
  return OkStatus();
}

Status Scheduler::SetPreemptionOptions(const PreemptionOptions& options) {
  RETURN_IF_ERROR(ValidatePreemptionOptions(options));
  options_.preemption = options;
  return OkStatus();
}

void Scheduler::SetPolicy(std::unique_ptr<SchedulerPolicy> policy) {
  CHECK(policy != nullptr);
  policy_ = std::move(policy);
  for (auto& [id, p] : live_) policy_->OnSubmitted(*p);
}

size_t Scheduler::NumRunning() const {
  return static_cast<size_t>(std::count_if(live_.begin(), live_.end(), [](const auto& kv) {
    return kv.second->state() == ProcessState::kRunning;
  }));
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  plan.step_idx = next_step_idx_++;
  const TimePoint now = clock_->Now();

  // Expired processes leave before anything is handed out.
  std::vector<Process*> expired;
  for (auto& [id, p] : live_) {
    if (p->limits().deadline && *p->limits().deadline <= now) expired.push_back(p.get());
  }
  for (Process* p : expired) {
    plan.ended.push_back(p->id());
    EndProcess(*p, EndReason::kDeadline);
  }
  // Last step's victims rejoin the line (their swap-out is done by now).
  for (auto& [id, p] : live_) {
    if (p->state() == ProcessState::kPreempted) {
      Status st = p->TransitionTo(ProcessState::kQueued, now);
      CHECK(st.ok()) << st.ToString();
    }
  }

  std::vector<Process*> ranked;
  ranked.reserve(live_.size());
  for (auto& [id, p] : live_) ranked.push_back(p.get());
  policy_->Rank(ranked, now);

  CapacityStep(plan, ranked);
  BatchStep(plan, ranked, now);
  return plan;
}

void Scheduler::Preempt(Process& victim, StepPlan& plan, size_t& num_running) {
  const PreemptionOptions& o = options_.preemption;
  PreemptMode mode = ChoosePreemptMode(memory_->SwapOutBytes(victim), memory_->NumFreeSwapBytes(),
                                       victim.num_computed_tokens(), o.costs, o.mode);
  if (mode == PreemptMode::kSwap && !memory_->SwapOut(victim).ok()) mode = PreemptMode::kRecompute;
  if (mode == PreemptMode::kRecompute) {
    memory_->Release(victim);
    victim.ResetComputed();
  }
  victim.CountPreemption(mode == PreemptMode::kSwap);
  Status st = victim.TransitionTo(ProcessState::kPreempted, clock_->Now());
  CHECK(st.ok()) << st.ToString();
  CHECK_GT(num_running, 0u);
  --num_running;
  ++num_preemptions_;
  if (mode == PreemptMode::kSwap) ++num_swap_preemptions_;
  plan.preempted.push_back(Preemption{victim.id(), mode});
}

namespace {

// Grows `p` to hold `num_tokens` tokens; the caller checked that the blocks are free.
void GrowChecked(MemoryModel& memory, Process& p, size_t num_tokens) {
  StatusOr<size_t> cached = memory.Grow(p, num_tokens);
  CHECK(cached.ok()) << "process " << p.id() << ": " << cached.status().ToString();
  // At least one token must still be fed to produce logits.
  if (*cached > 0) p.MarkPrefixCached(std::min(*cached, p.num_tokens() - 1));
}

}  // namespace

bool Scheduler::TryAdmit(Process& p, std::vector<Process*>& ranked, size_t rank_idx,
                         size_t& num_running, StepPlan& plan) {
  // Admission reserves its first prefill chunk (a decode token for a swapped-in process), so
  // an admitted process can make real progress instead of overcommitting the pool.
  const size_t target =
      std::min(p.num_tokens(), p.num_computed_tokens() + options_.max_prefill_chunk_tokens);
  const size_t need = memory_->BlocksToGrow(p, target);
  auto fits = [&] { return need <= memory_->NumFreeBlocks() && num_running < options_.max_running; };
  if (!fits()) {
    if (!policy_->preemptive() || !options_.preemption.waiting_may_preempt) return false;
    // Pick victims from the bottom of the ranking until enough would be freed; preempt only
    // if that suffices.
    std::vector<Process*> victims;
    size_t freeable = memory_->NumFreeBlocks();
    for (size_t j = ranked.size(); j-- > rank_idx + 1;) {
      Process* q = ranked[j];
      if (q->state() != ProcessState::kRunning) continue;
      if (q->num_tokens_since_admitted() < options_.preemption.min_tokens_before_preempt) continue;
      victims.push_back(q);
      freeable += memory_->NumBlocksHeld(*q);
      if (freeable >= need && num_running - victims.size() < options_.max_running) break;
    }
    if (freeable < need || num_running - victims.size() >= options_.max_running) return false;
    for (Process* v : victims) Preempt(*v, plan, num_running);
    if (!fits()) return false;  // sharing made the estimate optimistic
  }
  GrowChecked(*memory_, p, target);
  Status st = p.TransitionTo(ProcessState::kRunning, clock_->Now());
  CHECK(st.ok()) << st.ToString();
  ++num_running;
  plan.admitted.push_back(p.id());
  return true;
}

void Scheduler::CapacityStep(StepPlan& plan, std::vector<Process*>& ranked) {
  size_t num_running = NumRunning();
  bool admitting = true;
  for (size_t i = 0; i < ranked.size(); ++i) {
    Process& p = *ranked[i];
    if (p.state() == ProcessState::kRunning) {
      // Keep it, with room for one more token; make room from the bottom of the ranking.
      const size_t target = p.num_computed_tokens() + 1;
      while (memory_->BlocksToGrow(p, target) > memory_->NumFreeBlocks()) {
        Process* victim = nullptr;
        for (size_t j = ranked.size(); j-- > i + 1;) {
          if (ranked[j]->state() == ProcessState::kRunning) {
            victim = ranked[j];
            break;
          }
        }
        if (victim == nullptr) break;
        Preempt(*victim, plan, num_running);
      }
      if (memory_->BlocksToGrow(p, target) > memory_->NumFreeBlocks()) {
        Preempt(p, plan, num_running);
        continue;
      }
      GrowChecked(*memory_, p, target);
    } else if (p.state() == ProcessState::kQueued && admitting) {
      // Head-of-line: once one does not fit, later (lower-ranked) ones wait too.
      if (!TryAdmit(p, ranked, i, num_running, plan)) admitting = false;
    }
  }
}

void Scheduler::BatchStep(StepPlan& plan, const std::vector<Process*>& ranked, TimePoint now) {
  size_t budget = options_.max_batch_tokens;
  // Whether the next token of `p` has KV room. The capacity step reserves it for every
  // running process, except one admitted with a prefix-cache hit that ran past its admission
  // reservation; such a process sits this step out (it keeps its blocks) if the pool is dry.
  auto has_room_for_one = [&](Process& p) {
    const size_t next = p.num_computed_tokens() + 1;
    if (memory_->BlocksToGrow(p, next) > memory_->NumFreeBlocks()) return false;
    GrowChecked(*memory_, p, next);
    return true;
  };
  // Class by class (SchedulerPolicy::BatchClass), highest first, in rank order within each.
  std::vector<std::pair<int64_t, Process*>> by_class;
  by_class.reserve(ranked.size());
  for (Process* p : ranked) {
    if (p->state() == ProcessState::kRunning) by_class.emplace_back(policy_->BatchClass(*p, now), p);
  }
  std::stable_sort(by_class.begin(), by_class.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  bool class_prefilled = false;
  for (size_t begin = 0, end = 0; begin < by_class.size() && budget > 0 && !class_prefilled; begin = end) {
    end = begin;
    while (end < by_class.size() && by_class[end].first == by_class[begin].first) ++end;
    // Decodes first: one token each.
    for (size_t i = begin; i < end && budget > 0; ++i) {
      Process* p = by_class[i].second;
      if (p->num_pending_tokens() != 1) continue;
      if (!has_room_for_one(*p)) continue;
      plan.batch.push_back(BatchEntry{p->id(), p->num_computed_tokens(), 1, false, true});
      --budget;
    }
    // Then prefill chunks, each as long as the budget, the chunk limit and free memory allow.
    for (size_t i = begin; i < end && budget > 0; ++i) {
      Process* p = by_class[i].second;
      if (p->num_pending_tokens() < 2) continue;
      if (!has_room_for_one(*p)) continue;
      const size_t computed = p->num_computed_tokens();
      size_t lo = 1;
      size_t hi = std::min({p->num_pending_tokens(), budget, options_.max_prefill_chunk_tokens});
      while (lo < hi) {
        const size_t mid = lo + (hi - lo + 1) / 2;
        if (memory_->BlocksToGrow(*p, computed + mid) <= memory_->NumFreeBlocks()) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      GrowChecked(*memory_, *p, computed + lo);
      CHECK_EQ(p->num_computed_tokens(), computed) << "prefix cache hit after admission";
      plan.batch.push_back(BatchEntry{p->id(), computed, lo, true, computed + lo == p->num_tokens()});
      budget -= lo;
      // A step that prefills a class runs nothing of the classes below it, so the prompt's
      // last chunk does not wait for a full step of lower-class work (on a CPU, their
      // decodes read all their KV: as slow as a prefill chunk).
      class_prefilled = true;
    }
  }
  plan.num_batch_tokens = options_.max_batch_tokens - budget;
}

Status Scheduler::CheckLatestPlan(const StepPlan& plan, std::string_view caller) const {
  if (next_step_idx_ == 0 || plan.step_idx != next_step_idx_ - 1 || completed_step_idx_ == plan.step_idx) {
    return InvalidArgumentError(std::string(caller) + ": plan " + std::to_string(plan.step_idx) +
                                " is not the latest uncompleted plan");
  }
  return OkStatus();
}

Status Scheduler::AbandonStep(const StepPlan& plan) {
  RETURN_IF_ERROR(CheckLatestPlan(plan, "AbandonStep"));
  completed_step_idx_ = plan.step_idx;
  ++num_abandoned_steps_;
  return OkStatus();
}

Status Scheduler::CompleteStep(const StepPlan& plan, std::span<const TokenId> sampled,
                               std::span<const EndReason> ends) {
  RETURN_IF_ERROR(CheckLatestPlan(plan, "CompleteStep"));
  if (sampled.size() != plan.num_samples()) {
    return InvalidArgumentError("CompleteStep: got " + std::to_string(sampled.size()) +
                                " sampled tokens for a plan with " + std::to_string(plan.num_samples()) +
                                " sampling entries");
  }
  if (!ends.empty() && ends.size() != sampled.size()) {
    return InvalidArgumentError("CompleteStep: got " + std::to_string(ends.size()) + " end reasons for " +
                                std::to_string(sampled.size()) + " sampled tokens");
  }
  for (size_t i = 0; i < sampled.size(); ++i) {
    if (!ends.empty() && ends[i] != EndReason::kNone && TerminalStateOf(ends[i]) != ProcessState::kFinished) {
      return InvalidArgumentError("CompleteStep: a sampled token cannot end its process with " +
                                  std::string(EndReasonName(ends[i])));
    }
    if (sampled[i] < 0) {
      return InvalidArgumentError("CompleteStep: sampled token " + std::to_string(i) + " is negative");
    }
  }
  completed_step_idx_ = plan.step_idx;
  const TimePoint now = clock_->Now();
  size_t sample_idx = 0;
  for (const BatchEntry& e : plan.batch) {
    const EndReason end = e.samples && !ends.empty() ? ends[sample_idx] : EndReason::kNone;
    const TokenId token = e.samples ? sampled[sample_idx++] : -1;
    auto it = live_.find(e.id);
    if (it == live_.end() || it->second->state() != ProcessState::kRunning) continue;  // cancelled
    Process& p = *it->second;
    CHECK_EQ(p.num_computed_tokens(), e.first_token_idx) << "process " << p.id() << " moved during the step";
    // Policies are charged for progress only: recomputing KV lost to a preemption is the
    // scheduler's cost, not the process's (or its tenant's) service.
    const size_t num_new = p.MarkComputed(e.num_tokens);
    if (num_new > 0) policy_->OnServed(p, num_new);
    if (!e.samples) continue;
    if (p.kind() == ProcessKind::kEmbed) {  // its prompt is computed: nothing to generate
      EndProcess(p, EndReason::kEndOfGeneration);
      continue;
    }
    p.AppendToken(token, now);
    if (end != EndReason::kNone) {
      EndProcess(p, end);
    } else if (p.num_remaining_tokens() == 0) {
      EndProcess(p, EndReason::kLength);
    }
  }
  return OkStatus();
}

const Process* Scheduler::Find(ProcessId id) const {
  auto it = live_.find(id);
  if (it != live_.end()) return it->second.get();
  for (const auto& p : ended_) {
    if (p->id() == id) return p.get();
  }
  return nullptr;
}

std::vector<const Process*> Scheduler::LiveProcesses() const {
  std::vector<const Process*> out;
  out.reserve(live_.size());
  for (const auto& [id, p] : live_) out.push_back(p.get());
  return out;
}

std::vector<std::unique_ptr<Process>> Scheduler::TakeEnded() {
  std::vector<std::unique_ptr<Process>> out;
  out.swap(ended_);
  return out;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  s.num_running = NumRunning();
  s.num_queued = live_.size() - s.num_running;
  for (const auto& [id, p] : live_) {
    if (p->state() == ProcessState::kRunning || p->accounting().num_preemptions == 0) continue;
    ++s.num_preempted;
    if (p->num_computed_tokens() > 0) ++s.num_swapped;
  }
  s.num_steps = next_step_idx_;
  s.num_preemptions = num_preemptions_;
  s.num_swap_preemptions = num_swap_preemptions_;
  s.num_abandoned_steps = num_abandoned_steps_;
  return s;
}

}  // namespace llmasos::kernel
