// The daemon's routes over the model service: what `llmasos serve` mounts on its HTTP server.
//
//   OpenAI   GET /v1/models  POST /v1/completions  /v1/chat/completions  /v1/embeddings
//   Ollama   /api/generate /api/chat /api/embed /api/embeddings /api/tags /api/ps /api/show
//            /api/pull /api/delete /api/copy /api/version
//   daemon   GET /health  GET /ready  GET /metrics (metrics.h)
//   console  GET / and GET /console/* (console.h)
//   /os      GET /os/processes  GET|DELETE|PATCH /os/processes/{id}  GET /os/memory
//            GET|PUT /os/scheduler  GET /os/models  POST /os/models/{load,unload,pin,unpin}
//            (os_api.cc)  GET /os/events (os_events.cc: the kernel log as SSE)
//            POST|GET /os/jobs  GET|DELETE /os/jobs/{id}  POST /os/jobs/{id}/{pause,resume,cancel}
//            GET /os/jobs/{id}/logs (jobs_api.cc)
//
// Thread safety: the routes run on the server's worker threads; everything they share is the
// manager's and the registry's, which are thread-safe.
#ifndef LLMASOS_API_DAEMON_H_
#define LLMASOS_API_DAEMON_H_

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "api/http.h"
#include "api/metrics.h"
#include "api/request_log.h"
#include "api/router.h"
#include "services/manager/model_service.h"

namespace llmasos::jobs {
class JobRunner;
}  // namespace llmasos::jobs

namespace llmasos::api {

inline constexpr std::string_view kServerVersion = "0.1.0";

struct Daemon {
  registry::Registry* registry = nullptr;
  manager::ModelManager* manager = nullptr;
  manager::ModelService* service = nullptr;
  jobs::JobRunner* jobs = nullptr;  // null: /os/jobs answers 503
  // How long a request waits for a model another request is loading before its 503.
  std::chrono::milliseconds load_wait{2000};
  // Pulls may fetch from loopback, private and link-local addresses (--allow-private-pull).
  bool allow_private_pull = false;
  // false until the --models preloads are done (/ready answers 503 until then).
  std::atomic<bool> ready{false};
  // true once a signal asked the daemon to stop: /ready answers 503 while streams finish.
  std::atomic<bool> draining{false};
  DaemonMetrics metrics;
  RequestLog* request_log = nullptr;  // null: no request log
  // The kernel log the manager and its engines publish to (GET /os/events); null: none (the
  // route answers 503 saying so).
  kernel::EventBus* events = nullptr;
};

// What the server calls at the end of each request (HttpServerOptions::on_request_end): the
// metrics count it and the request log writes its line.
void OnRequestEnd(Daemon& daemon, const HttpRequest& request, const RequestRecord& record);

void AddRoutes(Router& router, Daemon& daemon);

// --- Shared by the route files. ---

// A lease on `model` for a request, or nullopt after answering the error (400 for a name that
// is not a registry reference, 404 unknown, 503 with Retry-After while it loads, ...).
// `model` may name a LoRA adapter, "base+adapter[:scale]" (manager/adapter_cache.h): the
// lease carries it (Lease::adapter), for the request's processes (ProcessSpec::adapter); an
// unknown adapter is 404 naming it, one that does not fit the base 400 naming both.
std::optional<manager::Lease> AcquireForRequest(Daemon& daemon, Exchange& exchange, std::string_view model,
                                                std::optional<manager::Duration> keep_alive);
// The deadline of a request from its body's `timeout` and its X-Request-Timeout header
// (seconds; the sooner wins), counted from now on the kernel's clock; nullopt when it has
// neither. InvalidArgument naming the header when it is not a number in range.
StatusOr<std::optional<TimePoint>> RequestDeadline(const Exchange& exchange, std::optional<float> timeout);
// RequestDeadline into *deadline; false after answering 400 for a bad header.
bool ReadDeadlineOrAnswer(Exchange& exchange, std::optional<float> timeout, std::optional<TimePoint>* deadline);
// Responds 200 with `json` (already serialized).
void SendJson(Exchange& exchange, std::string json, int status = 200);
// Seconds since the Unix epoch, and the same as RFC 3339 UTC with nanoseconds (Ollama).
int64_t UnixSeconds();
std::string Rfc3339Now();
// "prefix" + 24 random hex digits: response ids.
std::string NewResponseId(std::string_view prefix);

void AddOpenAiRoutes(Router& router, Daemon& daemon);
void AddOllamaRoutes(Router& router, Daemon& daemon);
void AddOsRoutes(Router& router, Daemon& daemon);
void AddJobsRoutes(Router& router, Daemon& daemon);
void AddOsEventsRoute(Router& router, Daemon& daemon);

}  // namespace llmasos::api

#endif  // LLMASOS_API_DAEMON_H_
