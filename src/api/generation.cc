#include "api/generation.h"

#include <algorithm>
#include <chrono>

#include "model/chat/conversation.h"

namespace llmasos::api {

StatusOr<PreparedProcess> PrepareProcess(const manager::LoadedModel& model, const GenerationRequest& request) {
  PreparedProcess p;
  const tokenizer::Tokenizer& tok = *model.tokenizer;
  p.stop = request.stop;
  if (request.chat) {
    if (!model.chat_template) {
      return InvalidArgumentError("this model has no chat template the server knows (" +
                                  model.chat_template_error.message() + "); use a plain completion");
    }
    ASSIGN_OR_RETURN(p.spec.prompt, chat::EncodeConversation(tok, *model.chat_template, request.messages, true));
    for (std::string& s : model.chat_template->EndOfTurnStrings()) p.stop.push_back(std::move(s));
  } else {
    p.spec.prompt = tok.Encode(request.prompt, /*add_special=*/true, /*parse_special=*/false);
  }
  const int64_t context = static_cast<int64_t>(model.context_tokens);
  const int64_t prompt_tokens = static_cast<int64_t>(p.spec.prompt.size());
  if (prompt_tokens == 0) return InvalidArgumentError("the prompt encodes to no tokens");
  if (prompt_tokens >= context) {
    return InvalidArgumentError("the prompt is " + std::to_string(prompt_tokens) + " tokens; the context holds " +
                                std::to_string(context) + " (prompt and reply together)");
  }
  int64_t max_tokens = context - prompt_tokens;
  if (request.max_tokens) {
    if (prompt_tokens + *request.max_tokens > context) {
      return InvalidArgumentError("max_tokens " + std::to_string(*request.max_tokens) + " with a prompt of " +
                                  std::to_string(prompt_tokens) + " tokens is beyond the context of " +
                                  std::to_string(context) + " tokens");
    }
    max_tokens = *request.max_tokens;
  }
  p.spec.limits.max_tokens = static_cast<int32_t>(std::max<int64_t>(max_tokens, 1));
  p.spec.sampling = request.sampling;
  p.spec.priority = request.priority;
  p.spec.tenant = request.tenant;
  return p;
}

std::string FinishReason(const kernel::StreamEvent& end) {
  switch (end.state) {
    case kernel::ProcessState::kFinished:
      return end.stop_string || end.reason == "stop" ? "stop" : "length";
    case kernel::ProcessState::kCancelled:
      return "cancelled";
    default:
      return "error";
  }
}

namespace {

constexpr auto kFirstPoll = std::chrono::milliseconds(1);
constexpr auto kLongestPoll = std::chrono::milliseconds(8);
constexpr size_t kMaxEventsPerWrite = 256;

class Pump : public std::enable_shared_from_this<Pump> {
 public:
  Pump(ExchangePtr exchange, manager::Lease lease, std::unique_ptr<kernel::Channel> channel,
       std::unique_ptr<ResponseWriter> writer, const PumpOptions& options)
      : exchange_(std::move(exchange)),
        lease_(std::move(lease)),
        channel_(std::move(channel)),
        writer_(std::move(writer)),
        options_(options) {}

  void Start() {
    if (options_.stream) exchange_->StartStream(200, options_.content_type);
    exchange_->RunAfter(std::chrono::milliseconds(0), [self = shared_from_this()] { self->Step(); });
  }

 private:
  // On the connection's executor.
  void Step() {
    if (exchange_->ClientGone()) {
      Abandon();
      return;
    }
    std::string out;
    bool all_ended = false;
    for (size_t i = 0; i < kMaxEventsPerWrite; ++i) {
      StatusOr<kernel::StreamEvent> event = channel_->Next(std::chrono::milliseconds(0));
      if (!event.ok()) {
        all_ended = event.status().code() == StatusCode::kOutOfRange;
        break;
      }
      out += event->kind == kernel::StreamEvent::Kind::kToken ? writer_->OnToken(*event) : writer_->OnEnd(*event);
    }
    if (all_ended) {
      ResponseWriter::Final final = writer_->Finish();
      if (options_.stream) {
        out += final.body;
        exchange_->Write(std::move(out), nullptr);
        exchange_->EndStream();
      } else {
        exchange_->Respond(final.http_status, "application/json", std::move(final.body));
      }
      Done();
      return;
    }
    if (!out.empty()) {
      poll_ = kFirstPoll;
      exchange_->Write(std::move(out), [self = shared_from_this()](bool ok) {
        if (!ok) {
          self->Abandon();
          return;
        }
        self->Step();
      });
      return;
    }
    exchange_->RunAfter(poll_, [self = shared_from_this()] { self->Step(); });
    poll_ = std::min(poll_ * 2, kLongestPoll);
  }

  // The client is gone: dropping the channel cancels its processes before the next step.
  void Abandon() {
    channel_.reset();
    Done();
  }

  // Ending the lease may unload the model; the manager does that on its own thread.
  void Done() { lease_.Release(); }

  ExchangePtr exchange_;
  manager::Lease lease_;
  std::unique_ptr<kernel::Channel> channel_;
  std::unique_ptr<ResponseWriter> writer_;
  PumpOptions options_;
  std::chrono::milliseconds poll_ = kFirstPoll;
};

}  // namespace

void StartPump(ExchangePtr exchange, manager::Lease lease, std::unique_ptr<kernel::Channel> channel,
               std::unique_ptr<ResponseWriter> writer, const PumpOptions& options) {
  std::make_shared<Pump>(std::move(exchange), std::move(lease), std::move(channel), std::move(writer), options)
      ->Start();
}

}  // namespace llmasos::api
