// The /os/* admin surface: the process table across every loaded model instance, kill and
// renice of one process, memory per instance, the scheduling policy per instance, and the
// models with load, unload, pin and unpin (docs/api.md). Rows come from each engine's published table
// (EngineThread::Processes), so a read never waits for a step; kill and renice go through the
// engine's queue and take effect before its next step.
#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "api/errors.h"
#include "api/os_request.h"

namespace llmasos::api {

namespace {

using nlohmann::json;

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
          {"queued_seconds", ToSeconds(p.time_queued)},
          {"running_seconds", ToSeconds(p.time_running)},
          {"age_seconds", ToSeconds(p.age)},
          {"adapter", p.adapter.empty() ? json(nullptr) : json(p.adapter)}};
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

// One row of /os/scheduler: the instance and its scheduler's parameters (os_request.h's schema).
json SchedulerRow(uint64_t instance, const registry::Manifest& m, const kernel::SchedulingSettings& settings) {
  json row = {{"instance", instance}, {"model", m.name}, {"version", m.version}};
  row.update(SchedulingSettingsJson(settings));
  return row;
}

void GetScheduler(Daemon& daemon, Exchange& ex) {
  json rows = json::array();
  daemon.manager->ForEachLoaded([&](uint64_t instance, const registry::Manifest& m, const manager::LoadedModel& loaded) {
    if (loaded.engine == nullptr) return;
    rows.push_back(SchedulerRow(instance, m, loaded.engine->Scheduling()));
  });
  SendJson(ex, json{{"instances", rows}}.dump());
}

// Every field is range-checked on its own, so the merge with an instance's settings cannot
// fail validation; UpdateScheduling fails only for an engine that is shutting down.
void PutScheduler(Daemon& daemon, Exchange& ex) {
  std::string param;
  StatusOr<SchedulerUpdate> update = ParseSchedulerUpdate(ex.request().body, &param);
  if (!update.ok()) {
    SendError(ex, {.http_status = 400, .message = update.status().message(), .param = param});
    return;
  }
  Status error;
  json rows = json::array();
  daemon.manager->ForEachLoaded([&](uint64_t instance, const registry::Manifest& m, const manager::LoadedModel& loaded) {
    if (loaded.engine == nullptr || (update->instance && *update->instance != instance)) return;
    StatusOr<kernel::SchedulingSettings> now = loaded.engine->UpdateScheduling(update->update);
    if (!now.ok()) {
      if (error.ok()) error = now.status();
      return;
    }
    rows.push_back(SchedulerRow(instance, m, *now));
  });
  if (!error.ok()) {
    SendStatus(ex, error);
    return;
  }
  if (update->instance && rows.empty()) {
    SendError(ex, {.http_status = 404, .message = "no loaded model instance " + std::to_string(*update->instance),
                   .param = "instance", .code = "not_found"});
    return;
  }
  SendJson(ex, json{{"instances", rows}}.dump());
}

void GetMemory(Daemon& daemon, Exchange& ex) {
  json rows = json::array();
  daemon.manager->ForEachLoaded([&](uint64_t instance, const registry::Manifest& m, const manager::LoadedModel& loaded) {
    json row = {{"instance", instance}, {"model", m.name}, {"version", m.version},
                {"resident_bytes", loaded.resident_bytes}, {"kv_pool_bytes", loaded.kv_bytes}};
    if (loaded.engine != nullptr) {
      const kernel::KvStats kv = loaded.engine->Stats().kv;
      row["kv"] = {{"cache_type_k", cpu::KvTypeName(kv.k_type)},
                   {"cache_type_v", cpu::KvTypeName(kv.v_type)},
                   {"block_tokens", kv.block_tokens},   {"block_bytes", kv.block_bytes},
                   {"total_blocks", kv.total_blocks},   {"used_blocks", kv.used_blocks},
                   {"cached_blocks", kv.cached_blocks}, {"free_blocks", kv.free_blocks},
                   {"stored_tokens", kv.stored_tokens}, {"utilisation", kv.utilisation},
                   {"num_sequences", kv.num_sequences}, {"window_dropped_blocks", kv.dropped_blocks}};
      row["prefix_cache"] = {{"entries", kv.cache_entries}, {"lookups", kv.prefix_lookups},
                             {"hits", kv.prefix_hits},       {"hit_rate", kv.prefix_hit_rate},
                             {"evicted_blocks", kv.evicted_blocks}};
      row["swap"] = {{"used_blocks", kv.swapped_blocks}, {"capacity_blocks", kv.swap_capacity_blocks}};
    }
    rows.push_back(std::move(row));
  });
  SendJson(ex, json{{"budget_bytes", daemon.manager->options().memory_budget_bytes},
                    {"used_bytes", daemon.manager->used_bytes()},
                    {"instances", rows}}
                   .dump());
}

json ModelJson(const manager::ModelStatus& s) {
  json j = {{"name", s.manifest.name},       {"version", s.manifest.version}, {"digest", s.manifest.digest},
            {"size_bytes", s.manifest.size_bytes}, {"tags", s.tags},       {"loaded", s.loaded},
            {"loading", s.loading},          {"pinned", s.pinned},           {"num_requests", s.num_requests},
            {"resident_bytes", s.resident_bytes}};
  if (s.keep_alive) j["keep_alive_seconds"] = ToSeconds(*s.keep_alive);
  if (s.expires_in) j["expires_in_seconds"] = ToSeconds(*s.expires_in);
  if (s.loaded) {
    json adapters = json::array();
    for (const manager::CachedAdapterInfo& a : s.adapters) {
      adapters.push_back({{"name", a.name}, {"digest", a.digest}, {"scale", a.scale}, {"rank", a.rank},
                          {"bytes", a.bytes}, {"num_holders", a.num_holders}});
    }
    j["adapters"] = std::move(adapters);
    j["max_adapters"] = s.max_adapters;
  }
  return j;
}

void ListModels(Daemon& daemon, Exchange& ex) {
  auto models = daemon.service->List();
  if (!models.ok()) {
    SendStatus(ex, models.status());
    return;
  }
  json rows = json::array();
  for (const manager::ModelStatus& s : *models) rows.push_back(ModelJson(s));
  SendJson(ex, json{{"models", rows}}.dump());
}

void ModelActionRoute(Daemon& daemon, Exchange& ex, ModelAction action) {
  std::string param;
  StatusOr<ModelActionRequest> r = ParseModelAction(action, ex.request().body, &param);
  if (!r.ok()) {
    SendError(ex, {.http_status = 400, .message = r.status().message(), .param = param});
    return;
  }
  json out = {{"model", r->model}};
  Status st;
  manager::AcquireInfo info;
  switch (action) {
    case ModelAction::kLoad: {
      auto m = daemon.service->Load({.model = r->model, .keep_alive = r->keep_alive, .max_wait = daemon.load_wait}, &info);
      st = m.status();
      if (m.ok()) out["loaded"] = m->name + "@" + m->version;
      break;
    }
    case ModelAction::kUnload: {
      auto u = daemon.service->Unload({.model = r->model, .unpin = r->unpin});
      st = u.status();
      if (u.ok()) out.update({{"was_loaded", u->was_loaded}, {"unloaded_now", u->unloaded_now}});
      break;
    }
    case ModelAction::kPin: {
      auto m = daemon.service->Pin(r->model);
      st = m.status();
      if (m.ok()) out["pinned"] = m->name + "@" + m->version;
      break;
    }
    case ModelAction::kUnpin:
      st = daemon.service->Unpin(r->model);
      if (st.ok()) out["unpinned"] = true;
      break;
  }
  if (!st.ok()) {
    SendStatus(ex, st, info.retry_after_seconds);
    return;
  }
  SendJson(ex, out.dump());
}

}  // namespace

