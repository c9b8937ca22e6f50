#include "api/http_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <deque>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "api/errors.h"
#include "api/tls.h"
#include "util/logging.h"
#include "util/mutex.h"
#include "util/thread_annotations.h"

namespace llmasos::api {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
namespace ssl = net::ssl;

namespace {

// Boost 1.74's Beast has its own string_view.
std::string_view Std(beast::string_view s) { return {s.data(), s.size()}; }

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

}  // namespace

std::string_view HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (EqualsIgnoringCase(k, name)) return v;
  }
  return {};
}

namespace {

// What the server needs of a connection of either kind: to close it when it stops.
class Closable {
 public:
  virtual ~Closable() = default;
  virtual void Shutdown() = 0;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  const Router* router = nullptr;
  // Before ioc: connections still queued in ioc count down as it is destroyed.
  std::atomic<size_t> num_connections{0};
  std::atomic<size_t> num_active{0};  // live exchanges
  std::atomic<bool> draining{false};
  // With --tls-cert and --tls-key: every connection speaks TLS. Before ioc, which may still
  // hold connections when it is destroyed.
  std::unique_ptr<ssl::context> tls;
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::unique_ptr<net::thread_pool> workers;
  std::unique_ptr<net::thread_pool> slow;
  std::vector<std::thread> io_threads;
  // Wakers post only while the gate is open; Stop closes it before the io_context goes.
  struct Gate {
    Mutex mu;
    bool open GUARDED_BY(mu) = true;
  };
  std::shared_ptr<Gate> gate = std::make_shared<Gate>();
  bool stopped = false;
  // Open connections, so that Stop can close each on its strand (pruned at each accept).
  Mutex connections_mu;
  std::vector<std::weak_ptr<Closable>> connections GUARDED_BY(connections_mu);
  std::atomic<size_t> num_io_running{0};  // I/O threads still in ioc.run()

  void Accept();
  template <class Conn>
  void Open(std::shared_ptr<Conn> connection);
};

namespace {

std::string StatusLine(int status) {
  std::string_view reason = Std(http::obsolete_reason(static_cast<http::status>(status)));
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
}

std::string ChunkOf(std::string_view data) {
  char size[32];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out = size;
  out.append(data);
  out += "\r\n";
  return out;
}

// The streams a connection runs over: plain TCP, or TLS over TCP. Either way the TCP layer
// (beast::get_lowest_layer) holds the socket and the timeouts.
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Bytes read at once while waiting for a request's first byte.
constexpr size_t kFirstReadBytes = 16 << 10;

// One client connection over `Stream` (PlainStream or TlsStream): the same HTTP code for both.
// Everything here runs on the connection's strand (the socket's executor), except what
// ExchangeImpl posts to it.
template <class Stream>
class Connection : public Closable, public std::enable_shared_from_this<Connection<Stream>> {
 public:
  // `stream_args`: the socket, then for TLS the server's context.
  template <class... StreamArgs>
  explicit Connection(HttpServer::Impl* server, StreamArgs&&... stream_args)
      : stream_(std::forward<StreamArgs>(stream_args)...), server_(server) {
    server_->num_connections.fetch_add(1);
  }
  ~Connection() override { server_->num_connections.fetch_sub(1); }

  void Begin() {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      Handshake();
    } else {
      AwaitRequest();
    }
  }

