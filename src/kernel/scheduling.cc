#include "kernel/scheduling.h"

#include <algorithm>

namespace llmasos::kernel {

Status ValidateSchedulingSettings(const SchedulingSettings& s) {
  if (std::find(std::begin(kPolicyNames), std::end(kPolicyNames), s.policy) == std::end(kPolicyNames)) {
    return NewPolicyByName(s.policy).status().Annotate("policy");
  }
  RETURN_IF_ERROR(ValidatePolicyOptions(s.policy_options));
  return ValidatePreemptionOptions(s.preemption);
}

namespace {

// Calls fn(field) for each optional field of the update, as a pointer-to-member pair.
template <typename Fn>
void ForEachField(Fn fn) {
  fn(&SchedulingUpdate::policy);
  fn(&SchedulingUpdate::fair_weights);
  fn(&SchedulingUpdate::fair_default_weight);
  fn(&SchedulingUpdate::rr_slice_tokens);
  fn(&SchedulingUpdate::sjf_aging_tokens_per_second);
  fn(&SchedulingUpdate::priority_aging_per_second);
  fn(&SchedulingUpdate::waiting_may_preempt);
  fn(&SchedulingUpdate::min_tokens_before_preempt);
  fn(&SchedulingUpdate::preempt_mode);
  fn(&SchedulingUpdate::swap_seconds_per_byte);
  fn(&SchedulingUpdate::recompute_seconds_per_token);
}

template <typename T>
void Set(const std::optional<T>& from, T* to) {
  if (from) *to = *from;
}

}  // namespace

bool SchedulingUpdate::empty() const {
  bool any = false;
  ForEachField([&](auto field) { any |= (this->*field).has_value(); });
  return !any;
}

SchedulingUpdate SchedulingUpdate::Over(SchedulingUpdate earlier) const {
  ForEachField([&](auto field) {
    if ((this->*field).has_value()) earlier.*field = this->*field;
  });
  return earlier;
}

SchedulingSettings SchedulingUpdate::AppliedTo(SchedulingSettings s) const {
  Set(policy, &s.policy);
  PolicyOptions& p = s.policy_options;
  Set(fair_weights, &p.fair.tenant_weights);
  Set(fair_default_weight, &p.fair.default_weight);
  Set(rr_slice_tokens, &p.rr.slice_tokens);
  Set(sjf_aging_tokens_per_second, &p.sjf.aging_tokens_per_second);
  Set(priority_aging_per_second, &p.priority.aging_per_second);
  PreemptionOptions& o = s.preemption;
  Set(waiting_may_preempt, &o.waiting_may_preempt);
  Set(min_tokens_before_preempt, &o.min_tokens_before_preempt);
  Set(preempt_mode, &o.mode);
  Set(swap_seconds_per_byte, &o.costs.swap_seconds_per_byte);
  Set(recompute_seconds_per_token, &o.costs.recompute_seconds_per_token);
  return s;
}

}  // namespace llmasos::kernel
