// GET /os/events: the kernel log (kernel/event_bus.h) as server-sent events, one JSON object
// per `data:` line (docs/api.md). Like the generation pump, a stream holds no thread: the bus
// calls the subscription's notifier on the publishing thread (an engine thread, the model
// manager), which only posts a drain to the connection's executor through its Waker; the
// drain writes what is queued and waits for each write before reading more. A slow client
// fills its bounded queue and loses events (a "lost" event says how many), never slowing an
// engine. A client that goes away (a failed write, or its socket seen closed by a probe) drops
// its subscription, which the bus then forgets; a draining daemon ends every stream.
#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "api/errors.h"
#include "api/os_request.h"

namespace llmasos::api {

namespace {

using nlohmann::json;

// Events one subscriber may have queued before it loses the next ones.
constexpr size_t kQueueEvents = 1024;
// How often an idle stream looks at its client's socket (and at the daemon draining).
constexpr auto kProbeInterval = std::chrono::milliseconds(100);

json EventJson(const kernel::Event& e) {
  json j = {{"kind", kernel::EventKindName(e.kind)},
            {"time", std::chrono::duration<double>(e.time.time_since_epoch()).count()}};
  if (e.kind == kernel::EventKind::kLost) {
    j["count"] = e.count;
    return j;
  }
  j["seq"] = e.seq;
  if (e.instance != 0) j["instance"] = e.instance;
  if (e.pid != 0) {
    j["id"] = FormatProcessId({e.instance, e.pid});
    j["pid"] = e.pid;
  }
  if (!e.model.empty()) j["model"] = e.model;
  if (e.pid != 0) j["tenant"] = e.tenant;
  if (!e.reason.empty()) j["reason"] = e.reason;
  if (!e.direction.empty()) j["direction"] = e.direction;
  if (e.priority) j["priority"] = *e.priority;
  return j;
}

// The kernel log's response (PushStream). Runs on the connection's executor, except Start,
// which the route calls on its worker thread before anything is posted for the stream.
class EventStream : public PushStream {
 public:
  EventStream(ExchangePtr exchange, const std::atomic<bool>* draining)
      : PushStream(std::move(exchange), kProbeInterval), draining_(draining) {}

  void Start(std::shared_ptr<kernel::EventSubscription> subscription) {
    subscription_ = std::move(subscription);
    exchange().record().streamed = true;
    exchange().StartStream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
    // A comment first, so the client sees the stream open (it is subscribed from here on).
    exchange().Write(": llmasos kernel log\n\n", nullptr);
    Open();
  }

 private:
  bool Collect(std::string* out) override {
    for (size_t i = 0; i < kMaxItemsPerWrite; ++i) {
      std::optional<kernel::Event> e = subscription_->Next();
      if (!e) break;
      *out += "data: " + EventJson(*e).dump() + "\n\n";
    }
    return false;  // the log never ends by itself
  }

  void OnClientGone(bool seen_by_probe) override {
    if (seen_by_probe) exchange().record().client_gone = true;
    Stop(/*end_stream=*/false);
  }

  // A draining daemon ends every stream.
  bool KeepOpen() override {
    if (!draining_->load()) return true;
    Stop(/*end_stream=*/true);
    return false;
  }

  // Unsubscribes (the bus forgets a dropped subscription) and, for a client still there, ends
  // the response.
  void Stop(bool end_stream) {
    if (closed()) return;
    Close();
    subscription_.reset();
    if (end_stream) exchange().EndStream();
  }

  const std::atomic<bool>* draining_;
  std::shared_ptr<kernel::EventSubscription> subscription_;
};

void StreamEvents(Daemon& daemon, const ExchangePtr& ex) {
  auto query = ParseQuery(ex->request().query);
  std::string param;
  StatusOr<kernel::EventKindMask> kinds =
      query.ok() ? ParseEventsQuery(*query, &param) : StatusOr<kernel::EventKindMask>(query.status());
  if (!kinds.ok()) {
    SendError(*ex, {.http_status = 400, .message = kinds.status().message(), .param = param});
    return;
  }
  if (daemon.events == nullptr) {
    SendError(*ex, {.http_status = 503, .message = "this daemon keeps no kernel log"});
    return;
  }
  auto stream = std::make_shared<EventStream>(ex, &daemon.draining);
  // Called on the publishing thread: it only posts, and holds the stream weakly, so the stream
  // is only ever destroyed on the connection's side.
  Waker wake = ex->MakeWaker();
  auto subscription = daemon.events->Subscribe(kQueueEvents, *kinds, [wake, weak = std::weak_ptr<EventStream>(stream)] {
    wake([weak] {
      if (auto s = weak.lock()) s->Drain();
    });
  });
  stream->Start(std::move(subscription));
}

}  // namespace

void AddOsEventsRoute(Router& router, Daemon& daemon) {
  router.Add("GET", "/os/events", RouteScope::kAdmin, [&daemon](const ExchangePtr& ex) { StreamEvents(daemon, ex); });
}

}  // namespace llmasos::api