  // --- Used by ExchangeImpl, on the strand. ---
  void SendHead(int status, const std::string& content_type, const HeaderList& headers, std::optional<size_t> length,
                std::string body) {
    if (responded_) {
      LOG(kWarning) << "a handler answered one request twice; the second answer is dropped";
      return;
    }
    responded_ = true;
    std::string out = StatusLine(status);
    out += "Content-Type: " + content_type + "\r\n";
    if (length) {
      out += "Content-Length: " + std::to_string(*length) + "\r\n";
    } else {
      out += "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n";
    }
    for (const auto& [k, v] : headers) out += k + ": " + v + "\r\n";
    if (!keep_alive_) out += "Connection: close\r\n";
    out += "\r\n";
    out += body;
    Queue(std::move(out), nullptr, /*last=*/length.has_value());
  }
  void Queue(std::string data, std::function<void(bool)> done, bool last) {
    if (closed_) {
      if (done) net::post(stream_.get_executor(), [done = std::move(done)] { done(false); });
      return;
    }
    writes_.push_back(Write{std::move(data), std::move(done), last});
    if (!writing_) WriteNext();
  }
  // Peeks at the TCP socket: end of stream or an error means the client went away. (Over TLS
  // a client's close_notify alert is data here; its FIN or reset still shows.)
  bool ClientGone() {
    if (closed_) return true;
    char c;
    const ssize_t n = ::recv(Tcp().socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) return false;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
    return true;
  }
  net::any_io_executor executor() { return stream_.get_executor(); }
  const HttpServerOptions& options() const { return server_->options; }
  // Closes the connection (on its strand): a write in flight fails, so a stream on it lets
  // go of its processes.
  void Shutdown() override {
    net::dispatch(stream_.get_executor(), [self = Self()] { self->Close(); });
  }
  std::atomic<size_t>& num_active() { return server_->num_active; }
  void Offload(std::function<void()> fn) { net::post(*server_->workers, std::move(fn)); }
  Waker MakeWaker() {
    return [gate = server_->gate, executor = stream_.get_executor()](std::function<void()> fn) {
      MutexLock lock(gate->mu);
      if (gate->open) net::post(executor, std::move(fn));
    };
  }

 private:
  struct Write {
    std::string data;
    std::function<void(bool)> done;
    bool last = false;  // ends the response
  };

  std::shared_ptr<Connection> Self() { return this->shared_from_this(); }
  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(stream_); }

  // TLS only: the handshake, within request_timeout. A client that speaks plain HTTP to this
  // port gets a plain 400 saying to use https; any other failure closes the connection.
  void Handshake() {
    Tcp().expires_after(server_->options.request_timeout);
    beast::async_detect_ssl(Tcp(), buffer_, [self = Self()](beast::error_code ec, bool is_tls) {
      if (ec) {
        self->Close();
        return;
      }
      if (!is_tls) {
        self->RefusePlainHttp();
        return;
      }
      self->stream_.async_handshake(ssl::stream_base::server, self->buffer_.data(),
                                    [self](beast::error_code ec, size_t used) {
                                      if (ec) {
                                        LOG(kDebug) << "TLS handshake failed: " << ec.message();
                                        self->Close();
                                        return;
                                      }
                                      self->buffer_.consume(used);
                                      self->Tcp().expires_never();
                                      self->AwaitRequest();
                                    });
    });
  }

