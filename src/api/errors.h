// Error responses. On /v1 (and anything not under /api) the OpenAI shape:
//   {"error": {"message": ..., "type": ..., "param": ... | null, "code": ... | null}}
// on /api the Ollama shape: {"error": "..."}. Messages never carry a filesystem path: any
// absolute path in a Status from below (a blob, the state directory) is replaced by "<path>"
// (SendStatus); the messages the API layer writes itself name no files.
#ifndef LLMASOS_API_ERRORS_H_
#define LLMASOS_API_ERRORS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "api/http.h"
#include "util/status.h"

namespace llmasos::api {

// The HTTP status for a Status code: kInvalidArgument/kOutOfRange 400, kNotFound 404,
// kFailedPrecondition 409, kResourceExhausted 507 (model memory), kUnavailable 503,
// kUnimplemented 501, the rest 500.
int HttpStatusFor(StatusCode code);

// `text` with absolute filesystem paths replaced by "<path>".
std::string ScrubPaths(std::string_view text);

struct ApiError {
  int http_status = 400;
  std::string message;
  std::string param = "";       // the request field at fault (OpenAI's "param"), "" if none
  std::string code = "";        // OpenAI's "code", "" for null
  int64_t retry_after_seconds = 0;  // > 0: a Retry-After header
};

// The error body for `path` (see above), e.g. for tests and the router.
std::string ErrorBody(std::string_view path, const ApiError& error);
// Responds with `error` in the shape of the request's path.
void SendError(Exchange& exchange, const ApiError& error);
// Responds with `status` mapped as HttpStatusFor says.
void SendStatus(Exchange& exchange, const Status& status, int64_t retry_after_seconds = 0);

}  // namespace llmasos::api

#endif  // LLMASOS_API_ERRORS_H_
