// Process: the control block of one generation request.
//
// A process owns its token sequence (prompt followed by generated tokens), its limits and its
// accounting. It does not own KV memory: the scheduler asks a MemoryModel (backed by KvMemory)
// for blocks on the process's behalf, keyed by id().
//
// State machine (every other transition is an error, see TransitionTo):
//
//   kQueued --admit--> kRunning --preempt--> kPreempted --requeue--> kQueued ...
//   kQueued | kRunning | kPreempted --> kCancelled | kFailed        (with a reason)
//   kRunning --> kFinished                                          (with a reason)
//
// kPreempted lasts from the step that evicted the process until the next capacity step puts it
// back in line; in between, the engine completes the swap-out, and the process cannot be
// readmitted in the very step that evicted it (no thrash within a step).
//
// Invariants:
//   tokens_ = prompt ++ generated; num_prompt_tokens_ >= 1.
//   num_computed_tokens_ <= num_tokens(): tokens whose KV is in memory (or swapped out).
//   A kRunning process has num_computed_tokens_ < num_tokens(): at least one token to feed.
//
// Thread safety: none; the scheduler (one engine thread) owns every Process.
#ifndef LLMASOS_KERNEL_PROCESS_H_
#define LLMASOS_KERNEL_PROCESS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/clock.h"
#include "model/sampling/sampler.h"
#include "util/status.h"

namespace llmasos::kernel {

using ProcessId = uint64_t;
using TokenId = sampling::TokenId;

enum class ProcessState { kQueued, kRunning, kPreempted, kFinished, kCancelled, kFailed };
std::string_view ProcessStateName(ProcessState state);
inline bool IsTerminal(ProcessState s) {
  return s == ProcessState::kFinished || s == ProcessState::kCancelled || s == ProcessState::kFailed;
}
// Whether `from -> to` is an edge of the state machine above.
bool IsLegalTransition(ProcessState from, ProcessState to);

struct ProcessLimits {
  int32_t max_tokens = 256;           // generated tokens; >= 1
  std::optional<TimePoint> deadline;  // none: no deadline
};

// What a submitter asks for. Validated by Process::Create.
struct ProcessSpec {
  std::string tenant = "default";  // 1..128 bytes
  int32_t priority = 0;            // higher runs first under the Priority policy
  sampling::SamplingParams sampling;
  ProcessLimits limits;
  std::vector<TokenId> prompt;     // >= 1 token, none negative
};

struct ProcessAccounting {
  TimePoint submitted_at{};
  std::optional<TimePoint> first_token_at;  // when the first generated token was appended
  std::optional<TimePoint> ended_at;
  Duration time_queued{};   // in kQueued or kPreempted, closed intervals only
  Duration time_running{};  // in kRunning, closed intervals only
  int64_t num_prompt_tokens = 0;
  int64_t num_generated_tokens = 0;
  int64_t num_computed_tokens = 0;   // tokens fed through the model, recomputation included
  int64_t num_preemptions = 0;
  int64_t num_swap_preemptions = 0;
  int64_t num_recompute_preemptions = 0;
  int64_t num_prefix_cached_tokens = 0;  // prompt tokens whose KV came from the prefix cache
};

class Process {
 public:
  // Validates `spec` (InvalidArgument naming the field) and starts the process in kQueued at
  // `now`.
  static StatusOr<std::unique_ptr<Process>> Create(ProcessId id, ProcessSpec spec, TimePoint now);
  // The checks of Create alone. Thread-safe (a pure function).
  static Status Validate(const ProcessSpec& spec, TimePoint now);

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  ProcessId id() const { return id_; }
  const std::string& tenant() const { return spec_.tenant; }
  int32_t priority() const { return spec_.priority; }
  const sampling::SamplingParams& sampling() const { return spec_.sampling; }
  const ProcessLimits& limits() const { return spec_.limits; }

  ProcessState state() const { return state_; }
  // Why the process ended (or was preempted last); empty while nothing happened.
  const std::string& reason() const { return reason_; }
  TimePoint state_entered_at() const { return state_entered_at_; }
  const ProcessAccounting& accounting() const { return accounting_; }
  // Time spent queued / running up to `now`, the open interval included.
  Duration TimeQueued(TimePoint now) const;
  Duration TimeRunning(TimePoint now) const;

  // Tokens: prompt followed by generated.
  std::span<const TokenId> tokens() const { return tokens_; }
  std::span<const TokenId> prompt() const { return std::span(tokens_).first(num_prompt_tokens_); }
  std::span<const TokenId> generated() const { return std::span(tokens_).subspan(num_prompt_tokens_); }
  size_t num_tokens() const { return tokens_.size(); }
  size_t num_prompt_tokens() const { return num_prompt_tokens_; }
  size_t num_generated_tokens() const { return tokens_.size() - num_prompt_tokens_; }
  // Generated tokens still allowed by max_tokens. Shortest-job-first uses it as the job size.
  size_t num_remaining_tokens() const;

  // KV progress: tokens whose KV is computed; the rest must be fed (prefill or decode).
  size_t num_computed_tokens() const { return num_computed_tokens_; }
  size_t num_pending_tokens() const { return tokens_.size() - num_computed_tokens_; }
  // New tokens fed since the process was last admitted: recomputation of KV it had before a
  // preemption does not count (the anti-thrash guard and policies measure progress, so a
  // process whose whole turn is recompute cannot be sent to the back forever).
  size_t num_tokens_since_admitted() const { return num_tokens_since_admitted_; }

  // Moves along the state machine at `now`, closing the accounting interval of the old state.
  // FailedPrecondition naming both states for an illegal transition (the process is unchanged).
  // `reason` is kept for terminal states and kPreempted.
  Status TransitionTo(ProcessState next, TimePoint now, std::string reason = "");

  // --- Used by the scheduler. ---
  // Records `num_tokens` more tokens fed through the model; returns how many of them are new
  // progress (not recomputation). REQUIRES: kRunning and
  // num_computed_tokens() + num_tokens <= num_tokens().
  size_t MarkComputed(size_t num_tokens);
  // KV was dropped (recompute preemption): everything must be fed again.
  void ResetComputed() { num_computed_tokens_ = 0; }
  // `num_tokens` leading tokens were found in the prefix cache. REQUIRES: < this->num_tokens().
  void MarkPrefixCached(size_t num_tokens);
  // Appends a sampled token at `now`. REQUIRES: kRunning, num_pending_tokens() == 0.
  void AppendToken(TokenId token, TimePoint now);
  // Records the mode of a preemption (called with the transition to kPreempted).
  void CountPreemption(bool swapped);

 private:
  Process(ProcessId id, ProcessSpec spec, TimePoint now);

  ProcessId id_;
  ProcessSpec spec_;  // spec_.prompt is moved into tokens_
  std::vector<TokenId> tokens_;
  size_t num_prompt_tokens_;
  size_t num_computed_tokens_ = 0;
  size_t num_computed_high_water_ = 0;  // most tokens ever computed (or found cached) at once
  size_t num_tokens_since_admitted_ = 0;
  ProcessState state_ = ProcessState::kQueued;
  TimePoint state_entered_at_;
  std::string reason_;
  ProcessAccounting accounting_;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_PROCESS_H_