  // TLS only: the answer to a plain-HTTP client, written on the TCP layer in the clear.
  void RefusePlainHttp() {
    buffer_.consume(buffer_.size());
    closed_ = true;  // no HTTP exchange on this connection
    const std::string body = ErrorBody("/", {.http_status = 400,
                                             .message = "this port serves HTTPS (TLS): use an https:// address"});
    auto out = std::make_shared<std::string>(StatusLine(400) + "Content-Type: application/json\r\nContent-Length: " +
                                             std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    Tcp().expires_after(server_->options.request_timeout);
    net::async_write(Tcp(), net::buffer(*out), [self = Self(), out](beast::error_code ec, size_t) {
      if (ec) {
        self->Close();
        return;
      }
      self->LingerThenClose();
    });
  }

  void AwaitRequest() {
    responded_ = false;
    if (buffer_.size() > 0) {
      ReadHead();
      return;
    }
    // Idle until the next request's first bytes; then request_timeout for the whole request.
    // (Read through the stream, not by waiting on the socket: over TLS the next request may
    // already sit decrypted-to-be in the TLS layer.)
    Tcp().expires_after(server_->options.idle_timeout);
    stream_.async_read_some(buffer_.prepare(kFirstReadBytes), [self = Self()](beast::error_code ec, size_t n) {
      self->buffer_.commit(n);
      if (ec || self->closed_) {
        self->Close();
        return;
      }
      self->ReadHead();
    });
  }

  void ReadHead() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->options.max_header_bytes));
    parser_->body_limit(server_->options.max_body_bytes);
    Tcp().expires_after(server_->options.request_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = Self()](beast::error_code ec, size_t) { self->OnHead(ec); });
  }

  void OnHead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset) {
      Close();
      return;
    }
    if (ec == http::error::header_limit) {
      Fail(431, "the request's header fields are over the limit of " +
                    std::to_string(server_->options.max_header_bytes) + " bytes");
      return;
    }
    if (ec == http::error::body_limit) {
      // The parser checks Content-Length against the limit as it reads the head: nothing of
      // the body has been read.
      const std::string length(Std(parser_->get()[http::field::content_length]));
      Fail(413, "the request body" + (length.empty() ? "" : " of " + length + " bytes") + " is over the limit of " +
                    std::to_string(server_->options.max_body_bytes) + " bytes");
      return;
    }
    if (ec) {
      Fail(400, "malformed HTTP request: " + ec.message());
      return;
    }
    const auto& head = parser_->get();
    const size_t num_fields = static_cast<size_t>(std::distance(head.begin(), head.end()));
    if (num_fields > server_->options.max_header_fields) {
      Fail(431, "the request has " + std::to_string(num_fields) + " header fields; the limit is " +
                    std::to_string(server_->options.max_header_fields));
      return;
    }
    if (auto length = parser_->content_length(); length && *length > server_->options.max_body_bytes) {
      Fail(413, "the request body of " + std::to_string(*length) + " bytes is over the limit of " +
                    std::to_string(server_->options.max_body_bytes) + " bytes");
      return;
    }
    if (EqualsIgnoringCase(Std(head[http::field::expect]), "100-continue")) {
      Queue("HTTP/1.1 100 Continue\r\n\r\n", [self = Self()](bool ok) {
        if (ok) self->ReadBody();
      }, false);
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = Self()](beast::error_code ec, size_t) { self->OnBody(ec); });
  }

  void OnBody(beast::error_code ec) {
    if (ec == beast::error::timeout || ec == http::error::end_of_stream || ec == net::error::connection_reset) {
      Close();
      return;
    }
    if (ec == http::error::body_limit) {
      Fail(413, "the request body is over the limit of " + std::to_string(server_->options.max_body_bytes) + " bytes");
      return;
    }
    if (ec) {
      Fail(400, "malformed HTTP request: " + ec.message());
      return;
    }
    Tcp().expires_never();
    auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    HttpRequest request;
    request.method = std::string(Std(msg.method_string()));
    const std::string_view target = Std(msg.target());
    const size_t q = target.find('?');
    request.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) request.query = std::string(target.substr(q + 1));
    for (const auto& field : msg) request.headers.emplace_back(std::string(Std(field.name_string())), std::string(Std(field.value())));
    request.body = std::move(msg.body());
    parser_.reset();
    Dispatch(std::move(request));
  }

  void Dispatch(HttpRequest request);

  // An error answered before any handler saw the request; the connection closes after it.
  void Fail(int status, const std::string& message) {
    keep_alive_ = false;
    failed_ = true;
    std::string path = "/";
    HttpRequest request;
    if (parser_ && parser_->is_header_done()) {
      const std::string_view target = Std(parser_->get().target());
      path = std::string(target.substr(0, target.find('?')));
      request.method = std::string(Std(parser_->get().method_string()));
    }
    request.path = path;
    if (server_->options.on_request_end) {
      RequestRecord record;
      record.method = request.method;
      record.path = path;
      record.status = status;
      server_->options.on_request_end(request, record);
    }
    std::string body = ErrorBody(path, {.http_status = status, .message = message});
    const size_t length = body.size();
    SendHead(status, "application/json", {}, length, std::move(body));
  }

  void WriteNext() {
    if (writes_.empty()) {
      writing_ = false;
      return;
    }
    writing_ = true;
    // A client that stops reading for idle_timeout is dropped.
    Tcp().expires_after(server_->options.idle_timeout);
    net::async_write(stream_, net::buffer(writes_.front().data),
                     [self = Self()](beast::error_code ec, size_t) { self->OnWritten(ec); });
  }

  void OnWritten(beast::error_code ec) {
    Write w = std::move(writes_.front());
    writes_.pop_front();
    if (ec) {
      closed_ = true;
      if (w.done) w.done(false);
      while (!writes_.empty()) {
        Write rest = std::move(writes_.front());
        writes_.pop_front();
        if (rest.done) rest.done(false);
      }
      writing_ = false;
      Close();
      return;
    }
    Tcp().expires_never();
    if (w.done) w.done(true);
    if (w.last) {
      if (keep_alive_ && !closed_) {
        AwaitRequest();
      } else if (failed_) {
        LingerThenClose();
      } else {
        Close();
      }
    }
    WriteNext();
  }

  // After an error answer the client may still be sending (a body over the limit): stop
  // sending, read and drop what comes for a moment, then close, so the client reads the answer
  // instead of a reset.
  void LingerThenClose() {
    closed_ = true;
    beast::error_code ignored;
    Tcp().socket().shutdown(tcp::socket::shutdown_send, ignored);
    Tcp().expires_after(std::chrono::seconds(2));
    Drain();
  }
  void Drain() {
    drain_.consume(drain_.size());
    // Raw bytes off the TCP layer: over TLS they need no decrypting to be dropped.
    Tcp().async_read_some(drain_.prepare(64 << 10), [self = Self()](beast::error_code ec, size_t) {
      if (ec) {
        self->Close();
        return;
      }
      self->Drain();
    });
  }

  void Close() {
    if (closed_ && !Tcp().socket().is_open()) return;
    closed_ = true;
    // Over TLS without a close_notify: every response is delimited by its length or its
    // last chunk, so a client cannot mistake the close for the end of one.
    beast::error_code ignored;
    Tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Tcp().close();
  }

  Stream stream_;
  HttpServer::Impl* server_;
  beast::flat_buffer buffer_;
  beast::flat_buffer drain_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::deque<Write> writes_;
  bool writing_ = false;
  bool keep_alive_ = true;
  bool responded_ = false;
  bool closed_ = false;
  bool failed_ = false;  // answered with an error before any handler ran
};

