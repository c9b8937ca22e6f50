#include "api/generation.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "model/chat/conversation.h"

namespace llmasos::api {

void ApplyCaller(const auth::Caller* caller, std::optional<int32_t> requested_priority, kernel::ProcessSpec& spec) {
  if (caller == nullptr) return;
  spec.tenant = caller->tenant();
  spec.priority = caller->Priority(requested_priority);
}

StatusOr<PreparedProcess> PrepareProcess(const manager::LoadedModel& model, const ParsedGeneration& request,
                                         const auth::Caller* caller, std::string* error_param) {
  const tokenizer::Tokenizer& tok = *model.tokenizer;
  PreparedProcess p;
  p.stop = request.stop;
  std::vector<sampling::TokenId> prompt;
  if (request.use_chat_template) {
    if (!model.chat_template) {
      if (error_param != nullptr) *error_param = "messages";
      return InvalidArgumentError("this model has no chat template the server knows (" +
                                  model.chat_template_error.message() + "); use a plain completion");
    }
    auto ids = chat::EncodeConversation(tok, *model.chat_template, request.messages, true);
    if (!ids.ok()) {
      if (error_param != nullptr) *error_param = "messages";
      return ids.status();
    }
    prompt = std::move(ids).value();
    for (std::string& s : model.chat_template->EndOfTurnStrings()) p.stop.push_back(std::move(s));
  } else {
    prompt = tok.Encode(request.prompt, /*add_special=*/true, /*parse_special=*/false);
  }
  SpecDefaults defaults;  // sampling as the command line's defaults, so `llmasos run` agrees
  defaults.context_tokens = model.context_tokens;
  defaults.vocab_size = model.model->config().vocab_size;
  ASSIGN_OR_RETURN(p.spec, ToProcessSpec(request, std::move(prompt), defaults, error_param));
  ApplyCaller(caller, request.priority, p.spec);
  return p;
}

StatusOr<std::vector<kernel::ProcessId>> StartProcesses(const manager::LoadedModel& model, kernel::Channel& channel,
                                                        PreparedProcess process, int32_t n) {
  // n > 1: one group sharing one prefill; member i runs with seed + i.
  kernel::ProcessSpec spec = std::move(process.spec);
  for (std::string& s : process.stop) spec.stop.push_back(std::move(s));
  if (n < 1) return InvalidArgumentError("n must be at least 1");
  return model.engine->SubmitGroupTo(channel, std::move(spec), static_cast<size_t>(n));
}

std::string FinishReason(const kernel::StreamEvent& end) {
  switch (end.reason) {
    case kernel::EndReason::kEndOfGeneration:
    case kernel::EndReason::kStopString:
      return "stop";
    case kernel::EndReason::kLength:
      return "length";
    case kernel::EndReason::kCancelled:
    case kernel::EndReason::kKilled:
    case kernel::EndReason::kShutdown:
      return "cancelled";
    default:
      return "error";
  }
}

std::string EndDescription(const kernel::StreamEvent& end) {
  std::string out(kernel::EndReasonName(end.reason));
  if (!end.message.empty()) {
    out += ": " + end.message;
  } else if (end.reason == kernel::EndReason::kDeadline) {
    out += ": the request's timeout passed before it finished";
  }
  return out;
}

int EndHttpStatus(const kernel::StreamEvent& end) { return end.reason == kernel::EndReason::kDeadline ? 504 : 500; }

// A log-probability as JSON: -inf (a token the model gives no mass) as OpenAI writes it.
double JsonLogprob(float lp) { return std::isfinite(lp) ? lp : -9999.0; }

nlohmann::json TokenJson(const tokenizer::Tokenizer& tok, const sampling::TokenLogprob& lp) {
  const std::string text = tok.TokenToPiece(lp.token);
  nlohmann::json bytes = nlohmann::json::array();
  for (unsigned char b : text) bytes.push_back(b);
  return {{"token", text}, {"logprob", JsonLogprob(lp.logprob)}, {"bytes", bytes}};
}

// One chat logprobs "content" entry: the chosen token and its top alternatives.
nlohmann::json ChatLogprobEntry(const tokenizer::Tokenizer& tok, const sampling::TokenLogprobs& lps) {
  nlohmann::json entry = TokenJson(tok, lps.chosen);
  nlohmann::json top = nlohmann::json::array();
  for (const sampling::TokenLogprob& t : lps.top) top.push_back(TokenJson(tok, t));
  entry["top_logprobs"] = std::move(top);
  return entry;
}

namespace {

// How often a pump looks at its client's socket while no event comes (a long prefill): a client
// that went away is noticed within this, and its processes cancelled.
constexpr auto kProbeInterval = std::chrono::milliseconds(50);

}  // namespace

// A generation's response, pushed as the engine streams its processes' events (PushStream).
// Runs on the connection's executor, except Begin and Abort, which the route calls on its
// worker thread before anything is posted for the pump.
class Pump : public PushStream {
 public:
  Pump(ExchangePtr exchange, const PumpOptions& options)
      : PushStream(std::move(exchange), kProbeInterval),
        options_(options),
        channel_(std::make_unique<kernel::Channel>()) {}

