#include "api/generation.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "model/chat/conversation.h"

namespace llmasos::api {

StatusOr<PreparedProcess> PrepareProcess(const manager::LoadedModel& model, const ParsedGeneration& request,
                                         std::string* error_param) {
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
  thread_local std::mt19937_64 rng(std::random_device{}());
  defaults.random_seed = rng();
  ASSIGN_OR_RETURN(p.spec, ToProcessSpec(request, std::move(prompt), defaults, error_param));
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
  if (!end.message.empty()) out += ": " + end.message;
  return out;
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

  // Ending the lease may unload the model (the manager stops its engine on a thread of its own)
  // and write the registry's loaded mark, which may wait for an import's file lock: a worker
  // thread does it.
  void Done() {
    if (!lease_.valid()) return;
    exchange_->Offload([lease = std::make_shared<manager::Lease>(std::move(lease_))] { lease->Release(); });
  }

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
