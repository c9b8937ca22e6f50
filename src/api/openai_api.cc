// The OpenAI routes: GET /v1/models, POST /v1/completions, /v1/chat/completions,
// /v1/embeddings. Bodies, chunks, finish_reason, usage, id, created and system_fingerprint as
// OpenAI's clients read them; streams are server-sent events ending with "data: [DONE]".
#include <cmath>
#include <cstring>
#include <map>

#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "api/embedding.h"
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
// or complete. Log-probabilities, when asked for, travel with the text of their tokens (a
// token whose text is held back, an incomplete UTF-8 character, joins the next chunk).
class OpenAiWriter : public ResponseWriter {
 public:
  OpenAiWriter(bool chat, bool stream, bool include_usage, std::string model, std::string fingerprint,
               const std::vector<kernel::ProcessId>& ids, const tokenizer::Tokenizer* logprobs_tokenizer)
      : chat_(chat),
        stream_(stream),
        include_usage_(include_usage),
        model_(std::move(model)),
        fingerprint_(std::move(fingerprint)),
        id_(NewResponseId(chat ? "chatcmpl-" : "cmpl-")),
        created_(UnixSeconds()),
        tok_(logprobs_tokenizer),
        choices_(ids.size()) {
    for (size_t i = 0; i < ids.size(); ++i) index_[ids[i]] = i;
  }

  std::string OnToken(const kernel::StreamEvent& e) override {
    const size_t idx = Index(e);
    if (tok_ != nullptr && e.logprobs) Record(choices_[idx], *e.logprobs);
    return Text(idx, e.text, false);
  }