  void Begin(manager::Lease lease, std::unique_ptr<ResponseWriter> writer) {
    lease_ = std::move(lease);
    writer_ = std::move(writer);
    if (options_.stream) exchange().StartStream(200, options_.content_type);
    Open();
  }

  void Abort() {
    channel_.reset();
    Done();
  }

  kernel::Channel& channel() { return *channel_; }

 private:
  std::shared_ptr<Pump> self() { return std::static_pointer_cast<Pump>(shared_from_this()); }

  // Reads what the channel holds; once every process has ended, finishes the response.
  bool Collect(std::string* out) override {
    bool all_ended = false;
    for (size_t i = 0; i < kMaxItemsPerWrite; ++i) {
      StatusOr<kernel::StreamEvent> event = channel_->Next(std::chrono::milliseconds(0));
      if (!event.ok()) {
        all_ended = event.status().code() == StatusCode::kOutOfRange;
        break;
      }
      if (event->kind == kernel::StreamEvent::Kind::kToken) {
        ++num_generated_;
        *out += writer_->OnToken(*event);
      } else {
        Record(*event);
        *out += writer_->OnEnd(*event);
      }
    }
    if (!all_ended) return false;
    ResponseWriter::Final final = writer_->Finish();
    Done();
    // The last bytes go once the usage is committed: a client that saw its answer end
    // finds it in the key's usage, even if the daemon is killed right after.
    auto finish = [self = self(), out = std::move(*out), final = std::move(final)]() mutable {
      if (self->options_.stream) {
        out += final.body;
        self->exchange().Write(std::move(out), nullptr);
        self->exchange().EndStream();
      } else {
        self->exchange().Respond(final.http_status, "application/json", std::move(final.body));
      }
    };
    if (exchange().caller() == nullptr) {
      finish();
      return true;
    }
    Waker wake = exchange().MakeWaker();
    auto pending = std::make_shared<decltype(finish)>(std::move(finish));
    Charge([wake, pending] { wake([pending] { (*pending)(); }); });
    return true;
  }

  // What the request log and the metrics keep of an ended process.
  void Record(const kernel::StreamEvent& end) {
    const kernel::ProcessAccounting& a = end.accounting;
    ProcessRecord p;
    p.prompt_tokens = a.num_prompt_tokens;
    p.generated_tokens = a.num_generated_tokens;
    p.cached_prompt_tokens = a.num_prefix_cached_tokens;
    p.preemptions = a.num_preemptions;
    p.queue_seconds = ToSeconds(a.time_queued);
    const TimePoint ended = a.ended_at.value_or(a.submitted_at);
    if (a.first_token_at) {
      p.ttft_seconds = ToSeconds(*a.first_token_at - a.submitted_at);
      p.decode_seconds = ToSeconds(ended - *a.first_token_at);
    }
    p.seconds = ToSeconds(ended - a.submitted_at);
    p.end_reason = std::string(kernel::EndReasonName(end.reason));
    exchange().record().processes.push_back(std::move(p));
  }

  // The client is gone: dropping the channel cancels its processes before the next step.
  void OnClientGone(bool) override {
    channel_.reset();
    Done();
    if (exchange().caller() != nullptr) Charge(nullptr);
  }

  // Charges the caller once (REQUIRES: it has one) with the prompt and the tokens generated.
  void Charge(std::function<void()> recorded) {
    if (charged_) return;
    charged_ = true;
    exchange().caller()->Charge(options_.prompt_tokens, num_generated_, std::move(recorded));
  }

  // Ending the lease may unload the model (the manager stops its engine on a thread of its own)
  // and write the registry's loaded mark, which may wait for an import's file lock: a worker
  // thread does it.
  void Done() {
    Close();
    if (!lease_.valid()) return;
    exchange().Offload([lease = std::make_shared<manager::Lease>(std::move(lease_))] { lease->Release(); });
  }

  PumpOptions options_;
  std::unique_ptr<kernel::Channel> channel_;
  manager::Lease lease_;
  std::unique_ptr<ResponseWriter> writer_;
  bool charged_ = false;
  int64_t num_generated_ = 0;  // token events seen: the tokens generated so far
};

std::shared_ptr<Pump> NewPump(ExchangePtr exchange, const PumpOptions& options) {
  auto pump = std::make_shared<Pump>(exchange, options);
  // The engine thread calls this after each push: it only posts, and holds the pump weakly, so
  // the pump is only ever destroyed on the connection's side.
  Waker wake = exchange->MakeWaker();
  pump->channel().SetNotifier([wake, weak = std::weak_ptr<Pump>(pump)] {
    wake([weak] {
      if (auto p = weak.lock()) p->Drain();
    });
  });
  return pump;
}

kernel::Channel& PumpChannel(Pump& pump) { return pump.channel(); }

void StartPump(const std::shared_ptr<Pump>& pump, manager::Lease lease, std::unique_ptr<ResponseWriter> writer) {
  pump->Begin(std::move(lease), std::move(writer));
}

void AbortPump(const std::shared_ptr<Pump>& pump) { pump->Abort(); }

}  // namespace llmasos::api