// One request and its response on a connection of type Conn.
template <class Conn>
class ExchangeImpl : public Exchange, public std::enable_shared_from_this<ExchangeImpl<Conn>> {
 public:
  ExchangeImpl(std::shared_ptr<Conn> connection, HttpRequest request)
      : connection_(std::move(connection)),
        request_(std::move(request)),
        received_at_(std::chrono::steady_clock::now()) {
    record_.method = request_.method;
    record_.path = request_.path;
    connection_->num_active().fetch_add(1);
  }
  // An exchange dropped before its response ended: the client went away (or the handler
  // never answered, a bug logged by nobody else).
  ~ExchangeImpl() override {
    if (!finished_) {
      record_.client_gone = true;
      Report();
    }
    connection_->num_active().fetch_sub(1);
  }

  const HttpRequest& request() const override { return request_; }
  RequestRecord& record() override { return record_; }

  void Respond(int status, std::string content_type, std::string body, HeaderList headers) override {
    net::dispatch(connection_->executor(), [self = Self(), status, content_type = std::move(content_type),
                                            body = std::move(body), headers = std::move(headers)]() mutable {
      const size_t length = body.size();
      self->connection_->SendHead(status, content_type, headers, length, std::move(body));
      self->Finish(status);
    });
  }
  void StartStream(int status, std::string content_type, HeaderList headers) override {
    net::dispatch(connection_->executor(),
                  [self = Self(), status, content_type = std::move(content_type), headers = std::move(headers)] {
                    self->connection_->SendHead(status, content_type, headers, std::nullopt, "");
                    if (self->record_.status == 0) {
                      self->record_.status = status;
                      self->record_.streamed = true;
                    }
                  });
  }
  void Write(std::string data, std::function<void(bool)> written) override {
    if (data.empty()) {
      if (written) net::post(connection_->executor(), [written = std::move(written)] { written(true); });
      return;
    }
    net::dispatch(connection_->executor(), [c = connection_, data = ChunkOf(data), written = std::move(written)]() mutable {
      c->Queue(std::move(data), std::move(written), false);
    });
  }
  void EndStream() override {
    net::dispatch(connection_->executor(), [self = Self()] {
      self->connection_->Queue("0\r\n\r\n", nullptr, true);
      self->Finish(self->record_.status);
    });
  }
  bool ClientGone() override { return connection_->ClientGone(); }
  void Offload(std::function<void()> fn) override { connection_->Offload(std::move(fn)); }
  Waker MakeWaker() override { return connection_->MakeWaker(); }
  void RunAfter(std::chrono::milliseconds delay, std::function<void()> fn) override {
    auto timer = std::make_shared<net::steady_timer>(connection_->executor(), delay);
    timer->async_wait([timer, fn = std::move(fn)](beast::error_code) { fn(); });
  }

