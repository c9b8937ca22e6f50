#include "api/request_log.h"

#include <algorithm>
#include <cerrno>

#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "util/file.h"

namespace llmasos::api {

using nlohmann::json;

StatusOr<std::unique_ptr<RequestLog>> RequestLog::Open(const std::string& path, bool log_prompts) {
  if (path.empty()) return std::unique_ptr<RequestLog>(new RequestLog(stderr, false, log_prompts));
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (f == nullptr) return ErrnoError("opening the request log", path, errno);
  return std::unique_ptr<RequestLog>(new RequestLog(f, true, log_prompts));
}

RequestLog::~RequestLog() {
  if (owned_) std::fclose(file_);
}

std::string RequestLog::Line(const HttpRequest& request, const RequestRecord& r) const {
  json line = {{"time", Rfc3339Now()},    {"method", r.method},   {"path", r.path},
               {"route", r.route},        {"status", r.status},   {"model", r.model},
               {"tenant", r.tenant},      {"stream", r.streamed}, {"client_gone", r.client_gone},
               {"seconds", r.seconds},    {"processes", r.processes.size()}};
  int64_t prompt_tokens = 0, generated_tokens = 0;
  double queue_seconds = 0;
  json reasons = json::array();
  for (const ProcessRecord& p : r.processes) {
    prompt_tokens += p.prompt_tokens;
    generated_tokens += p.generated_tokens;
    queue_seconds = std::max(queue_seconds, p.queue_seconds);
    reasons.push_back(p.end_reason);
  }
  line["prompt_tokens"] = prompt_tokens;
  line["generated_tokens"] = generated_tokens;
  line["ttft_seconds"] = nullptr;
  if (!r.processes.empty() && r.processes[0].ttft_seconds) line["ttft_seconds"] = *r.processes[0].ttft_seconds;
  line["queue_seconds"] = queue_seconds;
  line["end_reasons"] = std::move(reasons);
  if (log_prompts_) {
    // The body was validated by its handler (or refused); here it is only read back.
    json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_object()) {
      json prompt = json::object();
      for (const char* key : {"prompt", "messages", "input", "system"}) {
        if (body.contains(key)) prompt[key] = body[key];
      }
      if (!prompt.empty()) line["prompt"] = std::move(prompt);
    }
  }
  return line.dump(-1, ' ', false, json::error_handler_t::replace);
}

void RequestLog::Write(const HttpRequest& request, const RequestRecord& record) {
  std::string text = Line(request, record);
  text += '\n';
  MutexLock lock(mu_);
  std::fwrite(text.data(), 1, text.size(), file_);
  std::fflush(file_);
}

}  // namespace llmasos::api
