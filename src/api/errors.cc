#include "api/errors.h"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace llmasos::api {

int HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kFailedPrecondition:
      return 409;
    case StatusCode::kResourceExhausted:
      return 507;
    case StatusCode::kUnavailable:
      return 503;
    case StatusCode::kUnimplemented:
      return 501;
    case StatusCode::kPermissionDenied:  // the daemon's own files refused it: not the client's doing
    default:
      return 500;
  }
}

std::string ScrubPaths(std::string_view text) {
  // A path starts with '/' at the start of a word (after a space, quote, bracket, '=' or ':')
  // and runs to the next space or quote. A lone "/" (as in "a / b") or a URL's "//" are kept.
  auto starts_word = [&](size_t i) {
    if (i == 0) return true;
    const char p = text[i - 1];
    return p == ' ' || p == '\'' || p == '"' || p == '(' || p == '[' || p == '=' || p == '`';
  };
  auto ends_path = [](char c) {
    return c == ' ' || c == '\'' || c == '"' || c == ')' || c == ']' || c == ',' || c == '`' || c == '\n';
  };
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '/' && starts_word(i) && i + 1 < text.size() && !ends_path(text[i + 1]) && text[i + 1] != '/') {
      size_t j = i;
      while (j < text.size() && !ends_path(text[j])) ++j;
      out += "<path>";
      i = j;
      continue;
    }
    out += text[i++];
  }
  return out;
}

std::string ErrorBody(std::string_view path, const ApiError& error) {
  const std::string& message = error.message;
  if (path.starts_with("/api/")) return nlohmann::json{{"error", message}}.dump();
  nlohmann::json e = {{"message", message},
                      {"type", error.http_status < 500 ? "invalid_request_error" : "server_error"},
                      {"param", nullptr},
                      {"code", nullptr}};
  if (!error.param.empty()) e["param"] = error.param;
  if (!error.code.empty()) e["code"] = error.code;
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void SendError(Exchange& exchange, const ApiError& error) {
  HeaderList headers;
  if (error.retry_after_seconds > 0) headers.emplace_back("Retry-After", std::to_string(error.retry_after_seconds));
  exchange.Respond(error.http_status, "application/json", ErrorBody(exchange.request().path, error),
                   std::move(headers));
}

void SendStatus(Exchange& exchange, const Status& status, int64_t retry_after_seconds) {
  ApiError e;
  e.http_status = HttpStatusFor(status.code());
  e.message = ScrubPaths(status.message());
  if (e.http_status == 404) e.code = "model_not_found";
  if (status.code() == StatusCode::kUnavailable) e.retry_after_seconds = std::max<int64_t>(retry_after_seconds, 1);
  SendError(exchange, e);
}

}  // namespace llmasos::api
