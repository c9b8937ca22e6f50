// The daemon's HTTP/1.1 server on Boost.Asio/Beast: keep-alive connections, each on its own
// strand; a small fixed pool of I/O threads that only parse and write; handlers run on a pool
// of worker threads (and a separate slow pool), never on the I/O threads.
//
// Limits, each answered before more of the request is read:
//   - a request head over max_header_bytes or with more than max_header_fields fields: 431;
//   - a body longer than max_body_bytes: 413 (checked against Content-Length before any of the
//     body is read, and by the parser's body limit for chunked bodies);
//   - a request not complete within request_timeout of its first byte (a slow or stalled
//     client), or a keep-alive connection idle for idle_timeout: closed;
//   - malformed HTTP: 400 and closed;
//   - more than max_connections open at once: new ones are closed at once.
// After an error response the connection is closed (what follows cannot be trusted).
//
// Thread safety: Start, port and Stop from the owning thread; Exchanges as http.h says.
#ifndef LLMASOS_API_HTTP_SERVER_H_
#define LLMASOS_API_HTTP_SERVER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api/router.h"
#include "util/status.h"

namespace llmasos::api {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0: any free port (see HttpServer::port)
  size_t io_threads = 2;
  size_t worker_threads = 16;
  size_t slow_threads = 4;
  size_t max_body_bytes = size_t{16} << 20;
  size_t max_header_bytes = size_t{16} << 10;
  size_t max_header_fields = 100;
  size_t max_connections = 1024;
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds idle_timeout{120000};
  // Called once per request: when its response has been queued in full, when its exchange is
  // dropped without one (the client went away), or, with an empty route, when the server
  // answered an error itself (400, 413, 431). Runs on a connection's executor or the thread
  // that drops the exchange: it must be thread-safe and quick. May be empty.
  std::function<void(const HttpRequest&, const RequestRecord&)> on_request_end;
  // Paths still served while draining (/health, /ready, /metrics).
  std::vector<std::string> drain_exempt_paths;
  // HTTPS: both, or neither for plain HTTP. The certificate chain and its private key, PEM
  // files (api/tls.h says what is checked). Over TLS each connection's handshake has
  // request_timeout; a client that fails it is closed, one that speaks plain HTTP gets a plain
  // 400 saying to use https.
  std::string tls_cert_file;
  std::string tls_key_file;
};

class HttpServer {
 public:
  // Binds and starts serving `router` (which must outlive the server). InvalidArgument for a
  // bad host, options out of range, or one TLS file without the other; a TLS file's error
  // (api/tls.h); Unavailable when the address cannot be bound.
  static StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options, const Router* router);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  // Starts draining: from now on a new request, except on drain_exempt_paths, is answered 503
  // ("the server is shutting down", Retry-After) and its connection closed; requests in
  // flight go on. Thread-safe.
  void BeginDrain();
  // Requests in flight now: handlers running or queued, responses not yet complete.
  // Thread-safe.
  size_t num_active() const;
  // Connections open now (each counted until its last handler lets go of it). Thread-safe.
  size_t num_connections() const;
  // Stops accepting, closes every connection, waits for the handlers queued on the worker
  // pools and joins every thread. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmasos::api

#endif  // LLMASOS_API_HTTP_SERVER_H_
