// The request log: one JSON object per line for each request the daemon answered, written when
// its response ends (or its client goes away):
//
//   {"time": RFC 3339 UTC, "method", "path", "route", "status", "model", "tenant", "stream",
//    "client_gone", "seconds", "processes", "prompt_tokens", "generated_tokens",
//    "ttft_seconds" (the first process's; null when none generated), "queue_seconds" (the
//    longest wait), "end_reasons" [...], "prompt" (only with log_prompts)}
//
// The prompt text ("prompt", "messages", "input", "system" of the request body) is written only
// when asked for (--log-prompts): it may be private.
//
// Thread safety: Write may be called from any thread; lines never interleave.
#ifndef LLMASOS_API_REQUEST_LOG_H_
#define LLMASOS_API_REQUEST_LOG_H_

#include <cstdio>
#include <memory>
#include <string>

#include "api/http.h"
#include "util/mutex.h"
#include "util/status.h"
#include "util/thread_annotations.h"

namespace llmasos::api {

class RequestLog {
 public:
  // Appends to `path` (created if missing); "" writes to stderr. Unavailable naming the path
  // when it cannot be opened.
  static StatusOr<std::unique_ptr<RequestLog>> Open(const std::string& path, bool log_prompts);
  ~RequestLog();
  RequestLog(const RequestLog&) = delete;
  RequestLog& operator=(const RequestLog&) = delete;

  void Write(const HttpRequest& request, const RequestRecord& record);
  // The line Write writes, without its newline.
  std::string Line(const HttpRequest& request, const RequestRecord& record) const;

 private:
  RequestLog(std::FILE* file, bool owned, bool log_prompts) : file_(file), owned_(owned), log_prompts_(log_prompts) {}
  Mutex mu_;  // one line at a time
  std::FILE* const file_ PT_GUARDED_BY(mu_);
  const bool owned_;
  const bool log_prompts_;
};

}  // namespace llmasos::api

#endif  // LLMASOS_API_REQUEST_LOG_H_