 private:
  // On the connection's executor, once the response is queued in full. The first answer
  // counts (a second one is dropped by SendHead).
  void Finish(int status) {
    if (finished_) return;
    finished_ = true;
    if (record_.status == 0) record_.status = status;
    Report();
  }
  void Report() {
    record_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - received_at_).count();
    if (const auto& hook = connection_->options().on_request_end) hook(request_, record_);
  }

  std::shared_ptr<ExchangeImpl> Self() { return this->shared_from_this(); }

  std::shared_ptr<Conn> connection_;
  HttpRequest request_;
  const std::chrono::steady_clock::time_point received_at_;
  RequestRecord record_;   // see Exchange::record
  bool finished_ = false;  // on the executor; the destructor runs after every other use
};

template <class Stream>
void Connection<Stream>::Dispatch(HttpRequest request) {
  const Router::Route route = server_->router->Match(request);
  auto exchange = std::make_shared<ExchangeImpl<Connection>>(Self(), std::move(request));
  exchange->record().route = std::string(route.pattern);
  if (server_->draining.load()) {
    const auto& exempt = server_->options.drain_exempt_paths;
    if (std::find(exempt.begin(), exempt.end(), exchange->request().path) == exempt.end()) {
      keep_alive_ = false;
      SendError(*exchange, {.http_status = 503, .message = "the server is shutting down", .retry_after_seconds = 1});
      return;
    }
  }
  if (route.handler == nullptr) {
    Router::SendMiss(*exchange, route);
    return;
  }
  net::thread_pool& pool = route.pool == Pool::kSlow ? *server_->slow : *server_->workers;
  net::post(pool, [router = server_->router, route, exchange] {
    // No exception may leave a handler: it would take a worker thread down with it.
    try {
      // The gate reads the key store: on the worker, never on an I/O thread.
      if (!router->Admit(*exchange, route)) return;
      (*route.handler)(exchange);
    } catch (const std::exception& e) {
      LOG(kError) << exchange->request().method << " " << exchange->request().path << ": " << e.what();
      SendError(*exchange, {.http_status = 500, .message = "internal error"});
    }
  });
}

}  // namespace

void HttpServer::Impl::Accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
      LOG(kWarning) << "accepting a connection: " << ec.message();
    } else if (num_connections.load() >= options.max_connections) {
      beast::error_code ignored;
      socket.close(ignored);
    } else if (tls) {
      Open(std::make_shared<Connection<TlsStream>>(this, std::move(socket), *tls));
    } else {
      Open(std::make_shared<Connection<PlainStream>>(this, std::move(socket)));
    }
    Accept();
  });
}

