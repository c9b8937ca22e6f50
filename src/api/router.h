// The router: (method, path pattern) -> handler. A pattern is a path whose segments are
// literal or a parameter `{name}`, which matches one non-empty segment; its percent-decoded
// value reaches the handler as HttpRequest::PathParam("name"). Where several patterns match
// a path, a literal segment beats a parameter at the first place they differ
// (/os/models/pull before /os/models/{name}), and the first of them that takes the request's
// method handles it. An unknown path is a 404 and a known path with another method a 405
// (with Allow), both with an error body in the shape of the path's API.
// Handlers run on the server's worker threads, where they may block briefly (a registry read,
// a model lease); work that takes long (a pull) goes to the slow pool, so it never holds up
// requests to models already loaded.
//
// Every route states its scope when it is added; only kPublic routes (the daemon's /health and
// /ready) run without the gate. The server runs the gate (Admit) on the worker thread, before
// the handler: it answers 401 / 403 / 429 itself, or sets the exchange's caller.
//
// Thread safety: Add and SetGate before the server starts; Match, Admit and Table from any
// thread after.
#ifndef LLMASOS_API_ROUTER_H_
#define LLMASOS_API_ROUTER_H_

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/http.h"

namespace llmasos::api {

using Handler = std::function<void(const ExchangePtr&)>;

enum class Pool { kWorker, kSlow };

// What a caller needs to reach a route: nothing (public), or a key with one scope.
enum class RouteScope { kPublic, kInfer, kModels, kAdmin };
std::string_view RouteScopeName(RouteScope scope);

// The authentication step (api/auth_gate.h). Admit answers the exchange itself (401, 403,
// 429, ...) and returns false when the request may not go on; otherwise it sets the
// exchange's caller and returns true.
class Gate {
 public:
  virtual ~Gate() = default;
  virtual bool Admit(Exchange& exchange, RouteScope scope) const = 0;
};

class Router {
 public:
  // REQUIRES: `path` starts with '/', its parameter names are unique and non-empty, and no
  // route with this method and pattern exists yet (checked: a duplicate is a bug).
  void Add(std::string method, std::string path, RouteScope scope, Handler handler, Pool pool = Pool::kWorker);
  // The gate every non-public route passes; without one (unit tests) every request passes.
  void SetGate(const Gate* gate) { gate_ = gate; }

  struct Route {
    const Handler* handler = nullptr;  // null: no match
    Pool pool = Pool::kWorker;
    RouteScope scope = RouteScope::kPublic;
    // No match: the methods the path takes ("GET, POST"), "" when no pattern matches it.
    std::string allow;
    // A match: the pattern as given to Add ("/os/processes/{id}"), for metrics and logs.
    std::string_view pattern;
  };
  // The route for `request`'s method and path; on a match, fills request.path_params.
  Route Match(HttpRequest& request) const;
  // Answers a request Match did not match: 404, or 405 with Allow.
  static void SendMiss(Exchange& exchange, const Route& miss);
  // Runs the gate for a route Match returned; false when the gate answered.
  bool Admit(Exchange& exchange, const Route& route) const;

  struct RouteInfo {
    std::string method;
    std::string path;  // the pattern, as given to Add
    RouteScope scope;
  };
  // Every registered route, in match order (by pattern, then method): what the route-walk
  // test covers.
  std::vector<RouteInfo> Table() const;

 private:
  struct Entry {
    Handler handler;
    Pool pool;
    RouteScope scope;
  };
  struct Pattern {
    std::string text;                   // as given to Add
    std::vector<std::string> segments;  // between the slashes; a parameter's is its name
    std::vector<bool> is_param;         // [segments]
    std::map<std::string, Entry> methods;
  };
  // Whether `segments` match `pattern`; fills `params` (decoded) when they do.
  static bool Matches(const Pattern& pattern, const std::vector<std::string_view>& segments, HeaderList* params);

  // Ordered by is_param (lexicographically, literal first), so the first match is the most
  // literal; patterns of different lengths never match the same path.
  std::vector<Pattern> patterns_;
  const Gate* gate_ = nullptr;
};

}  // namespace llmasos::api

#endif  // LLMASOS_API_ROUTER_H_
