// The OpenAI routes: GET /v1/models, POST /v1/completions, /v1/chat/completions,
// /v1/embeddings. Bodies, chunks, finish_reason, usage, id, created and system_fingerprint as
// OpenAI's clients read them; streams are server-sent events ending with "data: [DONE]".
#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "api/errors.h"
#include "api/generation.h"
#include "api/request_bridge.h"

namespace llmasos::api {
namespace {

using nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string Fingerprint(const registry::Manifest& m) {
  const std::string hex = m.digest.size() > 7 ? m.digest.substr(7, 12) : m.digest;
  return "fp_" + hex;
}

// One OpenAI response (chat or text completion), streamed as SSE or complete.
class OpenAiWriter : public ResponseWriter {
 public:
  OpenAiWriter(bool chat, bool stream, bool include_usage, std::string model, std::string fingerprint)
      : chat_(chat),
        stream_(stream),
        include_usage_(include_usage),
        model_(std::move(model)),
        fingerprint_(std::move(fingerprint)),
        id_(NewResponseId(chat ? "chatcmpl-" : "cmpl-")),
        created_(UnixSeconds()) {}

  std::string OnToken(const kernel::StreamEvent& e) override { return Text(e.text); }

  std::string OnEnd(const kernel::StreamEvent& e) override {
    std::string out = Text(e.text);
    prompt_tokens_ = e.accounting.num_prompt_tokens;
    completion_tokens_ = e.accounting.num_generated_tokens;
    finish_reason_ = FinishReason(e);
    if (finish_reason_ == "error" || finish_reason_ == "cancelled") {
      error_ = "the generation ended early: " + e.reason;
      if (stream_) out += Event(json{{"error", {{"message", error_}, {"type", "server_error"}}}});
      return out;
    }
    if (stream_) {
      json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason_}};
      if (chat_) {
        choice["delta"] = json::object();
      } else {
        choice["text"] = "";
      }
      out += Event(Chunk(json::array({choice})));
    }
    return out;
  }

  Final Finish() override {
    if (stream_) {
      std::string out;
      if (include_usage_ && error_.empty()) {
        json chunk = Chunk(json::array());
        chunk["usage"] = Usage();
        out += Event(chunk);
      }
      return {200, out + "data: [DONE]\n\n"};
    }
    if (!error_.empty()) {
      return {500, Dump(json{{"error", {{"message", error_}, {"type", "server_error"}, {"param", nullptr},
                                         {"code", nullptr}}}})};
    }
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason_}};
    if (chat_) {
      choice["message"] = {{"role", "assistant"}, {"content", text_}, {"refusal", nullptr}};
    } else {
      choice["text"] = text_;
    }
    json body = {{"id", id_},
                 {"object", chat_ ? "chat.completion" : "text_completion"},
                 {"created", created_},
                 {"model", model_},
                 {"system_fingerprint", fingerprint_},
                 {"choices", json::array({choice})},
                 {"usage", Usage()}};
    return {200, Dump(body)};
  }

 private:
  std::string Text(const std::string& text) {
    if (!stream_) {
      text_ += text;
      return "";
    }
    std::string out;
    if (chat_ && !sent_role_) {
      // The first chunk names the role, as OpenAI's do.
      sent_role_ = true;
      out += Event(Chunk(json::array(
          {{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
            {"finish_reason", nullptr}}})));
    }
    if (text.empty()) return out;
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
    if (chat_) {
      choice["delta"] = {{"content", text}};
    } else {
      choice["text"] = text;
    }
    return out + Event(Chunk(json::array({choice})));
  }

  json Chunk(json choices) const {
    json c = {{"id", id_},
              {"object", chat_ ? "chat.completion.chunk" : "text_completion"},
              {"created", created_},
              {"model", model_},
              {"system_fingerprint", fingerprint_},
              {"choices", std::move(choices)}};
    if (include_usage_) c["usage"] = nullptr;
    return c;
  }

  json Usage() const {
    return {{"prompt_tokens", prompt_tokens_},
            {"completion_tokens", completion_tokens_},
            {"total_tokens", prompt_tokens_ + completion_tokens_}};
  }

  static std::string Event(const json& j) { return "data: " + Dump(j) + "\n\n"; }

  const bool chat_, stream_, include_usage_;
  const std::string model_, fingerprint_, id_;
  const int64_t created_;
  bool sent_role_ = false;
  std::string text_;
  std::string finish_reason_ = "stop";
  std::string error_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
};

void Generate(Daemon& daemon, const ExchangePtr& ex, bool chat) {
  auto parsed = chat ? BridgeChatCompletion(ex->request().body) : BridgeCompletion(ex->request().body);
  if (auto* error = std::get_if<ApiError>(&parsed)) {
    SendError(*ex, *error);
    return;
  }
  OpenAiGeneration& r = std::get<OpenAiGeneration>(parsed);
  std::optional<manager::Lease> lease = AcquireForRequest(daemon, *ex, r.gen.model, r.gen.keep_alive);
  if (!lease) return;
  auto prepared = PrepareProcess(lease->model(), r.gen);
  if (!prepared.ok()) {
    SendError(*ex, {.http_status = HttpStatusFor(prepared.status().code()), .message = prepared.status().message(),
                    .param = chat ? "messages" : "prompt",
                    .code = prepared.status().message().find("context") != std::string::npos
                                ? "context_length_exceeded"
                                : ""});
    return;
  }
  auto submission = lease->model().engine->Submit(std::move(prepared->spec), std::move(prepared->stop));
  if (!submission.ok()) {
    SendStatus(*ex, submission.status());
    return;
  }
  auto writer = std::make_unique<OpenAiWriter>(chat, r.gen.stream, r.include_usage, r.gen.model,
                                               Fingerprint(lease->manifest()));
  StartPump(ex, std::move(*lease), std::move(submission->channel), std::move(writer),
            {.stream = r.gen.stream, .content_type = "text/event-stream"});
}

void ListModels(Daemon& daemon, const ExchangePtr& ex) {
  auto models = daemon.service->List();
  if (!models.ok()) {
    SendStatus(*ex, models.status());
    return;
  }
  json data = json::array();
  for (const manager::ModelStatus& m : *models) {
    // One entry per reference a client can use: each tag, and name@version.
    auto add = [&](const std::string& id) {
      data.push_back({{"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "llmasos"}});
    };
    for (const std::string& tag : m.tags) add(m.manifest.name + ":" + tag);
    add(m.manifest.name + "@" + m.manifest.version);
  }
  SendJson(*ex, Dump(json{{"object", "list"}, {"data", data}}));
}

}  // namespace

void AddOpenAiRoutes(Router& router, Daemon& daemon) {
  router.Add("GET", "/v1/models", [&daemon](const ExchangePtr& ex) { ListModels(daemon, ex); });
  router.Add("POST", "/v1/chat/completions", [&daemon](const ExchangePtr& ex) { Generate(daemon, ex, true); });
  router.Add("POST", "/v1/completions", [&daemon](const ExchangePtr& ex) { Generate(daemon, ex, false); });
  router.Add("POST", "/v1/embeddings", [](const ExchangePtr& ex) {
    SendError(*ex, {.http_status = 400,
                    .message = "embeddings are not supported yet (the kernel has no embedding processes)",
                    .param = "input",
                    .code = "unsupported"});
  });
}

}  // namespace llmasos::api
