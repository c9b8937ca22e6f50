// The scheduler's parameters as flags, shared by `llmasos serve` (the parameters each model
// instance starts with; over config.toml's [scheduler] table) and `llmasos sched` (PUT
// /os/scheduler on a running daemon). Each flag is one field of the /os/scheduler schema
// (api/os_request.h); values are validated by that schema's parser, so a flag, a file and a
// request accept and refuse the same values.
#ifndef LLMASOS_SHELL_SCHED_FLAGS_H_
#define LLMASOS_SHELL_SCHED_FLAGS_H_

#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "kernel/scheduling.h"
#include "util/status.h"

namespace llmasos::shell {

struct SchedulingFlags {
  std::vector<std::string> weights;  // TENANT=W, each
  double default_weight = 1;
  size_t rr_slice_tokens = 0;
  double sjf_aging = 0;
  double priority_aging = 0;
  std::string preempt_mode;
  bool waiting_preempt = true;
  size_t min_tokens_before_preempt = 0;
  // The options, to tell which were given.
  std::vector<CLI::Option*> options;
};

// --weight, --default-weight, --rr-slice, --sjf-aging, --priority-aging, --preempt-mode,
// --waiting-preempt, --min-tokens-before-preempt. `flags` must outlive `cmd`.
void AddSchedulingFlags(CLI::App& cmd, SchedulingFlags* flags);
// Their long names (without dashes): config.toml keeps them under [scheduler], not at the top.
const std::set<std::string>& SchedulingFlagNames();

// The given flags (and `policy` unless empty) as an /os/scheduler object; only what was
// given appears. InvalidArgument for a --weight that is not TENANT=NUMBER.
StatusOr<nlohmann::json> SchedulingFlagsJson(const SchedulingFlags& flags, const std::string& policy);

}  // namespace llmasos::shell

#endif  // LLMASOS_SHELL_SCHED_FLAGS_H_
