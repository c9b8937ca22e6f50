#include "kernel/process.h"

#include <algorithm>
#include <utility>

namespace llmasos::kernel {
namespace {

constexpr size_t kMaxTenantBytes = 128;

}  // namespace

std::string_view ProcessStateName(ProcessState state) {
  switch (state) {
    case ProcessState::kQueued: return "queued";
    case ProcessState::kRunning: return "running";
    case ProcessState::kPreempted: return "preempted";
    case ProcessState::kFinished: return "finished";
    case ProcessState::kCancelled: return "cancelled";
    case ProcessState::kFailed: return "failed";
  }
  return "unknown";
}

std::string_view EndReasonName(EndReason reason) {
  switch (reason) {
    case EndReason::kNone: return "none";
    case EndReason::kEndOfGeneration: return "end_of_generation";
    case EndReason::kStopString: return "stop_string";
    case EndReason::kLength: return "length";
    case EndReason::kDeadline: return "deadline";
    case EndReason::kCancelled: return "cancelled";
    case EndReason::kKilled: return "killed";
    case EndReason::kShutdown: return "shutdown";
    case EndReason::kError: return "error";
  }
  return "unknown";
}

ProcessState TerminalStateOf(EndReason reason) {
  switch (reason) {
    case EndReason::kEndOfGeneration:
    case EndReason::kStopString:
    case EndReason::kLength: return ProcessState::kFinished;
    case EndReason::kCancelled:
    case EndReason::kKilled:
    case EndReason::kShutdown: return ProcessState::kCancelled;
    case EndReason::kDeadline:
    case EndReason::kError: return ProcessState::kFailed;
    case EndReason::kNone: break;
  }
  CHECK(false) << "TerminalStateOf(kNone)";
  return ProcessState::kFailed;
}

bool IsLegalTransition(ProcessState from, ProcessState to) {
  using S = ProcessState;
  switch (from) {
    case S::kQueued: return to == S::kRunning || to == S::kCancelled || to == S::kFailed;
    case S::kRunning:
      return to == S::kPreempted || to == S::kFinished || to == S::kCancelled || to == S::kFailed;
    case S::kPreempted: return to == S::kQueued || to == S::kCancelled || to == S::kFailed;
    case S::kFinished:
    case S::kCancelled:
    case S::kFailed: return false;
  }
  return false;
}

StatusOr<std::unique_ptr<Process>> Process::Create(ProcessId id, ProcessSpec spec, TimePoint now) {
  RETURN_IF_ERROR(Validate(spec, now));
  return CreateValidated(id, std::move(spec), now);
}

std::unique_ptr<Process> Process::CreateValidated(ProcessId id, ProcessSpec spec, TimePoint now) {
  spec.stop.clear();
  return std::unique_ptr<Process>(new Process(id, std::move(spec), now));
}

Status Process::Validate(const ProcessSpec& spec, TimePoint now) {
  if (spec.tenant.empty() || spec.tenant.size() > kMaxTenantBytes) {
    return InvalidArgumentError("process tenant must be 1.." + std::to_string(kMaxTenantBytes) +
                                " bytes, got " + std::to_string(spec.tenant.size()));
  }
  if (spec.limits.max_tokens < 1) {
    return InvalidArgumentError("process max_tokens must be >= 1, got " +
                                std::to_string(spec.limits.max_tokens));
  }
  if (spec.kind == ProcessKind::kEmbed && spec.limits.max_tokens != 1) {
    return InvalidArgumentError("an embedding process generates no tokens: its max_tokens must be 1, got " +
                                std::to_string(spec.limits.max_tokens));
  }
  if (spec.prompt.empty()) return InvalidArgumentError("process prompt is empty");
  for (size_t i = 0; i < spec.prompt.size(); ++i) {
    if (spec.prompt[i] < 0) {
      return InvalidArgumentError("process prompt token " + std::to_string(i) + " is negative (" +
                                  std::to_string(spec.prompt[i]) + ")");
    }
  }
  if (spec.stop.size() > kMaxStopStrings) {
    return InvalidArgumentError("process has " + std::to_string(spec.stop.size()) + " stop strings; at most " +
                                std::to_string(kMaxStopStrings) + " are allowed");
  }
  for (size_t i = 0; i < spec.stop.size(); ++i) {
    if (spec.stop[i].size() > kMaxStopStringBytes) {
      return InvalidArgumentError("process stop string " + std::to_string(i) + " is " +
                                  std::to_string(spec.stop[i].size()) + " bytes; at most " +
                                  std::to_string(kMaxStopStringBytes) + " are allowed");
    }
  }
  if (spec.limits.deadline && *spec.limits.deadline <= now) {
    return InvalidArgumentError("process deadline is already past");
  }
  Status st = sampling::ValidateSamplingParams(spec.sampling);
  if (!st.ok()) return st.Annotate("process sampling");
  return OkStatus();
}

Process::Process(ProcessId id, ProcessSpec spec, TimePoint now)
    : id_(id), spec_(std::move(spec)), state_entered_at_(now) {
  tokens_ = std::move(spec_.prompt);
  spec_.prompt.clear();
  num_prompt_tokens_ = tokens_.size();
  accounting_.submitted_at = now;
  accounting_.num_prompt_tokens = static_cast<int64_t>(num_prompt_tokens_);
}

size_t Process::num_remaining_tokens() const {
  const size_t max = static_cast<size_t>(spec_.limits.max_tokens);
  return max > num_generated_tokens() ? max - num_generated_tokens() : 0;
}

Duration Process::TimeQueued(TimePoint now) const {
  Duration d = accounting_.time_queued;
  if (state_ == ProcessState::kQueued || state_ == ProcessState::kPreempted) d += now - state_entered_at_;
  return d;
}

Duration Process::TimeRunning(TimePoint now) const {
  Duration d = accounting_.time_running;
  if (state_ == ProcessState::kRunning) d += now - state_entered_at_;
  return d;
}

Status Process::TransitionTo(ProcessState next, TimePoint now) {
  if (IsTerminal(next) || !IsLegalTransition(state_, next)) {
    return FailedPreconditionError("process " + std::to_string(id_) + ": illegal transition " +
                                   std::string(ProcessStateName(state_)) + " -> " +
                                   std::string(ProcessStateName(next)));
  }
  Enter(next, now);
  return OkStatus();
}

Status Process::End(EndReason reason, TimePoint now, std::string message) {
  if (reason == EndReason::kNone) return FailedPreconditionError("process " + std::to_string(id_) + ": End without a reason");
  const ProcessState next = TerminalStateOf(reason);
  if (!IsLegalTransition(state_, next)) {
    return FailedPreconditionError("process " + std::to_string(id_) + ": illegal transition " +
                                   std::string(ProcessStateName(state_)) + " -> " +
                                   std::string(ProcessStateName(next)) + " (" +
                                   std::string(EndReasonName(reason)) + ")");
  }
  Enter(next, now);
  accounting_.ended_at = now;
  end_reason_ = reason;
  end_message_ = std::move(message);
  return OkStatus();
}

void Process::Enter(ProcessState next, TimePoint now) {
  CHECK(now >= state_entered_at_) << "process clock ran backwards";
  const Duration spent = now - state_entered_at_;
  if (state_ == ProcessState::kRunning) {
    accounting_.time_running += spent;
  } else {
    accounting_.time_queued += spent;
  }
  if (next == ProcessState::kRunning) num_tokens_since_admitted_ = 0;
  state_ = next;
  state_entered_at_ = now;
}

size_t Process::MarkComputed(size_t num_tokens) {
  CHECK(state_ == ProcessState::kRunning) << "MarkComputed on a " << ProcessStateName(state_) << " process";
  CHECK_LE(num_computed_tokens_ + num_tokens, tokens_.size());
  num_computed_tokens_ += num_tokens;
  const size_t num_new =
      num_computed_tokens_ > num_computed_high_water_ ? num_computed_tokens_ - num_computed_high_water_ : 0;
  num_computed_high_water_ = std::max(num_computed_high_water_, num_computed_tokens_);
  num_tokens_since_admitted_ += num_new;
  accounting_.num_computed_tokens += static_cast<int64_t>(num_tokens);
  return num_new;
}

void Process::MarkPrefixCached(size_t num_tokens) {
  CHECK_LT(num_tokens, tokens_.size());
  if (num_tokens <= num_computed_tokens_) return;
  accounting_.num_prefix_cached_tokens += static_cast<int64_t>(num_tokens - num_computed_tokens_);
  num_computed_tokens_ = num_tokens;
  num_computed_high_water_ = std::max(num_computed_high_water_, num_computed_tokens_);
}

void Process::MarkForked() {
  CHECK_EQ(num_computed_tokens_, 0u);
  num_computed_tokens_ = tokens_.size();
  num_computed_high_water_ = num_computed_tokens_;
  accounting_.num_prefix_cached_tokens += static_cast<int64_t>(num_computed_tokens_);
}

void Process::AppendToken(TokenId token, TimePoint now) {
  CHECK(state_ == ProcessState::kRunning) << "AppendToken on a " << ProcessStateName(state_) << " process";
  CHECK_EQ(num_pending_tokens(), 0u);
  CHECK_GE(token, 0);
  tokens_.push_back(token);
  ++accounting_.num_generated_tokens;
  if (!accounting_.first_token_at) accounting_.first_token_at = now;
}

void Process::CountPreemption(bool swapped) {
  ++accounting_.num_preemptions;
  if (swapped) {
    ++accounting_.num_swap_preemptions;
  } else {
    ++accounting_.num_recompute_preemptions;
  }
}

}  // namespace llmasos::kernel
