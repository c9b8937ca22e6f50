// The inputs of the /os/* admin surface, validated: global process ids, the process table's
// filters, the bodies of a renice and of a scheduler change. Errors are kInvalidArgument naming the field or the
// query parameter (in *error_param when given), as request.h's.
//
// Thread safety: pure functions over values.
#ifndef LLMASOS_API_OS_REQUEST_H_
#define LLMASOS_API_OS_REQUEST_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernel/event_bus.h"
#include <nlohmann/json.hpp>

#include "kernel/process.h"
#include "kernel/scheduling.h"
#include "util/status.h"

namespace llmasos::api {

// A process across the daemon: the model instance it runs on (ModelManager's instance_id)
// and its id there. Written "INSTANCE-PID", e.g. "3-17".
struct GlobalProcessId {
  uint64_t instance = 0;
  kernel::ProcessId pid = 0;
  bool operator==(const GlobalProcessId&) const = default;
};
std::string FormatProcessId(GlobalProcessId id);
// InvalidArgument unless `text` is two positive decimal integers joined by '-'.
StatusOr<GlobalProcessId> ParseProcessId(std::string_view text);

// GET /os/processes?state=&tenant=&model=: each given filter must match.
struct ProcessFilter {
  std::optional<kernel::ProcessState> state;  // queued, running or preempted
  std::optional<std::string> tenant;
  std::optional<std::string> model;  // a name (any version) or NAME@VERSION
  // Whether a process of `tenant` in `state` on version `name`@`version` passes.
  bool Matches(kernel::ProcessState state, std::string_view tenant, std::string_view name,
               std::string_view version) const;
};
// From decoded query parameters (api/http.h's ParseQuery). An unknown parameter, a repeated
// one, an empty value or a state that is not live is InvalidArgument naming it.
StatusOr<ProcessFilter> ParseProcessFilter(const std::vector<std::pair<std::string, std::string>>& query,
                                           std::string* error_param = nullptr);

// GET /os/events?kinds=K1,K2: the event kinds a subscriber wants (kernel/event_bus.h's names,
// comma-separated; "lost" is always sent). No parameter: every kind. An unknown parameter or
// kind, a repeated or empty one is InvalidArgument naming it.
StatusOr<kernel::EventKindMask> ParseEventsQuery(const std::vector<std::pair<std::string, std::string>>& query,
                                                 std::string* error_param = nullptr);

// PATCH /os/processes/{id}: {"priority": N}, N in -kMaxPriority..kMaxPriority. Any other
// field is an error (an admin call that asks for something it would not get must not pass).
StatusOr<int32_t> ParseRenice(std::string_view body, std::string* error_param = nullptr);

// The scheduler's parameters as JSON, one schema for GET /os/scheduler's rows, PUT
// /os/scheduler's body, config.toml's [scheduler] table and `llmasos sched`'s flags
// (docs/api.md):
//   {"policy": "fcfs" | "sjf" | "rr" | "priority" | "fair",
//    "fair": {"weights": {TENANT: W, ...}, "default_weight": W},
//    "rr": {"slice_tokens": N},
//    "sjf": {"aging_tokens_per_second": X},
//    "priority": {"aging_per_second": X},
//    "preemption": {"waiting_may_preempt": B, "min_tokens_before_preempt": N,
//                   "mode": "auto" | "swap" | "recompute",
//                   "swap_seconds_per_byte": X, "recompute_seconds_per_token": X}}
nlohmann::json SchedulingSettingsJson(const kernel::SchedulingSettings& settings);
// Reads that schema's fields from `object` (each optional; "weights" replaces the whole table)
// into an update. An unknown field, a wrong type or a value out of range (kernel/policy.h's
// bounds) is InvalidArgument naming the field by its path ("fair.weights.acme"), which also
// goes to *error_param; fields named in `extra` are skipped (the caller reads them).
StatusOr<kernel::SchedulingUpdate> ParseSchedulingUpdate(const nlohmann::json& object, std::string* error_param,
                                                         std::initializer_list<std::string_view> extra = {});

// PUT /os/scheduler: the schema above plus "instance": N for one model instance (without it,
// every loaded one). At least one parameter must be given.
struct SchedulerUpdate {
  std::optional<uint64_t> instance;
  kernel::SchedulingUpdate update;
};
StatusOr<SchedulerUpdate> ParseSchedulerUpdate(std::string_view body, std::string* error_param = nullptr);

// POST /os/models/load|unload|pin|unpin: {"model": REF}, plus "keep_alive" (load: a duration
// or seconds, negative = forever) and "unpin" (unload: also drop its pins).
enum class ModelAction { kLoad, kUnload, kPin, kUnpin };
struct ModelActionRequest {
  std::string model;
  std::optional<std::chrono::milliseconds> keep_alive;
  bool unpin = false;
};
StatusOr<ModelActionRequest> ParseModelAction(ModelAction action, std::string_view body,
                                              std::string* error_param = nullptr);

}  // namespace llmasos::api

#endif  // LLMASOS_API_OS_REQUEST_H_