void AddOsRoutes(Router& router, Daemon& daemon) {
  router.Add("GET", "/os/processes", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { ListProcesses(daemon, *ex); });
  router.Add("GET", "/os/processes/{id}", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) {
    json out;
    if (WithProcess(daemon, *ex, [&](kernel::EngineThread&, json row) { out = std::move(row); })) {
      SendJson(*ex, out.dump());
    }
  });
  router.Add("DELETE", "/os/processes/{id}", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) {
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
  router.Add("PATCH", "/os/processes/{id}", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) {
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
  router.Add("GET", "/os/memory", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { GetMemory(daemon, *ex); });
  router.Add("GET", "/os/scheduler", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { GetScheduler(daemon, *ex); });
  router.Add("PUT", "/os/scheduler", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { PutScheduler(daemon, *ex); });
  router.Add("GET", "/os/models", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { ListModels(daemon, *ex); });
  // Loading (and pinning, which loads) may take long: the slow pool.
  router.Add("POST", "/os/models/load", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { ModelActionRoute(daemon, *ex, ModelAction::kLoad); },
             Pool::kSlow);
  router.Add("POST", "/os/models/unload", RouteScope::kAdmin,
             [&daemon](const ExchangePtr& ex) { ModelActionRoute(daemon, *ex, ModelAction::kUnload); });
  router.Add("POST", "/os/models/pin", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { ModelActionRoute(daemon, *ex, ModelAction::kPin); },
             Pool::kSlow);
  router.Add("POST", "/os/models/unpin", RouteScope::kAdmin,
             [&daemon](const ExchangePtr& ex) { ModelActionRoute(daemon, *ex, ModelAction::kUnpin); });
}

}  // namespace llmasos::api
