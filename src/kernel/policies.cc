// The five scheduling policies. Each Rank() is a stable sort on a per-process key computed
// once per call (O(n log n) per step, n = live processes), ties broken by id = arrival order.
#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <utility>

#include "kernel/policy.h"

namespace llmasos::kernel {
namespace {

// Sorts by (key, id) ascending.
template <typename KeyFn>
void SortByKey(std::vector<Process*>& processes, KeyFn key_fn) {
  using Key = decltype(key_fn(*processes.front()));
  std::vector<std::pair<Key, Process*>> keyed;
  keyed.reserve(processes.size());
  for (Process* p : processes) keyed.emplace_back(key_fn(*p), p);
  std::sort(keyed.begin(), keyed.end(), [](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return a.second->id() < b.second->id();
  });
  for (size_t i = 0; i < keyed.size(); ++i) processes[i] = keyed[i].second;
}

class FcfsPolicy : public SchedulerPolicy {
 public:
  std::string_view name() const override { return "fcfs"; }
  bool preemptive() const override { return false; }
  void Rank(std::vector<Process*>& processes, TimePoint) override {
    std::sort(processes.begin(), processes.end(),
              [](const Process* a, const Process* b) { return a->id() < b->id(); });
  }
};

class ShortestJobFirstPolicy : public SchedulerPolicy {
 public:
  explicit ShortestJobFirstPolicy(SjfOptions options) : options_(options) {
    CHECK(options_.aging_tokens_per_second > 0) << "SJF aging_tokens_per_second must be > 0";
  }
  std::string_view name() const override { return "sjf"; }
  bool preemptive() const override { return false; }
  void Rank(std::vector<Process*>& processes, TimePoint now) override {
    if (processes.empty()) return;
    SortByKey(processes, [&](const Process& p) {
      const double age_s = ToSeconds(now - p.accounting().submitted_at);
      return static_cast<double>(p.num_remaining_tokens()) - options_.aging_tokens_per_second * age_s;
    });
  }

 private:
  SjfOptions options_;
};

class RoundRobinPolicy : public SchedulerPolicy {
 public:
  explicit RoundRobinPolicy(RoundRobinOptions options) : options_(options) {
    CHECK_GE(options_.slice_tokens, 1u) << "round-robin slice_tokens must be >= 1";
  }
  std::string_view name() const override { return "rr"; }
  bool preemptive() const override { return true; }
  void OnSubmitted(const Process& p) override { turns_[p.id()] = Turn{next_seq_++, 0}; }
  void OnRemoved(const Process& p) override { turns_.erase(p.id()); }
  void OnServed(const Process& p, size_t num_tokens) override {
    Turn& turn = turns_[p.id()];
    turn.used_tokens += num_tokens;
    if (turn.used_tokens >= options_.slice_tokens) turn = Turn{next_seq_++, 0};  // to the back
  }
  void Rank(std::vector<Process*>& processes, TimePoint) override {
    if (processes.empty()) return;
    SortByKey(processes, [&](const Process& p) {
      auto it = turns_.find(p.id());
      CHECK(it != turns_.end()) << "round-robin: process " << p.id() << " was never submitted";
      return it->second.seq;
    });
  }

 private:
  struct Turn {
    uint64_t seq;        // place in line; a smaller one goes first
    size_t used_tokens;  // tokens fed during the current turn
  };
  RoundRobinOptions options_;
  uint64_t next_seq_ = 0;
  std::unordered_map<ProcessId, Turn> turns_;
};

class PriorityPolicy : public SchedulerPolicy {
 public:
  explicit PriorityPolicy(PriorityOptions options) : options_(options) {
    CHECK(options_.aging_per_second >= 0) << "priority aging_per_second must be >= 0";
  }
  std::string_view name() const override { return "priority"; }
  bool preemptive() const override { return true; }
  void Rank(std::vector<Process*>& processes, TimePoint now) override {
    if (processes.empty()) return;
    SortByKey(processes, [&](const Process& p) { return -Effective(p, now); });
  }
  int64_t BatchClass(const Process& p, TimePoint now) const override {
    return static_cast<int64_t>(std::floor(Effective(p, now)));
  }
  // An arrival's class is its priority (it has no age yet): one above the step's top class
  // would have gone alone ahead of that step.
  int64_t InterruptingPriority(int64_t step_top_class) const override {
    return step_top_class == kNeverInterrupts ? kNeverInterrupts : step_top_class + 1;
  }

 private:
  double Effective(const Process& p, TimePoint now) const {
    const double age_s = ToSeconds(now - p.accounting().submitted_at);
    return static_cast<double>(p.priority()) + options_.aging_per_second * age_s;
  }

  PriorityOptions options_;
};

class FairSharePolicy : public SchedulerPolicy {
 public:
  explicit FairSharePolicy(FairShareOptions options) : options_(std::move(options)) {
    CHECK(options_.default_weight > 0) << "fair-share default_weight must be > 0";
    for (const auto& [tenant, weight] : options_.tenant_weights) {
      CHECK(weight > 0) << "fair-share weight of tenant '" << tenant << "' must be > 0";
    }
  }
  std::string_view name() const override { return "fair"; }
  bool preemptive() const override { return true; }