  std::string OnEnd(const kernel::StreamEvent& e) override {
    const size_t idx = Index(e);
    std::string out = Text(idx, e.text, true);
    Choice& c = choices_[idx];
    prompt_tokens_ = e.accounting.num_prompt_tokens;
    completion_tokens_ += e.accounting.num_generated_tokens;
    c.finish_reason = FinishReason(e);
    if (c.finish_reason == "error" || c.finish_reason == "cancelled") {
      error_ = "the generation ended early: " + EndDescription(e);
      error_status_ = EndHttpStatus(e);
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
      return {error_status_, Dump(json{{"error", {{"message", error_}, {"type", "server_error"}, {"param", nullptr},
                                                  {"code", error_status_ == 504 ? json("timeout") : json(nullptr)}}}})};
    }
    json choices = json::array();
    for (size_t i = 0; i < choices_.size(); ++i) {
      Choice& c = choices_[i];
      json choice = {{"index", i}, {"logprobs", TakeLogprobs(c)}, {"finish_reason", c.finish_reason}};
      if (chat_) {
        choice["message"] = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
      } else {
        choice["text"] = c.text;
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
    std::string text;  // complete responses: all of it; streamed: unused
    size_t text_bytes = 0;  // text so far (the completions format's text_offset)
    bool sent_role = false;
    std::string finish_reason = "stop";
    // Log-probabilities not sent yet. Chat: "content" entries; completions: the four lists.
    json content = json::array();
    json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(),
         text_offset = json::array();
  };

  size_t Index(const kernel::StreamEvent& e) const {
    auto it = index_.find(e.id);
    return it == index_.end() ? 0 : it->second;
  }

  void Record(Choice& c, const sampling::TokenLogprobs& lps) {
    if (chat_) {
      c.content.push_back(ChatLogprobEntry(*tok_, lps));
      return;
    }
    c.tokens.push_back(tok_->TokenToPiece(lps.chosen.token));
    c.token_logprobs.push_back(JsonLogprob(lps.chosen.logprob));
    json top = json::object();
    for (const sampling::TokenLogprob& t : lps.top) top[tok_->TokenToPiece(t.token)] = JsonLogprob(t.logprob);
    c.top_logprobs.push_back(std::move(top));
    c.text_offset.push_back(c.text_bytes);
  }

  // The log-probabilities recorded since the last call, in the response's format (null when
  // none were asked for).
  json TakeLogprobs(Choice& c) {
    if (tok_ == nullptr) return nullptr;
    json out;
    if (chat_) {
      out = {{"content", std::move(c.content)}, {"refusal", nullptr}};
      c.content = json::array();
    } else {
      out = {{"tokens", std::move(c.tokens)}, {"token_logprobs", std::move(c.token_logprobs)},
             {"top_logprobs", std::move(c.top_logprobs)}, {"text_offset", std::move(c.text_offset)}};
      c.tokens = json::array();
      c.token_logprobs = json::array();
      c.top_logprobs = json::array();
      c.text_offset = json::array();
    }
    return out;
  }

  bool HasPendingLogprobs(const Choice& c) const {
    return tok_ != nullptr && (chat_ ? !c.content.empty() : !c.tokens.empty());
  }

  // `last`: the process ended; log-probabilities still held go out even without text.
  std::string Text(size_t idx, const std::string& text, bool last) {
    Choice& c = choices_[idx];
    c.text_bytes += text.size();
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
    if (text.empty() && !(last && HasPendingLogprobs(c))) return out;
    json choice = {{"index", idx}, {"logprobs", TakeLogprobs(c)}, {"finish_reason", nullptr}};
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
  const tokenizer::Tokenizer* tok_;  // set when log-probabilities were asked for
  std::vector<Choice> choices_;
  std::map<kernel::ProcessId, size_t> index_;
  std::string error_;
  int error_status_ = 500;
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
  std::optional<TimePoint> deadline;
  if (!ReadDeadlineOrAnswer(*ex, r.timeout, &deadline)) return;
  std::optional<manager::Lease> lease = AcquireForRequest(daemon, *ex, r.model, std::nullopt);
  if (!lease) return;
  auto prepared = PrepareProcess(lease->model(), r, ex->caller().get(), &param);
  if (!prepared.ok()) {
    const bool context = prepared.status().message().find("context") != std::string::npos;
    SendError(*ex, {.http_status = HttpStatusFor(prepared.status().code()), .message = prepared.status().message(),
                    .param = param, .code = context ? "context_length_exceeded" : ""});
    return;
  }
  prepared->spec.limits.deadline = deadline;
  prepared->spec.adapter = lease->adapter();
  auto pump = NewPump(ex, {.stream = r.stream,
                           .content_type = "text/event-stream",
                           .prompt_tokens = static_cast<int64_t>(prepared->spec.prompt.size())});
  auto ids = StartProcesses(lease->model(), PumpChannel(*pump), std::move(prepared).value(), r.n);
  if (!ids.ok()) {
    AbortPump(pump);
    SendStatus(*ex, ids.status());
    return;
  }
  const bool chat = endpoint == Endpoint::kChatCompletions;
  auto writer = std::make_unique<OpenAiWriter>(chat, r.stream, r.include_usage, r.model,
                                               Fingerprint(lease->manifest()), *ids,
                                               r.logprobs ? lease->model().tokenizer.get() : nullptr);
  StartPump(pump, std::move(*lease), std::move(writer));
}

// --- Embeddings ---

std::string Base64(const std::vector<float>& v) {
  static const char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  // OpenAI's base64 embeddings are the little-endian float32 bytes.
  std::string bytes(v.size() * sizeof(float), '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &v[i], sizeof(u));
    for (int b = 0; b < 4; ++b) bytes[i * 4 + b] = static_cast<char>((u >> (8 * b)) & 0xff);
  }
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const uint32_t n = (static_cast<uint8_t>(bytes[i]) << 16) |
                       (i + 1 < bytes.size() ? static_cast<uint8_t>(bytes[i + 1]) << 8 : 0) |
                       (i + 2 < bytes.size() ? static_cast<uint8_t>(bytes[i + 2]) : 0);
    out += kDigits[(n >> 18) & 63];
    out += kDigits[(n >> 12) & 63];
    out += i + 1 < bytes.size() ? kDigits[(n >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kDigits[n & 63] : '=';
  }
  return out;
}

class OpenAiEmbeddingWriter : public EmbeddingWriter {
 public:
  OpenAiEmbeddingWriter(std::string model, bool base64, const std::vector<kernel::ProcessId>& ids)
      : EmbeddingWriter(ids), model_(std::move(model)), base64_(base64) {}
  Final Finish() override {
    if (!error_.empty()) {
      return {500, Dump(json{{"error", {{"message", error_}, {"type", "server_error"}, {"param", nullptr},
                                         {"code", nullptr}}}})};
    }
    json data = json::array();
    for (size_t i = 0; i < vectors_.size(); ++i) {
      json e = {{"object", "embedding"}, {"index", i}};
      if (base64_) {
        e["embedding"] = Base64(vectors_[i]);
      } else {
        e["embedding"] = vectors_[i];
      }
      data.push_back(std::move(e));
    }
    return {200, Dump(json{{"object", "list"},
                           {"data", std::move(data)},
                           {"model", model_},
                           {"usage", {{"prompt_tokens", prompt_tokens_}, {"total_tokens", prompt_tokens_}}}})};
  }

 private:
  const std::string model_;
  const bool base64_;
};

void Embeddings(Daemon& daemon, const ExchangePtr& ex) {
  ServeEmbeddings(daemon, ex, Endpoint::kEmbeddings,
                  [](const ParsedEmbedding& request, const std::vector<kernel::ProcessId>& ids, TimePoint) {
                    return std::make_unique<OpenAiEmbeddingWriter>(
                        request.model, request.encoding == EmbeddingEncoding::kBase64, ids);
                  });
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
  router.Add("GET", "/v1/models", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { ListModels(daemon, ex); });
  router.Add("POST", "/v1/chat/completions", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Generate(daemon, ex, Endpoint::kChatCompletions); });
  router.Add("POST", "/v1/completions", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Generate(daemon, ex, Endpoint::kCompletions); });
  router.Add("POST", "/v1/embeddings", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Embeddings(daemon, ex); });
}

}  // namespace llmasos::api
