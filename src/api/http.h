// The daemon's HTTP types, free of Boost: what a handler sees of a request and how it
// answers. The server (http_server.h) owns the connections; a handler gets a shared Exchange
// and answers through it, at once or later, from any thread.
#ifndef LLMASOS_API_HTTP_H_
#define LLMASOS_API_HTTP_H_

#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/status.h"

namespace llmasos::auth {
class Caller;  // services/auth/authenticator.h
}  // namespace llmasos::auth

namespace llmasos::api {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Posts a function to a connection's executor from any thread (an engine thread's channel
// notifier), without blocking; does nothing once the server has stopped.
using Waker = std::function<void(std::function<void()>)>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query, e.g. "/v1/models"
  std::string query;   // after '?', undecoded; "" when none
  HeaderList headers;  // names as sent
  std::string body;
  // The values of the route's `{name}` segments (router.h), percent-decoded; set by the
  // router before the handler runs.
  HeaderList path_params;
  // The first header named `name` (case-insensitive); "" when absent.
  std::string_view Header(std::string_view name) const;
  // The path parameter `name` of the matched route; "" when the route has none of that name.
  std::string_view PathParam(std::string_view name) const;
};

// %XX escapes decoded (and '+' as a space when `plus_is_space`, as in a query).
// InvalidArgument for a '%' not followed by two hex digits.
StatusOr<std::string> PercentDecode(std::string_view text, bool plus_is_space = false);
// A query string ("a=1&b=x%20y", without the '?') as decoded (name, value) pairs in order; a
// name without '=' has the value "". InvalidArgument naming the parameter for a bad escape.
StatusOr<HeaderList> ParseQuery(std::string_view query);

// One process a request ran, as the request log and the metrics see it (from the kernel's
// accounting at its end).
struct ProcessRecord {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // prompt tokens whose KV came from the prefix cache
  int64_t preemptions = 0;
  double queue_seconds = 0;                 // waiting (queued or preempted)
  std::optional<double> ttft_seconds;       // submitted -> first generated token
  double decode_seconds = 0;                // first generated token -> end
  double seconds = 0;                       // submitted -> end
  std::string end_reason;                   // kernel::EndReasonName
};

// What the request log and the metrics learn of one exchange. The server fills the request's
// method and path, the status, the times; the router the route; the handler (and the pump
// that streams its processes) the rest.
struct RequestRecord {
  std::string method;
  std::string path;
  std::string route;           // the pattern the router matched; "" when none did
  int status = 0;              // the response's status; 0 when none was started
  bool streamed = false;
  bool client_gone = false;    // the exchange was dropped before its response ended
  std::string model;           // "name@version" once a model was leased
  std::string tenant = "default";
  std::vector<ProcessRecord> processes;  // the processes that ended while the client was there
  double seconds = 0;          // request read -> response complete (or dropped)
};

// One request and its response. The response is either complete (Respond) or streamed
// (StartStream, Write..., EndStream; chunked transfer encoding). Exactly one of Respond or
// StartStream is called per exchange.
//
// Thread safety: every method may be called from any thread; calls take effect in order on
// the connection's executor, where `written` callbacks and RunAfter functions also run (never
// inside the call that queued them).
class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual const HttpRequest& request() const = 0;
  // The exchange's record, for the request log and the metrics. The handler and its pump
  // write it before the response ends (Respond, EndStream), never concurrently; the server
  // reads it after. REQUIRES: not called after the response ended.
  virtual RequestRecord& record() = 0;

  virtual void Respond(int status, std::string content_type, std::string body, HeaderList headers = {}) = 0;
  virtual void StartStream(int status, std::string content_type, HeaderList headers = {}) = 0;
  // Queues `data` as one chunk; `written(true)` once it is written, `written(false)` if the
  // client went away first. Empty data is ignored (written(true)).
  virtual void Write(std::string data, std::function<void(bool ok)> written) = 0;
  virtual void EndStream() = 0;

  // Whether the client has closed its end (checked now, without reading its data).
  virtual bool ClientGone() = 0;
  // Runs `fn` on the connection's executor after `delay`.
  virtual void RunAfter(std::chrono::milliseconds delay, std::function<void()> fn) = 0;
  // A Waker for this connection's executor. It holds the executor, not the connection.
  virtual Waker MakeWaker() = 0;
  // Runs `fn` on a worker thread: work that may block (a registry write) stays off the
  // connection's I/O thread.
  virtual void Offload(std::function<void()> fn) = 0;

  // Who sent the request (key, tenant, scopes, priority range, limits): set by the router's
  // gate before the handler runs, and held until the exchange goes (which ends the request for
  // its key's concurrency limit). Null on public routes and under a router without a gate.
  const std::shared_ptr<auth::Caller>& caller() const { return caller_; }
  void set_caller(std::shared_ptr<auth::Caller> caller) { caller_ = std::move(caller); }

 private:
  std::shared_ptr<auth::Caller> caller_;
};

using ExchangePtr = std::shared_ptr<Exchange>;

// A response the server pushes as its source produces it (a generation's tokens, the kernel
// log), holding no thread. Open posts the first Drain and Probe to the exchange's executor;
// Drain writes what Collect gathers, one write at a time, and drains again when a write
// completes; Probe looks at the client's socket every probe interval while the stream is open.
// The source calls Drain (posted through the exchange's Waker) when it has something new.
// Runs on the exchange's executor, except Open.
class PushStream : public std::enable_shared_from_this<PushStream> {
 public:
  virtual ~PushStream() = default;
  // Writes what the source holds, unless a write is in flight (its completion drains again),
  // the stream is not open yet, or it is closed.
  void Drain();

 protected:
  // The most source items one write gathers.
  static constexpr size_t kMaxItemsPerWrite = 256;

  PushStream(ExchangePtr exchange, std::chrono::milliseconds probe_interval)
      : exchange_(std::move(exchange)), probe_interval_(probe_interval) {}
  void Open();
  // Appends what the source holds (at most kMaxItemsPerWrite items) to *out. Returns true when
  // the source has ended and the subclass has finished the response itself (and closed).
  virtual bool Collect(std::string* out) = 0;
  // The client went away: a write failed (`seen_by_probe` false) or a probe found its socket
  // closed. The stream is over; the subclass closes it.
  virtual void OnClientGone(bool seen_by_probe) = 0;
  // Asked at each probe while the client is there: false when the subclass ended the stream
  // (probes stop).
  virtual bool KeepOpen() { return true; }
  // No more drains or probes.
  void Close() { closed_ = true; }
  bool closed() const { return closed_; }
  Exchange& exchange() const { return *exchange_; }

 private:
  void Probe();

  ExchangePtr exchange_;
  const std::chrono::milliseconds probe_interval_;
  bool started_ = false;
  bool writing_ = false;
  bool closed_ = false;
};

}  // namespace llmasos::api

#endif  // LLMASOS_API_HTTP_H_
