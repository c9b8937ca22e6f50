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
// Thread safety: Add before the server starts; Match from any thread after.
#ifndef LLMASOS_API_ROUTER_H_
#define LLMASOS_API_ROUTER_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "api/http.h"

namespace llmasos::api {

using Handler = std::function<void(const ExchangePtr&)>;

enum class Pool { kWorker, kSlow };

class Router {
 public:
  // REQUIRES: `path` starts with '/', its parameter names are unique and non-empty, and no
  // route with this method and pattern exists yet (checked: a duplicate is a bug).
  void Add(std::string method, std::string path, Handler handler, Pool pool = Pool::kWorker);

  struct Route {
    const Handler* handler = nullptr;  // null: no match
    Pool pool = Pool::kWorker;
    // No match: the methods the path takes ("GET, POST"), "" when no pattern matches it.
    std::string allow;
    // A match: the pattern as given to Add ("/os/processes/{id}"), for metrics and logs.
    std::string_view pattern;
  };
  // The route for `request`'s method and path; on a match, fills request.path_params.
  Route Match(HttpRequest& request) const;
  // Answers a request Match did not match: 404, or 405 with Allow.
  static void SendMiss(Exchange& exchange, const Route& miss);

 private:
  struct Entry {
    Handler handler;
    Pool pool;
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
};

}  // namespace llmasos::api

#endif  // LLMASOS_API_ROUTER_H_
