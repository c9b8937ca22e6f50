// Scheduling policies: one interface, five implementations, chosen at construction and
// switchable at run time (Scheduler::SetPolicy).
//
// A policy only ranks. Each step the scheduler asks it to order the live processes (running
// and waiting) best first; the capacity step hands memory out in that order and preempts from
// the bottom, the batch step hands out tokens in that order. Policies keep their own
// bookkeeping (slices, tenants' service) through the On* callbacks.
//
// Thread safety: none; owned and called by the scheduler's thread.
#ifndef LLMASOS_KERNEL_POLICY_H_
#define LLMASOS_KERNEL_POLICY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/process.h"

namespace llmasos::kernel {

class SchedulerPolicy {
 public:
  virtual ~SchedulerPolicy() = default;
  virtual std::string_view name() const = 0;
  // Whether a waiting process may preempt a running process ranked below it. Non-preemptive
  // policies still preempt when running processes outgrow memory.
  virtual bool preemptive() const = 0;
  // Sorts `processes` best first; deterministic (ties broken by id, i.e. arrival order).
  virtual void Rank(std::vector<Process*>& processes, TimePoint now) = 0;
  // The batch step serves processes class by class, highest first: a class's decodes, then its
  // prefill chunks, then the next class from what is left of the token budget, unless the
  // class had a prefill chunk in the step. One class for all (the default) keeps every decode
  // ahead of every prefill chunk; the priority policy makes a higher priority's prompt go
  // alone ahead of lower priorities' decodes, so its time to first token does not grow with
  // the number of lower-priority processes running (they wait those steps out).
  virtual int64_t BatchClass(const Process& process, TimePoint now) const { return 0; }
  // The lowest priority a new arrival needs to interrupt a step in flight whose highest batch
  // class is `step_top_class` (Engine::InterruptFor): the step is abandoned at its next layer
  // and planned anew, so the arrival's prompt need not wait for it. kNeverInterrupts (the
  // default) for policies whose classes do not come from priorities.
  static constexpr int64_t kNeverInterrupts = INT64_MAX;
  virtual int64_t InterruptingPriority(int64_t step_top_class) const { return kNeverInterrupts; }

  // A process entered the scheduler (or the policy was installed while it was live).
  virtual void OnSubmitted(const Process& process) {}
  // `num_tokens` new tokens of `process` went through the model this step (recomputation of
  // KV lost to a preemption excluded).
  virtual void OnServed(const Process& process, size_t num_tokens) {}
  // A process left the scheduler (finished, cancelled, failed).
  virtual void OnRemoved(const Process& process) {}
};

// First come, first served: by arrival. Non-preemptive.
std::unique_ptr<SchedulerPolicy> NewFcfsPolicy();

// Shortest job first by expected remaining work, with aging. Non-preemptive.
//   score = remaining_tokens - aging_tokens_per_second * age_seconds
//   remaining_tokens = max_tokens - generated; age = now - submitted_at.
// Lowest score first. A job of any length outranks every newer arrival once its age exceeds
// (its remaining_tokens - 1) / aging_tokens_per_second, so nothing starves.
struct SjfOptions {
  double aging_tokens_per_second = 50.0;  // > 0
  bool operator==(const SjfOptions&) const = default;
};
std::unique_ptr<SchedulerPolicy> NewShortestJobFirstPolicy(SjfOptions options = {});

// Round robin with a time slice in tokens: processes are served in turn; a process that has
// been fed slice_tokens tokens since its turn began goes to the back of the line. Preemptive
// (a waiting process may take the place of one that used its slice).
struct RoundRobinOptions {
  size_t slice_tokens = 16;  // >= 1
  bool operator==(const RoundRobinOptions&) const = default;
};
std::unique_ptr<SchedulerPolicy> NewRoundRobinPolicy(RoundRobinOptions options = {});

// Preemptive priority: higher `priority` first, then arrival. Optional aging raises the
// effective priority by aging_per_second for every second since submission
// (effective = priority + aging_per_second * age_seconds), so a process waiting behind a
// stream of arrivals d levels above it runs after d / aging_per_second seconds at most; 0 gives
// strict priority (which can starve). Batch class: floor(effective priority).
struct PriorityOptions {
  double aging_per_second = 0.1;  // >= 0
  bool operator==(const PriorityOptions&) const = default;
};
std::unique_ptr<SchedulerPolicy> NewPriorityPolicy(PriorityOptions options = {});

// Weighted fair share across tenants by tokens served: the tenant with the least
// served_tokens / weight goes first, its processes by arrival. A tenant that becomes active
// starts at the least normalised service among active tenants, so idling banks no credit.
// Preemptive.
struct FairShareOptions {
  std::map<std::string, double, std::less<>> tenant_weights;  // missing tenant: default_weight
  double default_weight = 1.0;                                  // > 0
  bool operator==(const FairShareOptions&) const = default;
};
std::unique_ptr<SchedulerPolicy> NewFairSharePolicy(FairShareOptions options = {});

// Every policy's parameters, kept together so that switching policies keeps each one's
// settings (what GET /os/scheduler shows beside the active policy).
struct PolicyOptions {
  SjfOptions sjf;
  RoundRobinOptions rr;
  PriorityOptions priority;
  FairShareOptions fair;
  bool operator==(const PolicyOptions&) const = default;
};
// The ranges ValidatePolicyOptions accepts; they bound what a caller may ask, not what would
// make sense for one workload.
inline constexpr size_t kMaxSliceTokens = 1'000'000;
inline constexpr double kMaxSjfAging = 1e9;          // tokens per second
inline constexpr double kMaxPriorityAging = 1e6;     // levels per second
inline constexpr double kMaxFairWeight = 1e6;
inline constexpr size_t kMaxFairTenants = 1024;      // entries in tenant_weights
inline constexpr size_t kMaxTenantBytes = 128;
// OK, or InvalidArgument naming the first parameter out of its range by its path in the
// /os/scheduler body ("rr.slice_tokens: ...", "fair.weights.acme: ..."): slice_tokens in
// 1..kMaxSliceTokens, SJF aging in (0, kMaxSjfAging], priority aging in [0, kMaxPriorityAging],
// weights in (0, kMaxFairWeight], at most kMaxFairTenants tenants of 1..kMaxTenantBytes bytes;
// NaN and infinities are out of every range.
Status ValidatePolicyOptions(const PolicyOptions& options);

// The policy names, in the order above.
inline constexpr std::string_view kPolicyNames[] = {"fcfs", "sjf", "rr", "priority", "fair"};

// Builds a policy by name ("fcfs", "sjf", "rr", "priority", "fair") with its options from
// `options`; InvalidArgument listing the names for anything else, and as
// ValidatePolicyOptions.
StatusOr<std::unique_ptr<SchedulerPolicy>> NewPolicyByName(std::string_view name,
                                                           const PolicyOptions& options = {});

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_POLICY_H_