  void OnSubmitted(const Process& p) override {
    Tenant& t = TenantOf(p.tenant());
    if (t.num_live == 0) {
      // Becoming active: start level with the least-served active tenant, so a tenant that
      // idled cannot monopolise the batch with banked credit.
      double min_norm = std::numeric_limits<double>::infinity();
      for (const auto& [name, other] : tenants_) {
        if (other.num_live > 0) min_norm = std::min(min_norm, other.served_tokens / other.weight);
      }
      if (min_norm != std::numeric_limits<double>::infinity()) {
        t.served_tokens = std::max(t.served_tokens, min_norm * t.weight);
      }
    }
    ++t.num_live;
  }
  void OnRemoved(const Process& p) override {
    Tenant& t = TenantOf(p.tenant());
    CHECK_GT(t.num_live, 0u);
    --t.num_live;
  }
  void OnServed(const Process& p, size_t num_tokens) override {
    TenantOf(p.tenant()).served_tokens += static_cast<double>(num_tokens);
  }
  void Rank(std::vector<Process*>& processes, TimePoint) override {
    if (processes.empty()) return;
    SortByKey(processes, [&](const Process& p) {
      const Tenant& t = TenantOf(p.tenant());
      return t.served_tokens / t.weight;
    });
  }

 private:
  struct Tenant {
    double weight = 1.0;
    double served_tokens = 0;
    size_t num_live = 0;
  };
  Tenant& TenantOf(const std::string& name) {
    auto it = tenants_.find(name);
    if (it != tenants_.end()) return it->second;
    Tenant t;
    auto w = options_.tenant_weights.find(name);
    t.weight = w != options_.tenant_weights.end() ? w->second : options_.default_weight;
    return tenants_.emplace(name, t).first->second;
  }

  FairShareOptions options_;
  std::unordered_map<std::string, Tenant> tenants_;
};

}  // namespace

std::unique_ptr<SchedulerPolicy> NewFcfsPolicy() { return std::make_unique<FcfsPolicy>(); }
std::unique_ptr<SchedulerPolicy> NewShortestJobFirstPolicy(SjfOptions options) {
  return std::make_unique<ShortestJobFirstPolicy>(options);
}
std::unique_ptr<SchedulerPolicy> NewRoundRobinPolicy(RoundRobinOptions options) {
  return std::make_unique<RoundRobinPolicy>(options);
}
std::unique_ptr<SchedulerPolicy> NewPriorityPolicy(PriorityOptions options) {
  return std::make_unique<PriorityPolicy>(options);
}
std::unique_ptr<SchedulerPolicy> NewFairSharePolicy(FairShareOptions options) {
  return std::make_unique<FairSharePolicy>(std::move(options));
}

namespace {

// Whether `v` is a number in [lo, hi] (in (lo, hi] when `open_lo`); NaN is not.
bool InRange(double v, double lo, double hi, bool open_lo) {
  return (open_lo ? v > lo : v >= lo) && v <= hi;
}

std::string Bound(double v) {
  std::string s = std::to_string(v);
  s.erase(s.find_last_not_of('0') + 1);
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

Status ValidatePolicyOptions(const PolicyOptions& o) {
  if (o.rr.slice_tokens < 1 || o.rr.slice_tokens > kMaxSliceTokens) {
    return InvalidArgumentError("rr.slice_tokens: must be in 1.." + std::to_string(kMaxSliceTokens));
  }
  if (!InRange(o.sjf.aging_tokens_per_second, 0, kMaxSjfAging, true)) {
    return InvalidArgumentError("sjf.aging_tokens_per_second: must be a number in (0, " + Bound(kMaxSjfAging) + "]");
  }
  if (!InRange(o.priority.aging_per_second, 0, kMaxPriorityAging, false)) {
    return InvalidArgumentError("priority.aging_per_second: must be a number in [0, " + Bound(kMaxPriorityAging) + "]");
  }
  if (!InRange(o.fair.default_weight, 0, kMaxFairWeight, true)) {
    return InvalidArgumentError("fair.default_weight: must be a number in (0, " + Bound(kMaxFairWeight) + "]");
  }
  if (o.fair.tenant_weights.size() > kMaxFairTenants) {
    return InvalidArgumentError("fair.weights: at most " + std::to_string(kMaxFairTenants) + " tenants");
  }
  for (const auto& [tenant, weight] : o.fair.tenant_weights) {
    if (tenant.empty() || tenant.size() > kMaxTenantBytes) {
      return InvalidArgumentError("fair.weights: a tenant name must be 1.." + std::to_string(kMaxTenantBytes) + " bytes");
    }
    if (!InRange(weight, 0, kMaxFairWeight, true)) {
      return InvalidArgumentError("fair.weights." + tenant + ": must be a number in (0, " + Bound(kMaxFairWeight) + "]");
    }
  }
  return OkStatus();
}

StatusOr<std::unique_ptr<SchedulerPolicy>> NewPolicyByName(std::string_view name, const PolicyOptions& options) {
  RETURN_IF_ERROR(ValidatePolicyOptions(options));
  if (name == "fcfs") return NewFcfsPolicy();
  if (name == "sjf") return NewShortestJobFirstPolicy(options.sjf);
  if (name == "rr") return NewRoundRobinPolicy(options.rr);
  if (name == "priority") return NewPriorityPolicy(options.priority);
  if (name == "fair") return NewFairSharePolicy(options.fair);
  return InvalidArgumentError("unknown scheduler policy '" + std::string(name) +
                              "' (expected fcfs, sjf, rr, priority or fair)");
}

}  // namespace llmasos::kernel
