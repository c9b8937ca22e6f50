// /os/jobs: jobs on the daemon's job runner (services/jobs/job_runner.h), admin scope.
//   POST /os/jobs                    submit {"kind": "finetune", "model", "data", ...} or
//                                    {"kind": "batch", "model", "input", "output", ...} (batch_job.h): 201
//   GET  /os/jobs                    every job, newest first (?state=queued|running|...)
//   GET  /os/jobs/{id}               one job: state, progress, adapter, error
//   DELETE /os/jobs/{id}             cancel (as POST /os/jobs/{id}/cancel)
//   POST /os/jobs/{id}/pause|resume|cancel
//   GET  /os/jobs/{id}/logs          its log (?after=SEQ for the lines after SEQ)
// A daemon started without a job runner answers 503 naming that.
#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "api/errors.h"
#include "api/json_body.h"
#include "services/jobs/job_runner.h"
#include "util/utf8.h"

namespace llmasos::api {
namespace {

using nlohmann::json;

json OptionalTime(const std::optional<int64_t>& t) { return t ? json(*t) : json(nullptr); }

json JobJson(const jobs::JobRecord& j) {
  const jobs::JobProgress& p = j.progress;
  json progress = {{"step", p.step},
                   {"total_steps", p.total_steps},
                   {"epoch", p.epoch},
                   {"loss", p.loss >= 0 ? json(p.loss) : json(nullptr)},
                   {"eval_loss", p.eval_loss >= 0 ? json(p.eval_loss) : json(nullptr)},
                   {"tokens_per_second", p.tokens_per_second},
                   {"seconds_left", p.seconds_left >= 0 ? json(p.seconds_left) : json(nullptr)}};
  json out = {{"id", jobs::JobIdText(j.id)},
              {"kind", j.kind},
              {"state", jobs::JobStateName(j.state)},
              {"spec", json::parse(j.spec, nullptr, false)},
              {"progress", std::move(progress)},
              {"created", j.created_unix},
              {"started", OptionalTime(j.started_unix)},
              {"ended", OptionalTime(j.ended_unix)},
              {"error", j.error.empty() ? json(nullptr) : json(ScrubPaths(j.error))},
              {"adapter", nullptr}};
  if (!j.result.empty()) {
    json result = json::parse(j.result, nullptr, false);
    if (result.is_object()) {
      result.erase("adapter_path");  // a path on the daemon's machine
      if (result.contains("adapter")) out["adapter"] = result["adapter"];
      out["result"] = std::move(result);
    }
  }
  return out;
}

// The runner, or null after answering 503.
jobs::JobRunner* RunnerOrAnswer(Daemon& daemon, Exchange& ex) {
  if (daemon.jobs == nullptr) {
    SendError(ex, {.http_status = 503, .message = "this daemon runs no jobs (it has no job runner)"});
  }
  return daemon.jobs;
}

// The {id} of the path, or nullopt after answering 400.
std::optional<int64_t> JobIdOrAnswer(Exchange& ex) {
  auto id = jobs::ParseJobId(ex.request().PathParam("id"));
  if (!id.ok()) {
    SendError(ex, {.http_status = 400, .message = id.status().message(), .param = "id"});
    return std::nullopt;
  }
  return *id;
}

void SendJob(Exchange& ex, const StatusOr<jobs::JobRecord>& job, int status = 200) {
  if (!job.ok()) {
    SendStatus(ex, job.status());
    return;
  }
  SendJson(ex, JobJson(*job).dump(), status);
}

void Submit(Daemon& daemon, Exchange& ex) {
  jobs::JobRunner* runner = RunnerOrAnswer(daemon, ex);
  if (runner == nullptr) return;
  auto body = ParseJsonObject(ex.request().body);
  if (!body.ok()) {
    SendError(ex, {.http_status = 400, .message = body.status().message()});
    return;
  }
  std::string field;
  auto job = runner->Submit(*body, &field);
  if (!job.ok() && job.status().code() == StatusCode::kInvalidArgument) {
    SendError(ex, {.http_status = 400, .message = ScrubPaths(job.status().message()), .param = field});
    return;
  }
  SendJob(ex, job, 201);
}

void List(Daemon& daemon, Exchange& ex) {
  jobs::JobRunner* runner = RunnerOrAnswer(daemon, ex);
  if (runner == nullptr) return;
  auto query = ParseQuery(ex.request().query);
  std::optional<jobs::JobState> state;
  Status bad = query.status();
  if (query.ok()) {
    for (const auto& [name, value] : *query) {
      if (name != "state") {
        bad = InvalidArgumentError("unknown parameter '" + SanitizeUtf8(name.substr(0, 64)) + "' (only state)");
        break;
      }
      auto s = jobs::ParseJobState(value);
      if (!s.ok()) {
        bad = s.status();
        break;
      }
      state = *s;
    }
  }
  if (!bad.ok()) {
    SendError(ex, {.http_status = 400, .message = bad.message(), .param = "state"});
    return;
  }
  auto rows = runner->store().List(state);
  if (!rows.ok()) {
    SendStatus(ex, rows.status());
    return;
  }
  json out = json::array();
  for (const jobs::JobRecord& j : *rows) out.push_back(JobJson(j));
  SendJson(ex, json{{"jobs", out}}.dump());
}

void Logs(Daemon& daemon, Exchange& ex) {
  jobs::JobRunner* runner = RunnerOrAnswer(daemon, ex);
  if (runner == nullptr) return;
  std::optional<int64_t> id = JobIdOrAnswer(ex);
  if (!id) return;
  int64_t after = 0;
  auto query = ParseQuery(ex.request().query);
  Status bad = query.status();
  if (query.ok()) {
    for (const auto& [name, value] : *query) {
      char* end = nullptr;
      const long long v = std::strtoll(value.c_str(), &end, 10);
      if (name != "after" || value.empty() || end != value.c_str() + value.size() || v < 0) {
        bad = InvalidArgumentError("the only parameter is after=SEQ (a whole number)");
        break;
      }
      after = v;
    }
  }
  if (!bad.ok()) {
    SendError(ex, {.http_status = 400, .message = bad.message(), .param = "after"});
    return;
  }
  auto lines = runner->store().Log(*id, after);
  if (!lines.ok()) {
    SendStatus(ex, lines.status());
    return;
  }
  json out = json::array();
  for (const jobs::LogLine& l : *lines) out.push_back({{"seq", l.seq}, {"at", l.at_unix}, {"line", ScrubPaths(l.line)}});
  SendJson(ex, json{{"id", jobs::JobIdText(*id)}, {"lines", out}}.dump());
}

using Action = StatusOr<jobs::JobRecord> (jobs::JobRunner::*)(int64_t);

void Act(Daemon& daemon, Exchange& ex, Action action) {
  jobs::JobRunner* runner = RunnerOrAnswer(daemon, ex);
  if (runner == nullptr) return;
  std::optional<int64_t> id = JobIdOrAnswer(ex);
  if (!id) return;
  SendJob(ex, (runner->*action)(*id));
}

}  // namespace

void AddJobsRoutes(Router& router, Daemon& daemon) {
  router.Add("POST", "/os/jobs", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { Submit(daemon, *ex); },
             Pool::kSlow);  // it resolves (and may hash) the base model
  router.Add("GET", "/os/jobs", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { List(daemon, *ex); });
  router.Add("GET", "/os/jobs/{id}", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) {
    jobs::JobRunner* runner = RunnerOrAnswer(daemon, *ex);
    if (runner == nullptr) return;
    if (std::optional<int64_t> id = JobIdOrAnswer(*ex)) SendJob(*ex, runner->store().Get(*id));
  });
  router.Add("GET", "/os/jobs/{id}/logs", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { Logs(daemon, *ex); });
  // Pausing or cancelling a running job waits for its current step: the slow pool.
  router.Add("DELETE", "/os/jobs/{id}", RouteScope::kAdmin,
             [&daemon](const ExchangePtr& ex) { Act(daemon, *ex, &jobs::JobRunner::Cancel); }, Pool::kSlow);
  router.Add("POST", "/os/jobs/{id}/cancel", RouteScope::kAdmin,
             [&daemon](const ExchangePtr& ex) { Act(daemon, *ex, &jobs::JobRunner::Cancel); }, Pool::kSlow);
  router.Add("POST", "/os/jobs/{id}/pause", RouteScope::kAdmin,
             [&daemon](const ExchangePtr& ex) { Act(daemon, *ex, &jobs::JobRunner::Pause); }, Pool::kSlow);
  router.Add("POST", "/os/jobs/{id}/resume", RouteScope::kAdmin,
             [&daemon](const ExchangePtr& ex) { Act(daemon, *ex, &jobs::JobRunner::Resume); });
}

}  // namespace llmasos::api
