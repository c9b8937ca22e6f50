// The scheduler's run-time parameters as one value: the policy, every policy's options and
// the preemption options. What GET /os/scheduler shows, what PUT /os/scheduler, config.toml's
// [scheduler] table and `llmasos sched` change (EngineThread::UpdateScheduling), and what an
// engine starts with (EngineOptions).
//
// Not here, because they size memory or threads when an instance loads: max_batch_tokens,
// max_running and max_prefill_chunk_tokens (SchedulerOptions; the daemon's --batch-size and
// --parallel), the KV pool and the swap space.
#ifndef LLMASOS_KERNEL_SCHEDULING_H_
#define LLMASOS_KERNEL_SCHEDULING_H_

#include <map>
#include <optional>
#include <string>

#include "kernel/policy.h"
#include "kernel/scheduler.h"

namespace llmasos::kernel {

struct SchedulingSettings {
  std::string policy = "fcfs";  // one of kPolicyNames
  PolicyOptions policy_options;
  PreemptionOptions preemption;
};

// OK, or InvalidArgument naming the first bad field by its /os/scheduler path ("policy: ...",
// as ValidatePolicyOptions and ValidatePreemptionOptions).
Status ValidateSchedulingSettings(const SchedulingSettings& settings);

// A change to some of the settings; what is not given stays. fair_weights replaces the whole
// table of weights (tenants left out get fair.default_weight).
struct SchedulingUpdate {
  std::optional<std::string> policy{};
  std::optional<std::map<std::string, double, std::less<>>> fair_weights{};
  std::optional<double> fair_default_weight{};
  std::optional<size_t> rr_slice_tokens{};
  std::optional<double> sjf_aging_tokens_per_second{};
  std::optional<double> priority_aging_per_second{};
  std::optional<bool> waiting_may_preempt{};
  std::optional<size_t> min_tokens_before_preempt{};
  std::optional<PreemptChoice> preempt_mode{};
  std::optional<double> swap_seconds_per_byte{};
  std::optional<double> recompute_seconds_per_token{};

  // Whether nothing is given.
  bool empty() const;
  // `settings` with the given fields replaced (not validated: see ValidateSchedulingSettings).
  SchedulingSettings AppliedTo(SchedulingSettings settings) const;
  // Fields given here override those given in `earlier` (config file, then flags).
  SchedulingUpdate Over(SchedulingUpdate earlier) const;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_SCHEDULING_H_
