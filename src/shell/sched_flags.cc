#include "shell/sched_flags.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "kernel/policy.h"
#include "shell/commands.h"

namespace llmasos::shell {

void AddSchedulingFlags(CLI::App& cmd, SchedulingFlags* f) {
  f->options = {
      cmd.add_option("--weight", f->weights,
                     "fair-share weight of a tenant, TENANT=W (repeat for each; replaces the whole table, "
                     "tenants left out get --default-weight)"),
      cmd.add_option("--default-weight", f->default_weight, "fair-share weight of tenants without one (default 1)")
          ->check(FiniteRange(0, kernel::kMaxFairWeight)),
      cmd.add_option("--rr-slice", f->rr_slice_tokens, "round-robin time slice in tokens (default 16)")
          ->check(CLI::Range(size_t{1}, kernel::kMaxSliceTokens)),
      cmd.add_option("--sjf-aging", f->sjf_aging,
                     "shortest-job-first aging: tokens of expected work forgiven per second waited (default 50)")
          ->check(FiniteRange(0, kernel::kMaxSjfAging)),
      cmd.add_option("--priority-aging", f->priority_aging,
                     "priority policy aging: levels gained per second waited (default 0.1; 0: strict)")
          ->check(FiniteRange(0, kernel::kMaxPriorityAging)),
      cmd.add_option("--preempt-mode", f->preempt_mode,
                     "how a preempted process gives back its KV: auto (the cheaper), swap, recompute (default auto)")
          ->check(CLI::IsMember({"auto", "swap", "recompute"})),
      cmd.add_option("--waiting-preempt", f->waiting_preempt,
                     "under rr, priority and fair, whether a waiting process may evict a lower-ranked running one "
                     "(true or false; default true)"),
      cmd.add_option("--min-tokens-before-preempt", f->min_tokens_before_preempt,
                     "tokens a process runs after admission before a waiting one may evict it (default 8)")
          ->check(CLI::Range(size_t{0}, kernel::kMaxMinTokensBeforePreempt)),
  };
  // Not given means "as it is" (sched) or "as config.toml or the default says" (serve), so no
  // default is shown for them, even where the command captures defaults.
  for (CLI::Option* o : f->options) o->always_capture_default(false)->default_str("");
}

const std::set<std::string>& SchedulingFlagNames() {
  static const std::set<std::string> names = {"policy", "weight", "default-weight", "rr-slice", "sjf-aging",
                                              "priority-aging", "preempt-mode", "waiting-preempt",
                                              "min-tokens-before-preempt"};
  return names;
}

StatusOr<nlohmann::json> SchedulingFlagsJson(const SchedulingFlags& f, const std::string& policy) {
  nlohmann::json j = nlohmann::json::object();
  if (!policy.empty()) j["policy"] = policy;
  auto given = [&](size_t idx) { return idx < f.options.size() && f.options[idx]->count() > 0; };
  if (given(0)) {
    nlohmann::json weights = nlohmann::json::object();
    for (const std::string& w : f.weights) {
      const size_t eq = w.rfind('=');
      const std::string number = eq == std::string::npos ? "" : w.substr(eq + 1);
      char* end = nullptr;
      errno = 0;
      const double value = number.empty() ? NAN : std::strtod(number.c_str(), &end);
      if (eq == 0 || number.empty() || errno != 0 || end != number.c_str() + number.size() || !std::isfinite(value)) {
        return InvalidArgumentError("--weight " + w + ": expected TENANT=WEIGHT, e.g. acme=3");
      }
      weights[w.substr(0, eq)] = value;
    }
    j["fair"]["weights"] = weights;
  }
  if (given(1)) j["fair"]["default_weight"] = f.default_weight;
  if (given(2)) j["rr"]["slice_tokens"] = f.rr_slice_tokens;
  if (given(3)) j["sjf"]["aging_tokens_per_second"] = f.sjf_aging;
  if (given(4)) j["priority"]["aging_per_second"] = f.priority_aging;
  if (given(5)) j["preemption"]["mode"] = f.preempt_mode;
  if (given(6)) j["preemption"]["waiting_may_preempt"] = f.waiting_preempt;
  if (given(7)) j["preemption"]["min_tokens_before_preempt"] = f.min_tokens_before_preempt;
  return j;
}

}  // namespace llmasos::shell
