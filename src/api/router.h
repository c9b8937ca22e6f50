// The router: (method, exact path) -> handler. An unknown path is a 404 and a known path with
// another method a 405 (with Allow), both with an error body in the shape of the path's API.
// Handlers run on the server's worker threads, where they may block briefly (a registry read,
// a model lease); work that takes long (a pull) goes to the slow pool, so it never holds up
// requests to models already loaded.
//
// Thread safety: Add before the server starts; Dispatch from any thread after.
#ifndef LLMASOS_API_ROUTER_H_
#define LLMASOS_API_ROUTER_H_

#include <functional>
#include <map>
#include <string>
#include <utility>

#include "api/http.h"

namespace llmasos::api {

using Handler = std::function<void(const ExchangePtr&)>;

enum class Pool { kWorker, kSlow };

class Router {
 public:
  void Add(std::string method, std::string path, Handler handler, Pool pool = Pool::kWorker);

  struct Route {
    const Handler* handler = nullptr;
    Pool pool = Pool::kWorker;
  };
  // The handler for the request, or null after answering 404 / 405 itself.
  Route Find(const ExchangePtr& exchange) const;

 private:
  struct Entry {
    Handler handler;
    Pool pool;
  };
  std::map<std::string, std::map<std::string, Entry>> routes_;  // path -> method -> entry
};

}  // namespace llmasos::api

#endif  // LLMASOS_API_ROUTER_H_
