#include "api/router.h"

#include <algorithm>
#include <set>

#include "api/errors.h"
#include "util/logging.h"

namespace llmasos::api {

namespace {

// "/a/b" -> {"a", "b"}; "/" -> {""}; "/a/" -> {"a", ""}. REQUIRES: path starts with '/'.
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  path.remove_prefix(1);
  for (;;) {
    const size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) return out;
    path.remove_prefix(slash + 1);
  }
}

}  // namespace

std::string_view RouteScopeName(RouteScope scope) {
  switch (scope) {
    case RouteScope::kPublic:
      return "public";
    case RouteScope::kInfer:
      return "infer";
    case RouteScope::kModels:
      return "models";
    case RouteScope::kAdmin:
      return "admin";
  }
  return "?";
}

void Router::Add(std::string method, std::string path, RouteScope scope, Handler handler, Pool pool) {
  CHECK(!path.empty() && path[0] == '/') << "route path must start with '/': " << path;
  auto it = std::find_if(patterns_.begin(), patterns_.end(), [&](const Pattern& p) { return p.text == path; });
  if (it == patterns_.end()) {
    Pattern p;
    p.text = path;
    std::set<std::string_view> names;
    for (std::string_view seg : SplitPath(path)) {
      const bool param = seg.size() >= 2 && seg.front() == '{' && seg.back() == '}';
      if (param) {
        seg = seg.substr(1, seg.size() - 2);
        CHECK(!seg.empty() && names.insert(seg).second) << "bad or repeated parameter in route " << path;
      }
      p.segments.emplace_back(seg);
      p.is_param.push_back(param);
    }
    // Keep the order stable (upper_bound) so equal patterns stay in the order they came.
    auto at = std::upper_bound(patterns_.begin(), patterns_.end(), p,
                               [](const Pattern& a, const Pattern& b) { return a.is_param < b.is_param; });
    it = patterns_.insert(at, std::move(p));
  }
  CHECK(it->methods.count(method) == 0) << "route " << method << " " << path << " added twice";
  it->methods.emplace(std::move(method), Entry{std::move(handler), pool, scope});
}

bool Router::Admit(Exchange& exchange, const Route& route) const {
  if (route.scope == RouteScope::kPublic || gate_ == nullptr) return true;
  return gate_->Admit(exchange, route.scope);
}

std::vector<Router::RouteInfo> Router::Table() const {
  std::vector<RouteInfo> out;
  for (const Pattern& p : patterns_) {
    for (const auto& [method, entry] : p.methods) out.push_back({method, p.text, entry.scope});
  }
  return out;
}

bool Router::Matches(const Pattern& pattern, const std::vector<std::string_view>& segments, HeaderList* params) {
  if (pattern.segments.size() != segments.size()) return false;
  params->clear();
  for (size_t i = 0; i < segments.size(); ++i) {
    if (!pattern.is_param[i]) {
      if (pattern.segments[i] != segments[i]) return false;
      continue;
    }
    if (segments[i].empty()) return false;
    auto value = PercentDecode(segments[i]);
    if (!value.ok() || value->empty()) return false;  // a bad escape names no resource
    params->emplace_back(pattern.segments[i], std::move(value).value());
  }
  return true;
}

Router::Route Router::Match(HttpRequest& request) const {
  Route miss;
  if (request.path.empty() || request.path[0] != '/') return miss;
  const std::vector<std::string_view> segments = SplitPath(request.path);
  std::set<std::string> allowed;
  HeaderList params;
  for (const Pattern& p : patterns_) {
    if (!Matches(p, segments, &params)) continue;
    auto m = p.methods.find(request.method);
    if (m != p.methods.end()) {
      request.path_params = std::move(params);
      return {&m->second.handler, m->second.pool, m->second.scope, "", p.text};
    }
    for (const auto& [name, entry] : p.methods) allowed.insert(name);
  }
  for (const std::string& m : allowed) miss.allow += (miss.allow.empty() ? "" : ", ") + m;
  return miss;
}

void Router::SendMiss(Exchange& exchange, const Route& miss) {
  const HttpRequest& r = exchange.request();
  if (miss.allow.empty()) {
    SendError(exchange, {.http_status = 404, .message = "no route " + r.method + " " + r.path, .code = "not_found"});
    return;
  }
  exchange.Respond(405, "application/json",
                   ErrorBody(r.path, {.http_status = 405,
                                      .message = r.path + " does not take " + r.method + " (allowed: " + miss.allow + ")",
                                      .code = "method_not_allowed"}),
                   {{"Allow", miss.allow}});
}

}  // namespace llmasos::api
