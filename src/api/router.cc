#include "api/router.h"

#include "api/errors.h"

namespace llmasos::api {

void Router::Add(std::string method, std::string path, Handler handler, Pool pool) {
  routes_[std::move(path)][std::move(method)] = Entry{std::move(handler), pool};
}

Router::Route Router::Find(const ExchangePtr& exchange) const {
  const HttpRequest& r = exchange->request();
  auto path = routes_.find(r.path);
  if (path == routes_.end()) {
    SendError(*exchange, {.http_status = 404, .message = "no route " + r.method + " " + r.path, .code = "not_found"});
    return {};
  }
  auto method = path->second.find(r.method);
  if (method == path->second.end()) {
    std::string allow;
    for (const auto& [m, entry] : path->second) allow += (allow.empty() ? "" : ", ") + m;
    exchange->Respond(405, "application/json",
                      ErrorBody(r.path, {.http_status = 405,
                                         .message = r.path + " does not take " + r.method + " (allowed: " + allow + ")",
                                         .code = "method_not_allowed"}),
                      {{"Allow", allow}});
    return {};
  }
  return {&method->second.handler, method->second.pool};
}

}  // namespace llmasos::api
