// What the generation routes share, whichever API they speak: a request as the kernel needs
// it, turned into prompt tokens and a process on the model's engine, and the pump that moves
// the process's events to the client.
//
// The pump runs on the client's connection (never on a worker thread and never holding one):
// it drains the process's channel, hands each event to the API's ResponseWriter and writes
// what it returns, waiting for each write before reading more (a slow client slows only its
// own stream; the channel's queue is bounded by max_tokens). A client that goes away, seen
// by a failed write or by a probe of its socket between events, drops the channel: the engine
// cancels the process before its next step and its KV blocks are freed.
#ifndef LLMASOS_API_GENERATION_H_
#define LLMASOS_API_GENERATION_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/http.h"
#include "kernel/engine_thread.h"
#include "model/chat/chat_template.h"
#include "services/manager/model_manager.h"

namespace llmasos::api {

// A generation request, API-neutral.
struct GenerationRequest {
  std::string model;
  std::optional<manager::Duration> keep_alive = std::nullopt;
  bool chat = true;                    // messages through the chat template
  std::vector<chat::Message> messages;  // chat
  std::string prompt;                  // !chat: plain text completion
  sampling::SamplingParams sampling;
  std::optional<int64_t> max_tokens = std::nullopt;  // unset: until the context is full
  std::vector<std::string> stop;
  int32_t priority = 0;
  std::string tenant = "default";
  bool stream = false;
};

struct PreparedProcess {
  kernel::ProcessSpec spec;
  std::vector<std::string> stop;  // the request's, plus the template's end-of-turn strings
};

// Renders and encodes the prompt and checks it against the instance's context: a prompt
// that cannot fit, or max_tokens beyond what is left, is InvalidArgument with both numbers.
StatusOr<PreparedProcess> PrepareProcess(const manager::LoadedModel& model, const GenerationRequest& request);

// What an API makes of a process's events. Called on the connection's executor, in order.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  // Streamed responses: the content type; the bytes each call returns are written at once.
  // Complete responses return "" from OnToken and OnEnd and the whole body from Finish.
  virtual std::string OnToken(const kernel::StreamEvent& event) = 0;
  virtual std::string OnEnd(const kernel::StreamEvent& event) = 0;
  struct Final {
    int http_status = 200;  // complete responses only
    std::string body;
  };
  virtual Final Finish() = 0;
};

struct PumpOptions {
  bool stream = false;
  std::string content_type = "application/json";  // streamed: text/event-stream, application/x-ndjson
};

// Moves `channel`'s events to `exchange` through `writer` until every process in it ended,
// holding `lease` (so the model stays loaded) until then. Returns at once.
void StartPump(ExchangePtr exchange, manager::Lease lease, std::unique_ptr<kernel::Channel> channel,
               std::unique_ptr<ResponseWriter> writer, const PumpOptions& options);

// The finish reason of an ended process as OpenAI names it: "stop" (end of generation or a
// stop string), "length" (max_tokens), "cancelled", "error".
std::string FinishReason(const kernel::StreamEvent& end);

}  // namespace llmasos::api

#endif  // LLMASOS_API_GENERATION_H_