template <class Conn>
void HttpServer::Impl::Open(std::shared_ptr<Conn> connection) {
  {
    MutexLock lock(connections_mu);
    std::erase_if(connections, [](const std::weak_ptr<Closable>& c) { return c.expired(); });
    connections.push_back(connection);
  }
  connection->Begin();
}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options, const Router* router) {
  if (options.io_threads < 1 || options.worker_threads < 1 || options.slow_threads < 1) {
    return InvalidArgumentError("the server needs at least one I/O, worker and slow thread");
  }
  if (options.max_body_bytes < 1 || options.max_header_bytes < 64 || options.max_connections < 1) {
    return InvalidArgumentError("server limits out of range");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return InvalidArgumentError(options.tls_cert_file.empty()
                                    ? "--tls-key needs --tls-cert (the certificate the key belongs to)"
                                    : "--tls-cert needs --tls-key (the certificate's private key)");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->router = router;
  if (!options.tls_cert_file.empty()) {
    ASSIGN_OR_RETURN(impl->tls, NewTlsServerContext(options.tls_cert_file, options.tls_key_file));
  }
  beast::error_code ec;
  const auto address = net::ip::make_address(options.host, ec);
  if (ec) return InvalidArgumentError("--host '" + options.host + "' is not an IP address");
  const tcp::endpoint endpoint(address, options.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return UnavailableError("cannot listen on " + options.host + ":" + std::to_string(options.port) + ": " +
                            ec.message());
  }
  impl->workers = std::make_unique<net::thread_pool>(options.worker_threads);
  impl->slow = std::make_unique<net::thread_pool>(options.slow_threads);
  impl->Accept();
  impl->num_io_running.store(options.io_threads);
  for (size_t i = 0; i < options.io_threads; ++i) {
    impl->io_threads.emplace_back([ioc = &impl->ioc, running = &impl->num_io_running] {
      struct Done {
        std::atomic<size_t>* running;
        ~Done() { running->fetch_sub(1); }
      } done{running};
      // A completion handler that throws is a bug; it is logged and the thread serves on.
      for (;;) {
        try {
          ioc->run();
          return;
        } catch (const std::exception& e) {
          LOG(kError) << "an I/O handler threw: " << e.what();
        }
      }
    });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

uint16_t HttpServer::port() const {
  beast::error_code ec;
  auto endpoint = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

void HttpServer::BeginDrain() { impl_->draining.store(true); }

size_t HttpServer::num_active() const { return impl_->num_active.load(); }

size_t HttpServer::num_connections() const { return impl_->num_connections.load(); }

void HttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  // Stop accepting and close every connection; streams on them see their writes fail or their
  // client gone, cancel their processes and end their model leases. Once nothing is left to
  // run the I/O threads return; a handler that never lets go is cut off after kStopGrace.
  net::post(impl_->ioc, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    std::vector<std::shared_ptr<Closable>> open;
    {
      MutexLock lock(impl->connections_mu);
      for (const auto& weak : impl->connections) {
        if (auto c = weak.lock()) open.push_back(std::move(c));
      }
      impl->connections.clear();
    }
    for (const auto& c : open) c->Shutdown();
  });
  constexpr auto kStopGrace = std::chrono::seconds(2);
  const auto give_up = std::chrono::steady_clock::now() + kStopGrace;
  while (impl_->num_io_running.load() > 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  {
    MutexLock lock(impl_->gate->mu);
    impl_->gate->open = false;
  }
  impl_->ioc.stop();
  for (std::thread& t : impl_->io_threads) t.join();
  // Handlers already running finish (one may be loading a model); queued ones are dropped.
  impl_->workers->stop();
  impl_->slow->stop();
  impl_->workers->join();
  impl_->slow->join();
}

}  // namespace llmasos::api
