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

#include <nlohmann/json.hpp>

#include "api/http.h"
#include "api/request.h"
#include "kernel/engine_thread.h"
#include "services/auth/authenticator.h"
#include "services/manager/model_manager.h"

namespace llmasos::api {

struct PreparedProcess {
  kernel::ProcessSpec spec;
  std::vector<std::string> stop;  // the request's, plus the template's end-of-turn strings
};

// The caller's rules on a process: its key's tenant, and `requested_priority` (or the key's
// default) clamped to the key's maximum. No caller (a router without a gate): unchanged.
void ApplyCaller(const auth::Caller* caller, std::optional<int32_t> requested_priority, kernel::ProcessSpec& spec);

// Renders and encodes the prompt (through the model's chat template when the request has
// messages) and makes the process spec with the server's defaults (api/request.h's
// ToProcessSpec: a prompt that cannot fit, max_tokens beyond the context, a parameter the
// kernel cannot carry yet are InvalidArgument naming the field, in *error_param). With a
// caller (the request's key), the process runs as the key's tenant, at the request's priority
// (or the key's default) clamped to the key's maximum.
StatusOr<PreparedProcess> PrepareProcess(const manager::LoadedModel& model, const ParsedGeneration& request,
                                         const auth::Caller* caller, std::string* error_param);

// Starts the request's `n` processes on the model's engine, all streaming into `channel`;
// choice i runs with seed + i. Returns the process ids in choice order. On an error, the
// processes already started are cancelled when the caller drops the channel.
StatusOr<std::vector<kernel::ProcessId>> StartProcesses(const manager::LoadedModel& model, kernel::Channel& channel,
                                                        PreparedProcess process, int32_t n);

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
  // The request's prompt tokens (all inputs of an embedding request; one prompt for the n
  // choices of a generation), charged to the caller's key with the tokens generated.
  int64_t prompt_tokens = 0;
};

// The pump of one request: create it (it owns the channel, whose notifier it sets), submit the
// request's processes into PumpChannel, then StartPump with the lease and the writer; it moves
// the events to the client until every process ended, holding the lease (so the model stays
// loaded) until then. If the submission fails, AbortPump drops the channel (cancelling what
// was submitted) without answering: the caller answers with the error.
//
// Usage: when the processes end, the pump charges the exchange's caller (auth::Caller) with
// the prompt tokens and the tokens generated, and sends the response's last bytes only once
// that usage is committed; a client that went away is charged for what was generated until
// then.
class Pump;
std::shared_ptr<Pump> NewPump(ExchangePtr exchange, const PumpOptions& options);
kernel::Channel& PumpChannel(Pump& pump);
void StartPump(const std::shared_ptr<Pump>& pump, manager::Lease lease, std::unique_ptr<ResponseWriter> writer);
void AbortPump(const std::shared_ptr<Pump>& pump);

// Log-probabilities as OpenAI (and Ollama) write them: -inf as -9999; a token as
// {"token", "logprob", "bytes"}; a chat "content" entry adds "top_logprobs".
double JsonLogprob(float logprob);
nlohmann::json TokenJson(const tokenizer::Tokenizer& tokenizer, const sampling::TokenLogprob& logprob);
nlohmann::json ChatLogprobEntry(const tokenizer::Tokenizer& tokenizer, const sampling::TokenLogprobs& logprobs);

// The finish reason of an ended process as OpenAI names it: "stop" (end of generation or a
// stop string), "length" (max_tokens), "cancelled", "error".
std::string FinishReason(const kernel::StreamEvent& end);
// Why an ended process ended, for an error message: the EndReason's name and its message.
std::string EndDescription(const kernel::StreamEvent& end);
// The HTTP status of a complete response whose process ended early: 504 when its deadline
// passed, 500 otherwise.
int EndHttpStatus(const kernel::StreamEvent& end);

}  // namespace llmasos::api

#endif  // LLMASOS_API_GENERATION_H_
