#include "api/auth_gate.h"

#include <cctype>

#include "api/errors.h"

namespace llmasos::api {
namespace {

auth::Scope ToAuthScope(RouteScope scope) {
  switch (scope) {
    case RouteScope::kModels:
      return auth::Scope::kModels;
    case RouteScope::kAdmin:
      return auth::Scope::kAdmin;
    default:
      return auth::Scope::kInfer;
  }
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string_view PresentedKey(const HttpRequest& request) {
  const std::string_view authorization = Trim(request.Header("Authorization"));
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() > kBearer.size()) {
    bool bearer = true;
    for (size_t i = 0; i < kBearer.size(); ++i) {
      bearer = bearer && std::tolower(static_cast<unsigned char>(authorization[i])) == kBearer[i];
    }
    if (bearer) return Trim(authorization.substr(kBearer.size()));
  }
  return Trim(request.Header("x-api-key"));
}

bool AuthGate::Admit(Exchange& exchange, RouteScope scope) const {
  auth::Decision d = authenticator_->Admit(PresentedKey(exchange.request()), ToAuthScope(scope));
  using Outcome = auth::Decision::Outcome;
  ApiError e{.message = d.message};
  HeaderList headers;
  switch (d.outcome) {
    case Outcome::kAdmitted:
      exchange.record().tenant = d.caller->tenant();  // the request log's and the metrics' label
      exchange.set_caller(std::move(d.caller));
      return true;
    case Outcome::kUnauthenticated:
      e.http_status = 401;
      e.code = "invalid_api_key";
      headers.emplace_back("WWW-Authenticate", "Bearer");
      break;
    case Outcome::kForbidden:
      e.http_status = 403;
      e.code = "insufficient_scope";
      break;
    case Outcome::kLimited:
      e.http_status = 429;
      e.code = "rate_limit_exceeded";
      headers.emplace_back("Retry-After", std::to_string(d.retry_after_seconds));
      break;
    case Outcome::kQuotaExhausted:
      e.http_status = 429;
      e.code = "insufficient_quota";
      break;
    case Outcome::kError:
      e.http_status = 503;
      e.message = ScrubPaths(e.message);
      headers.emplace_back("Retry-After", "1");
      break;
  }
  exchange.Respond(e.http_status, "application/json", ErrorBody(exchange.request().path, e), std::move(headers));
  return false;
}

}  // namespace llmasos::api
