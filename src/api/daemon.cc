#include "api/daemon.h"

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <random>

#include "api/console.h"
#include "api/errors.h"
#include "api/request.h"
#include "services/registry/reference.h"
#include "util/utf8.h"

namespace llmasos::api {

std::optional<manager::Lease> AcquireForRequest(Daemon& daemon, Exchange& exchange, std::string_view model,
                                                std::optional<manager::Duration> keep_alive) {
  if (model.empty()) {
    SendError(exchange, {.http_status = 400, .message = "\"model\" is required", .param = "model"});
    return std::nullopt;
  }
  auto spec = manager::ParseAdapterSpec(model);  // "base+adapter[:scale]"
  if (!spec.ok()) {
    SendError(exchange, {.http_status = 400, .message = spec.status().message(), .param = "model"});
    return std::nullopt;
  }
  if (auto ref = registry::ParseReference(spec->base); !ref.ok()) {
    SendError(exchange, {.http_status = 400,
                         .message = "\"model\" is not a model reference: " + ref.status().message(),
                         .param = "model"});
    return std::nullopt;
  }
  manager::AcquireOptions options;
  options.keep_alive = keep_alive;
  options.max_wait = daemon.load_wait;
  manager::AcquireInfo info;
  auto lease = daemon.manager->Acquire(model, options, &info);
  if (!lease.ok()) {
    SendStatus(exchange, lease.status(), info.retry_after_seconds);
    return std::nullopt;
  }
  exchange.record().model = lease->manifest().name + "@" + lease->manifest().version;
  if (lease->adapter() != nullptr) exchange.record().model += "+" + lease->adapter()->name;
  if (lease->model().engine == nullptr) {
    SendError(exchange, {.http_status = 500, .message = "model " + std::string(model) + " has no engine"});
    return std::nullopt;
  }
  return std::move(lease).value();
}

StatusOr<std::optional<TimePoint>> RequestDeadline(const Exchange& exchange, std::optional<float> timeout) {
  std::optional<double> seconds;
  if (timeout) seconds = *timeout;
  const std::string header(exchange.request().Header("X-Request-Timeout"));
  if (!header.empty()) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(header.c_str(), &end);
    if (errno != 0 || end != header.c_str() + header.size() || !(v >= kMinTimeoutSeconds && v <= kMaxTimeoutSeconds)) {
      return InvalidArgumentError("X-Request-Timeout: must be seconds from 0.001 to 86400, got \"" +
                                  SanitizeUtf8(header.substr(0, 64)) + "\"");
    }
    seconds = seconds ? std::min(*seconds, v) : v;
  }
  if (!seconds) return std::optional<TimePoint>();
  return std::optional<TimePoint>(RealClock()->Now() +
                                          std::chrono::duration_cast<Duration>(std::chrono::duration<double>(*seconds)));
}

bool ReadDeadlineOrAnswer(Exchange& exchange, std::optional<float> timeout, std::optional<TimePoint>* deadline) {
  auto d = RequestDeadline(exchange, timeout);
  if (!d.ok()) {
    SendError(exchange, {.http_status = 400, .message = d.status().message()});
    return false;
  }
  *deadline = *d;
  return true;
}

void SendJson(Exchange& exchange, std::string body, int status) {
  exchange.Respond(status, "application/json", std::move(body));
}

int64_t UnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Rfc3339Now() {
  const auto now = std::chrono::system_clock::now();
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<long long>(ns % 1000000000));
  return buf;
}

std::string NewResponseId(std::string_view prefix) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%016llx%08llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng() & 0xffffffffu));
  return std::string(prefix) + buf;
}

namespace {

void AddDaemonRoutes(Router& router, Daemon& daemon) {
  router.Add("GET", "/health", RouteScope::kPublic, [](const ExchangePtr& ex) { SendJson(*ex, R"({"status":"ok"})"); });
  router.Add("GET", "/ready", RouteScope::kPublic, [&daemon](const ExchangePtr& ex) {
    if (daemon.draining.load()) {
      ex->Respond(503, "application/json", R"({"status":"draining"})");
      return;
    }
    if (!daemon.ready.load()) {
      ex->Respond(503, "application/json", R"({"status":"loading"})", {{"Retry-After", "1"}});
      return;
    }
    SendJson(*ex, R"({"status":"ready"})");
  });
  router.Add("GET", "/metrics", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) {
    ex->Respond(200, "text/plain; version=0.0.4; charset=utf-8", daemon.metrics.Render(*daemon.manager));
  });
}

}  // namespace

void OnRequestEnd(Daemon& daemon, const HttpRequest& request, const RequestRecord& record) {
  daemon.metrics.OnRequestEnd(record);
  if (daemon.request_log != nullptr) daemon.request_log->Write(request, record);
}

void AddRoutes(Router& router, Daemon& daemon) {
  AddDaemonRoutes(router, daemon);
  AddOpenAiRoutes(router, daemon);
  AddOllamaRoutes(router, daemon);
  AddConsoleRoutes(router);
  AddOsRoutes(router, daemon);
  AddJobsRoutes(router, daemon);
  AddOsEventsRoute(router, daemon);
}

}  // namespace llmasos::api
