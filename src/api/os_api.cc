// The /os/* admin surface: the process table across every loaded model instance, and kill and
// renice of one process (docs/api.md). Rows come from each engine's published table
// (EngineThread::Processes), so a read never waits for a step; kill and renice go through the
// engine's queue and take effect before its next step.
#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "api/errors.h"
#include "api/os_request.h"

namespace llmasos::api {

namespace {

using nlohmann::json;

double Seconds(kernel::Duration d) { return std::chrono::duration<double>(d).count(); }

json ProcessJson(uint64_t instance, const registry::Manifest& m, std::string_view policy,
                 const kernel::ProcessSnapshot& p) {
  return {{"id", FormatProcessId({instance, p.id})},
          {"instance", instance},
          {"pid", p.id},
          {"model", m.name},
          {"version", m.version},
          {"tenant", p.tenant},
          {"kind", p.kind == kernel::ProcessKind::kEmbed ? "embed" : "generate"},
          {"state", kernel::ProcessStateName(p.state)},
          {"priority", p.priority},
          {"policy", policy},
          {"class", p.batch_class},
          {"prompt_tokens", p.num_prompt_tokens},
          {"generated_tokens", p.num_generated_tokens},
          {"max_tokens", p.max_tokens},
          {"kv_blocks", {{"resident", p.kv_resident_blocks}, {"swapped", p.kv_swapped_blocks}}},
          {"preemptions", p.num_preemptions},
          {"queued_seconds", Seconds(p.time_queued)},
          {"running_seconds", Seconds(p.time_running)},
          {"age_seconds", Seconds(p.age)}};
}

// Calls `fn` with the engine of instance `id.instance` and the row of `id.pid` in its table,
// under the manager's lock (ForEachLoaded: quick, no manager calls). Answers 400 for a bad id
// and 404 when no such process is live, and returns false then.
bool WithProcess(Daemon& daemon, Exchange& ex,
                 const std::function<void(kernel::EngineThread&, json row)>& fn) {
  auto id = ParseProcessId(ex.request().PathParam("id"));
  if (!id.ok()) {
    SendError(ex, {.http_status = 400, .message = id.status().message(), .param = "id"});
    return false;
  }
  bool found = false;
  daemon.manager->ForEachLoaded([&](uint64_t instance, const registry::Manifest& m, const manager::LoadedModel& loaded) {
    if (instance != id->instance || loaded.engine == nullptr) return;
    for (const kernel::ProcessSnapshot& p : loaded.engine->Processes()) {
      if (p.id != id->pid) continue;
      found = true;
      fn(*loaded.engine, ProcessJson(instance, m, loaded.engine->Stats().policy, p));
      return;
    }
  });
  if (!found) {
    SendError(ex, {.http_status = 404,
                   .message = "no live process " + FormatProcessId(*id) + " (it ended, or never existed)",
                   .code = "not_found"});
  }
  return found;
}

void ListProcesses(Daemon& daemon, Exchange& ex) {
  auto query = ParseQuery(ex.request().query);
  std::string param;
  StatusOr<ProcessFilter> filter = query.ok() ? ParseProcessFilter(*query, &param) : StatusOr<ProcessFilter>(query.status());
  if (!filter.ok()) {
    SendError(ex, {.http_status = 400, .message = filter.status().message(), .param = param});
    return;
  }
  json rows = json::array();
  daemon.manager->ForEachLoaded([&](uint64_t instance, const registry::Manifest& m, const manager::LoadedModel& loaded) {
    if (loaded.engine == nullptr) return;
    const std::string policy = loaded.engine->Stats().policy;
    for (const kernel::ProcessSnapshot& p : loaded.engine->Processes()) {
      if (filter->Matches(p.state, p.tenant, m.name, m.version)) rows.push_back(ProcessJson(instance, m, policy, p));
    }
  });
  SendJson(ex, json{{"processes", rows}}.dump());
}

}  // namespace

void AddOsRoutes(Router& router, Daemon& daemon) {
  router.Add("GET", "/os/processes", [&daemon](const ExchangePtr& ex) { ListProcesses(daemon, *ex); });
  router.Add("GET", "/os/processes/{id}", [&daemon](const ExchangePtr& ex) {
    json out;
    if (WithProcess(daemon, *ex, [&](kernel::EngineThread&, json row) { out = std::move(row); })) {
      SendJson(*ex, out.dump());
    }
  });
  router.Add("DELETE", "/os/processes/{id}", [&daemon](const ExchangePtr& ex) {
    Status killed;
    json out;
    const bool found = WithProcess(daemon, *ex, [&](kernel::EngineThread& engine, json row) {
      killed = engine.Cancel(row["pid"].get<kernel::ProcessId>(), kernel::EndReason::kKilled, "by an operator");
      out = {{"id", row["id"]}, {"killed", true}};
    });
    if (!found) return;
    if (!killed.ok()) {
      SendStatus(*ex, killed);
      return;
    }
    SendJson(*ex, out.dump());
  });
  router.Add("PATCH", "/os/processes/{id}", [&daemon](const ExchangePtr& ex) {
    std::string param;
    StatusOr<int32_t> priority = ParseRenice(ex->request().body, &param);
    if (!priority.ok()) {
      SendError(*ex, {.http_status = 400, .message = priority.status().message(), .param = param});
      return;
    }
    Status reniced;
    json out;
    const bool found = WithProcess(daemon, *ex, [&](kernel::EngineThread& engine, json row) {
      reniced = engine.Renice(row["pid"].get<kernel::ProcessId>(), *priority);
      row["priority"] = *priority;  // the table shows it after the next step
      out = std::move(row);
    });
    if (!found) return;
    if (!reniced.ok()) {
      SendStatus(*ex, reniced);
      return;
    }
    SendJson(*ex, out.dump());
  });
}

}  // namespace llmasos::api
