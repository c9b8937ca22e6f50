// The OpenAI routes: GET /v1/models, POST /v1/completions, /v1/chat/completions,
// /v1/embeddings. Bodies, chunks, finish_reason, usage, id, created and system_fingerprint as
// OpenAI's clients read them; streams are server-sent events ending with "data: [DONE]".
#include <map>

#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "api/errors.h"
#include "api/generation.h"
#include "api/request.h"

namespace llmasos::api {
namespace {

using nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string Fingerprint(const registry::Manifest& m) {
  const std::string hex = m.digest.size() > 7 ? m.digest.substr(7, 12) : m.digest;
  return "fp_" + hex;
}

// One OpenAI response (chat or text completion) with one choice per process, streamed as SSE
// or complete.
class OpenAiWriter : public ResponseWriter {
 public:
  OpenAiWriter(bool chat, bool stream, bool include_usage, std::string model, std::string fingerprint,
               const std::vector<kernel::ProcessId>& ids)
      : chat_(chat),
        stream_(stream),
        include_usage_(include_usage),
        model_(std::move(model)),
        fingerprint_(std::move(fingerprint)),
        id_(NewResponseId(chat ? "chatcmpl-" : "cmpl-")),
        created_(UnixSeconds()),
        choices_(ids.size()) {
    for (size_t i = 0; i < ids.size(); ++i) index_[ids[i]] = i;
  }

  std::string OnToken(const kernel::StreamEvent& e) override { return Text(Index(e), e.text); }

  std::string OnEnd(const kernel::StreamEvent& e) override {
    const size_t idx = Index(e);
    std::string out = Text(idx, e.text);
    Choice& c = choices_[idx];
    prompt_tokens_ = e.accounting.num_prompt_tokens;
    completion_tokens_ += e.accounting.num_generated_tokens;
    c.finish_reason = FinishReason(e);
    if (c.finish_reason == "error" || c.finish_reason == "cancelled") {
      error_ = "the generation ended early: " + EndDescription(e);
      if (stream_) out += Event(json{{"error", {{"message", error_}, {"type", "server_error"}}}});
      return out;
    }
    if (stream_) {
      json choice = {{"index", idx}, {"logprobs", nullptr}, {"finish_reason", c.finish_reason}};
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
    json choices = json::array();
    for (size_t i = 0; i < choices_.size(); ++i) {
      json choice = {{"index", i}, {"logprobs", nullptr}, {"finish_reason", choices_[i].finish_reason}};
      if (chat_) {
        choice["message"] = {{"role", "assistant"}, {"content", choices_[i].text}, {"refusal", nullptr}};
      } else {
        choice["text"] = choices_[i].text;
      }
      choices.push_back(std::move(choice));
    }
    json body = {{"id", id_},
                 {"object", chat_ ? "chat.completion" : "text_completion"},
                 {"created", created_},
                 {"model", model_},
                 {"system_fingerprint", fingerprint_},
                 {"choices", std::move(choices)},
                 {"usage", Usage()}};
    return {200, Dump(body)};
  }

 private:
  struct Choice {
    std::string text;  // complete responses
    bool sent_role = false;
    std::string finish_reason = "stop";
  };

  size_t Index(const kernel::StreamEvent& e) const {
    auto it = index_.find(e.id);
    return it == index_.end() ? 0 : it->second;
  }

  std::string Text(size_t idx, const std::string& text) {
    Choice& c = choices_[idx];
    if (!stream_) {
      c.text += text;
      return "";
    }
    std::string out;
    if (chat_ && !c.sent_role) {
      // The first chunk of a choice names the role, as OpenAI's do.
      c.sent_role = true;
      out += Event(Chunk(json::array(
          {{{"index", idx}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr},
            {"finish_reason", nullptr}}})));
    }
    if (text.empty()) return out;
    json choice = {{"index", idx}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
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
  std::vector<Choice> choices_;
  std::map<kernel::ProcessId, size_t> index_;
  std::string error_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
};

void Generate(Daemon& daemon, const ExchangePtr& ex, Endpoint endpoint) {
  std::string param;
  auto parsed = ParseGeneration(endpoint, ex->request().body, &param);
  if (!parsed.ok()) {
    SendError(*ex, {.http_status = 400, .message = parsed.status().message(), .param = param});
    return;
  }
  const ParsedGeneration& r = *parsed;
  std::optional<manager::Lease> lease = AcquireForRequest(daemon, *ex, r.model, std::nullopt);
  if (!lease) return;
  auto prepared = PrepareProcess(lease->model(), r, &param);
  if (!prepared.ok()) {
    const bool context = prepared.status().message().find("context") != std::string::npos;
    SendError(*ex, {.http_status = HttpStatusFor(prepared.status().code()), .message = prepared.status().message(),
                    .param = param, .code = context ? "context_length_exceeded" : ""});
    return;
  }
  auto channel = std::make_unique<kernel::Channel>();
  auto ids = StartProcesses(lease->model(), *channel, std::move(prepared).value(), r.n);
  if (!ids.ok()) {
    SendStatus(*ex, ids.status());
    return;
  }
  const bool chat = endpoint == Endpoint::kChatCompletions;
  auto writer = std::make_unique<OpenAiWriter>(chat, r.stream, r.include_usage, r.model,
                                               Fingerprint(lease->manifest()), *ids);
  StartPump(ex, std::move(*lease), std::move(channel), std::move(writer),
            {.stream = r.stream, .content_type = "text/event-stream"});
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
  router.Add("POST", "/v1/chat/completions", [&daemon](const ExchangePtr& ex) { Generate(daemon, ex, Endpoint::kChatCompletions); });
  router.Add("POST", "/v1/completions", [&daemon](const ExchangePtr& ex) { Generate(daemon, ex, Endpoint::kCompletions); });
  router.Add("POST", "/v1/embeddings", [](const ExchangePtr& ex) {
    SendError(*ex, {.http_status = 400,
                    .message = "embeddings are not supported yet (the kernel has no embedding processes)",
                    .param = "input",
                    .code = "unsupported"});
  });
}

}  // namespace llmasos::api
