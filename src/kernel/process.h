// Process: the control block of one generation request.
//
// A process owns its token sequence (prompt followed by generated tokens), its limits and its
// accounting. It does not own KV memory: the scheduler asks a MemoryModel (backed by KvMemory)
// for blocks on the process's behalf, keyed by id().
//
// State machine (every other transition is an error, see TransitionTo):
//
//   kQueued --admit--> kRunning --preempt--> kPreempted --requeue--> kQueued ...
//   kQueued | kRunning | kPreempted --> kCancelled | kFailed        (with an EndReason)
//   kRunning --> kFinished                                          (with an EndReason)
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

#include "model/arch/lora_weights.h"
#include "model/sampling/sampler.h"
#include "util/clock.h"
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

// Why a process ended. The terminal state follows from it (TerminalStateOf).
enum class EndReason {
  kNone,             // still live
  kEndOfGeneration,  // the model produced an end-of-generation token     -> kFinished
  kStopString,       // the text reached one of the process's stop strings -> kFinished
  kLength,           // max_tokens generated                               -> kFinished
  kDeadline,         // ProcessLimits::deadline passed                     -> kFailed
  kCancelled,        // its submitter cancelled it or went away            -> kCancelled
  kKilled,           // an operator killed it                              -> kCancelled
  kShutdown,         // the engine shut down                               -> kCancelled
  kError,            // a step failed; Process::end_message() says how     -> kFailed
};
// "none", "end_of_generation", "stop_string", "length", "deadline", "cancelled", "killed",
// "shutdown", "error": for display and JSON.
std::string_view EndReasonName(EndReason reason);
// The terminal state a process enters for `reason`. REQUIRES: reason != kNone.
ProcessState TerminalStateOf(EndReason reason);

struct ProcessLimits {
  int32_t max_tokens = 256;           // generated tokens; >= 1
  std::optional<TimePoint> deadline;  // none: no deadline
};

// What a process computes.
enum class ProcessKind {
  kGenerate,  // prefill, then sample tokens until an end reason
  kEmbed,     // prefill only: ends (kEndOfGeneration) with the pooled, L2-normalised final
              // hidden state of its prompt (Engine, EndedProcess::embedding); max_tokens must be 1
};

// What a submitter asks for. Validated by Process::Create.
struct ProcessSpec {
  ProcessKind kind = ProcessKind::kGenerate;
  std::string tenant = "default";  // 1..128 bytes
  int32_t priority = 0;            // higher runs first under the Priority policy
  sampling::SamplingParams sampling;
  ProcessLimits limits;
  std::vector<TokenId> prompt;     // >= 1 token, none negative
  // The text ends before the first of these to appear (OutputPipeline); at most
  // kMaxStopStrings, each at most kMaxStopStringBytes. Empty strings are ignored.
  std::vector<std::string> stop;
  // The LoRA adapter the process runs with (unmerged, in the batched forward pass); null: the
  // base model. Shared: the model manager's adapter cache may drop it (LRU, unload) while
  // processes still run with it. Its cache_key keeps its prefix-cache blocks apart.
  std::shared_ptr<const arch::LoraWeights> adapter;
};
inline constexpr size_t kMaxStopStrings = 64;
inline constexpr size_t kMaxStopStringBytes = 1024;

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
  int64_t num_prefix_cached_tokens = 0;  // prompt tokens whose KV came from the prefix cache or a fork
};

class Process {
 public:
  // Validates `spec` (InvalidArgument naming the field) and starts the process in kQueued at
  // `now`.
  static StatusOr<std::unique_ptr<Process>> Create(ProcessId id, ProcessSpec spec, TimePoint now);
  // As Create, for a spec that already passed Validate (the engine validates a request once,
  // on the submitter's thread). The stop strings are dropped: the OutputPipeline holds them.
  static std::unique_ptr<Process> CreateValidated(ProcessId id, ProcessSpec spec, TimePoint now);
  // The checks of Create alone. Thread-safe (a pure function).
  static Status Validate(const ProcessSpec& spec, TimePoint now);

  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  ProcessId id() const { return id_; }
  const std::string& tenant() const { return spec_.tenant; }
  int32_t priority() const { return spec_.priority; }
  // Renice: policies rank by the new priority from the next step on.
  void set_priority(int32_t priority) { spec_.priority = priority; }
  const sampling::SamplingParams& sampling() const { return spec_.sampling; }
  const ProcessLimits& limits() const { return spec_.limits; }
  ProcessKind kind() const { return spec_.kind; }
  // Null: the base model.
  const arch::LoraWeights* adapter() const { return spec_.adapter.get(); }

  ProcessState state() const { return state_; }
  // Why the process ended; kNone while it is live.
  EndReason end_reason() const { return end_reason_; }
  // What went wrong, for kError (and whatever detail a canceller gave); often empty.
  const std::string& end_message() const { return end_message_; }
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

  // Moves along the (non-terminal) state machine at `now`, closing the accounting interval of
  // the old state. FailedPrecondition naming both states for an illegal transition, or for a
  // terminal `next` (use End); the process is unchanged then.
  Status TransitionTo(ProcessState next, TimePoint now);
  // Ends the process at `now` in TerminalStateOf(reason), keeping `message`.
  // FailedPrecondition as TransitionTo (kNone, an ended process, kFinished from a state other
  // than kRunning).
  Status End(EndReason reason, TimePoint now, std::string message = "");

  // --- Used by the scheduler. ---
  // Records `num_tokens` more tokens fed through the model; returns how many of them are new
  // progress (not recomputation). REQUIRES: kRunning and
  // num_computed_tokens() + num_tokens <= num_tokens().
  size_t MarkComputed(size_t num_tokens);
  // KV was dropped (recompute preemption): everything must be fed again.
  void ResetComputed() { num_computed_tokens_ = 0; }
  // `num_tokens` leading tokens were found in the prefix cache. REQUIRES: < this->num_tokens().
  void MarkPrefixCached(size_t num_tokens);
  // Every token's KV was shared from the leader of its group (a fork, see Engine::SubmitGroup):
  // counted as prefix-cached. REQUIRES: nothing computed yet.
  void MarkForked();
  // Appends a sampled token at `now`. REQUIRES: kRunning, num_pending_tokens() == 0.
  void AppendToken(TokenId token, TimePoint now);
  // Records the mode of a preemption (called with the transition to kPreempted).
  void CountPreemption(bool swapped);

 private:
  Process(ProcessId id, ProcessSpec spec, TimePoint now);
  // Closes the accounting interval of the current state and enters `next`.
  void Enter(ProcessState next, TimePoint now);

  ProcessId id_;
  ProcessSpec spec_;  // spec_.prompt is moved into tokens_
  std::vector<TokenId> tokens_;
  size_t num_prompt_tokens_;
  size_t num_computed_tokens_ = 0;
  size_t num_computed_high_water_ = 0;  // most tokens ever computed (or found cached) at once
  size_t num_tokens_since_admitted_ = 0;
  ProcessState state_ = ProcessState::kQueued;
  TimePoint state_entered_at_;
  EndReason end_reason_ = EndReason::kNone;
  std::string end_message_;
  ProcessAccounting accounting_;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_PROCESS_H_
