// The Ollama routes: /api/generate and /api/chat (NDJSON streams, or one object with
// "stream": false), /api/embed and /api/embeddings, /api/tags, /api/ps, /api/show, /api/pull
// (NDJSON progress), /api/delete, /api/copy, /api/version. Errors are {"error": "..."}.
#include <chrono>
#include <ctime>
#include <map>
#include <utility>

#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "api/embedding.h"
#include "api/errors.h"
#include "api/generation.h"
#include "api/request.h"
#include "services/registry/reference.h"
#include "util/mutex.h"

namespace llmasos::api {
namespace {

using nlohmann::json;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

int64_t Nanos(Duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

class OllamaWriter : public ResponseWriter {
 public:
  OllamaWriter(bool chat, bool stream, std::string model, Duration load_time,
               std::chrono::steady_clock::time_point received, const tokenizer::Tokenizer* logprobs_tokenizer)
      : chat_(chat),
        stream_(stream),
        model_(std::move(model)),
        load_time_(load_time),
        received_(received),
        tok_(logprobs_tokenizer) {}

  std::string OnToken(const kernel::StreamEvent& e) override {
    if (tok_ != nullptr && e.logprobs) pending_.push_back(ChatLogprobEntry(*tok_, *e.logprobs));
    return Text(e.text);
  }

  std::string OnEnd(const kernel::StreamEvent& e) override {
    std::string out = Text(e.text);
    const std::string reason = FinishReason(e);
    if (reason == "error" || reason == "cancelled") {
      error_ = "the generation ended early: " + EndDescription(e);
      error_status_ = EndHttpStatus(e);
      if (stream_) out += Dump(json{{"error", error_}}) + "\n";
      return out;
    }
    const kernel::ProcessAccounting& a = e.accounting;
    final_ = Line("");
    if (stream_ && !pending_.empty()) final_["logprobs"] = std::exchange(pending_, json::array());
    final_["done"] = true;
    final_["done_reason"] = reason;
    final_["total_duration"] = Nanos(std::chrono::steady_clock::now() - received_);
    final_["load_duration"] = Nanos(load_time_);
    final_["prompt_eval_count"] = a.num_prompt_tokens;
    const TimePoint first = a.first_token_at.value_or(a.ended_at.value_or(a.submitted_at));
    final_["prompt_eval_duration"] = Nanos(first - a.submitted_at - a.time_queued);
    final_["eval_count"] = a.num_generated_tokens;
    final_["eval_duration"] = Nanos(a.ended_at.value_or(first) - first);
    return out;
  }

  Final Finish() override {
    if (!error_.empty()) return {error_status_, stream_ ? "" : Dump(json{{"error", error_}})};
    if (stream_) return {200, Dump(final_) + "\n"};
    if (chat_) {
      final_["message"]["content"] = text_;
    } else {
      final_["response"] = text_;
    }
    if (tok_ != nullptr) final_["logprobs"] = std::move(pending_);
    return {200, Dump(final_)};
  }

 private:
  json Line(const std::string& text) const {
    json j = {{"model", model_}, {"created_at", Rfc3339Now()}};
    if (chat_) {
      j["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
      j["response"] = text;
    }
    j["done"] = false;
    return j;
  }
  // Streamed log-probabilities travel with the text of their tokens.
  std::string Text(const std::string& text) {
    if (text.empty()) return "";
    if (!stream_) {
      text_ += text;
      return "";
    }
    json line = Line(text);
    if (!pending_.empty()) line["logprobs"] = std::exchange(pending_, json::array());
    return Dump(line) + "\n";
  }

  const bool chat_, stream_;
  const std::string model_;
  const Duration load_time_;
  const std::chrono::steady_clock::time_point received_;
  const tokenizer::Tokenizer* tok_;  // set when log-probabilities were asked for
  std::string text_;
  std::string error_;
  int error_status_ = 500;
  json pending_ = json::array();  // log-probability entries not sent yet
  json final_;
};

json Done(const std::string& model, bool chat, const char* reason) {
  json j = {{"model", model}, {"created_at", Rfc3339Now()}, {"done", true}, {"done_reason", reason}};
  j[chat ? "message" : "response"] = chat ? json{{"role", "assistant"}, {"content", ""}} : json("");
  return j;
}

void Generate(Daemon& daemon, const ExchangePtr& ex, Endpoint endpoint) {
  const auto received = std::chrono::steady_clock::now();
  const bool chat = endpoint == Endpoint::kOllamaChat;
  auto parsed = ParseGeneration(endpoint, ex->request().body);
  if (!parsed.ok()) {
    SendError(*ex, {.http_status = 400, .message = parsed.status().message()});
    return;
  }
  const ParsedGeneration& r = *parsed;
  std::optional<TimePoint> deadline;
  if (!ReadDeadlineOrAnswer(*ex, r.timeout, &deadline)) return;
  std::optional<manager::Duration> keep_alive;
  if (r.keep_alive) keep_alive = std::chrono::duration_cast<manager::Duration>(*r.keep_alive);
  if (r.load_only && keep_alive && *keep_alive == manager::Duration::zero()) {
    // No prompt and keep_alive 0: unload.
    if (auto ref = registry::ParseReference(r.model); !ref.ok()) {
      SendError(*ex, {.http_status = 400, .message = "model: " + ref.status().message()});
      return;
    }
    auto unloaded = daemon.service->Unload({.model = r.model});
    if (!unloaded.ok()) {
      SendStatus(*ex, unloaded.status());
      return;
    }
    SendJson(*ex, Dump(Done(r.model, chat, "unload")));
    return;
  }
  std::optional<manager::Lease> lease = AcquireForRequest(daemon, *ex, r.model, keep_alive);
  if (!lease) return;
  const Duration load_time = std::chrono::steady_clock::now() - received;
  if (r.load_only) {
    SendJson(*ex, Dump(Done(r.model, chat, "load")));
    return;
  }
  auto prepared = PrepareProcess(lease->model(), r, ex->caller().get(), nullptr);
  if (!prepared.ok()) {
    SendStatus(*ex, prepared.status());
    return;
  }
  prepared->spec.limits.deadline = deadline;
  prepared->spec.adapter = lease->adapter();
  auto pump = NewPump(ex, {.stream = r.stream,
                           .content_type = "application/x-ndjson",
                           .prompt_tokens = static_cast<int64_t>(prepared->spec.prompt.size())});
  auto ids = StartProcesses(lease->model(), PumpChannel(*pump), std::move(prepared).value(), 1);
  if (!ids.ok()) {
    AbortPump(pump);
    SendStatus(*ex, ids.status());
    return;
  }
  auto writer = std::make_unique<OllamaWriter>(chat, r.stream, r.model, load_time, received,
                                               r.logprobs ? lease->model().tokenizer.get() : nullptr);
  StartPump(pump, std::move(*lease), std::move(writer));
}

// /api/embed ({"embeddings": [[...], ...]}) and the older /api/embeddings ({"embedding": [...]}).
class OllamaEmbedWriter : public EmbeddingWriter {
 public:
  OllamaEmbedWriter(bool older, std::string model, const std::vector<kernel::ProcessId>& ids,
                    Duration load_time, std::chrono::steady_clock::time_point received)
      : EmbeddingWriter(ids), older_(older), model_(std::move(model)), load_time_(load_time), received_(received) {}
  Final Finish() override {
    if (!error_.empty()) return {500, Dump(json{{"error", error_}})};
    if (older_) return {200, Dump(json{{"embedding", vectors_.empty() ? std::vector<float>() : vectors_[0]}})};
    return {200, Dump(json{{"model", model_},
                           {"embeddings", vectors_},
                           {"total_duration", Nanos(std::chrono::steady_clock::now() - received_)},
                           {"load_duration", Nanos(load_time_)},
                           {"prompt_eval_count", prompt_tokens_}})};
  }

 private:
  const bool older_;
  const std::string model_;
  const Duration load_time_;
  const std::chrono::steady_clock::time_point received_;
};

void Embed(Daemon& daemon, const ExchangePtr& ex, Endpoint endpoint) {
  const auto received = std::chrono::steady_clock::now();
  ServeEmbeddings(daemon, ex, endpoint,
                  [&](const ParsedEmbedding& request, const std::vector<kernel::ProcessId>& ids, TimePoint leased_at) {
                    return std::make_unique<OllamaEmbedWriter>(endpoint == Endpoint::kOllamaEmbeddings, request.model,
                                                               ids, leased_at - received, received);
                  });
}

// --- Model management: bodies of one or two names. ---

constexpr size_t kMaxSmallBody = 64 << 10;

// The body as a JSON object, or nullopt after answering 400.
std::optional<json> SmallBody(Exchange& ex) {
  const std::string& body = ex.request().body;
  if (body.size() > kMaxSmallBody) {
    SendError(ex, {.http_status = 400, .message = "the request body is over 64 KiB"});
    return std::nullopt;
  }
  auto j = ParseJsonObject(body);
  if (!j.ok()) {
    SendError(ex, {.http_status = 400, .message = j.status().message()});
    return std::nullopt;
  }
  return std::move(j).value();
}

// The string field `key` (or, for older clients, `alias`); nullopt after answering 400.
std::optional<std::string> NameField(Exchange& ex, const json& j, const char* key, const char* alias = nullptr) {
  const char* found = j.contains(key) ? key : (alias != nullptr && j.contains(alias) ? alias : nullptr);
  if (found == nullptr || !j[found].is_string() || j[found].get_ref<const std::string&>().empty()) {
    SendError(ex, {.http_status = 400, .message = std::string("\"") + key + "\" must be a non-empty string"});
    return std::nullopt;
  }
  return j[found].get<std::string>();
}

json Details(const registry::Manifest& m) {
  char size[32];
  const double p = static_cast<double>(m.parameter_count);
  if (p >= 1e9) {
    std::snprintf(size, sizeof(size), "%.1fB", p / 1e9);
  } else {
    std::snprintf(size, sizeof(size), "%.0fM", p / 1e6);
  }
  return {{"parent_model", ""},       {"format", m.format},  {"family", m.architecture},
          {"families", {m.architecture}}, {"parameter_size", size}, {"quantization_level", m.quantization}};
}

std::string Hex(const std::string& digest) { return digest.starts_with("sha256:") ? digest.substr(7) : digest; }

void Tags(Daemon& daemon, const ExchangePtr& ex) {
  auto models = daemon.service->List();
  if (!models.ok()) {
    SendStatus(*ex, models.status());
    return;
  }
  json out = json::array();
  for (const manager::ModelStatus& m : *models) {
    std::vector<std::string> names;
    for (const std::string& tag : m.tags) names.push_back(m.manifest.name + ":" + tag);
    names.push_back(m.manifest.name + "@" + m.manifest.version);
    for (const std::string& name : names) {
      out.push_back({{"name", name}, {"model", name}, {"modified_at", m.manifest.lineage.created},
                     {"size", m.manifest.size_bytes}, {"digest", Hex(m.manifest.digest)},
                     {"details", Details(m.manifest)}});
    }
  }
  SendJson(*ex, Dump(json{{"models", out}}));
}

void Ps(Daemon& daemon, const ExchangePtr& ex) {
  json out = json::array();
  for (const manager::InstanceInfo& i : daemon.service->Loaded()) {
    const std::string name = i.references.empty() ? i.manifest.name + "@" + i.manifest.version : i.references[0];
    json expires = nullptr;  // none: pinned, busy or kept forever
    if (i.expires_in) {
      const auto at = std::chrono::system_clock::now() +
                      std::chrono::duration_cast<std::chrono::system_clock::duration>(*i.expires_in);
      const std::time_t t = std::chrono::system_clock::to_time_t(at);
      std::tm tm{};
      gmtime_r(&t, &tm);
      char buf[40];
      std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
      expires = buf;
    }
    out.push_back({{"name", name}, {"model", name}, {"size", i.resident_bytes}, {"digest", Hex(i.manifest.digest)},
                   {"details", Details(i.manifest)}, {"expires_at", expires}, {"size_vram", 0},
                   {"context_length", i.manifest.context_length},
                   {"loading", i.loading}, {"num_requests", i.num_leases}});
  }
  SendJson(*ex, Dump(json{{"models", out}}));
}

void Show(Daemon& daemon, const ExchangePtr& ex) {
  auto body = SmallBody(*ex);
  if (!body) return;
  auto model = NameField(*ex, *body, "model", "name");
  if (!model) return;
  auto shown = daemon.service->Show(*model);
  if (!shown.ok()) {
    SendStatus(*ex, shown.status());
    return;
  }
  const registry::Manifest& m = shown->manifest;
  json info = {{"general.architecture", m.architecture}, {"general.parameter_count", m.parameter_count}};
  if (m.context_length > 0) info[m.architecture + ".context_length"] = m.context_length;
  SendJson(*ex, Dump(json{{"modelfile", ""},
                          {"parameters", ""},
                          {"template", m.chat_template},
                          {"license", m.license},
                          {"details", Details(m)},
                          {"model_info", info},
                          {"modified_at", m.lineage.created},
                          {"version", m.version},
                          {"digest", Hex(m.digest)},
                          {"tags", shown->tags}}));
}

void Delete(Daemon& daemon, const ExchangePtr& ex) {
  auto body = SmallBody(*ex);
  if (!body) return;
  auto model = NameField(*ex, *body, "model", "name");
  if (!model) return;
  auto deleted = daemon.service->Delete({.model = *model});
  if (!deleted.ok()) {
    SendStatus(*ex, deleted.status());
    return;
  }
  SendJson(*ex, "{}");
}

void Copy(Daemon& daemon, const ExchangePtr& ex) {
  auto body = SmallBody(*ex);
  if (!body) return;
  auto source = NameField(*ex, *body, "source");
  if (!source) return;
  auto destination = NameField(*ex, *body, "destination");
  if (!destination) return;
  auto copied = daemon.service->Copy({.source = *source, .destination = *destination});
  if (!copied.ok()) {
    SendStatus(*ex, copied.status());
    return;
  }
  SendJson(*ex, "{}");
}

// Runs on the slow pool: a download may take minutes.
void Pull(Daemon& daemon, bool allow_private, const ExchangePtr& ex) {
  auto body = SmallBody(*ex);
  if (!body) return;
  auto model = NameField(*ex, *body, "model", "name");
  if (!model) return;
  bool stream = true;
  if (body->contains("stream")) {
    if (!(*body)["stream"].is_boolean()) {
      SendError(*ex, {.http_status = 400, .message = "\"stream\" must be a boolean"});
      return;
    }
    stream = (*body)["stream"].get<bool>();
  }
  manager::PullRequest request;
  // Models come from a URL: "model" is the URL itself, or a name with the URL in "url".
  if (model->starts_with("http://") || model->starts_with("https://")) {
    request.url = *model;
  } else {
    request.model = *model;
    if (!body->contains("url") || !(*body)["url"].is_string()) {
      SendError(*ex, {.http_status = 400,
                      .message = "models are pulled from a URL: give \"model\" as an http(s) URL of a GGUF file, "
                                 "or a name with the URL in \"url\""});
      return;
    }
    request.url = (*body)["url"].get<std::string>();
  }
  if (body->contains("digest") && (*body)["digest"].is_string()) request.digest = (*body)["digest"].get<std::string>();
  request.allow_private = allow_private;
  if (stream) ex->StartStream(200, "application/x-ndjson");
  // The pull may report from more than one thread.
  struct Throttle {
    Mutex mu;
    std::string last_status GUARDED_BY(mu);
    std::chrono::steady_clock::time_point last_write GUARDED_BY(mu){};
  } throttle;
  auto on_progress = [&](const manager::PullProgress& p) {
    if (!stream) return;
    MutexLock lock(throttle.mu);
    const auto now = std::chrono::steady_clock::now();
    // Every change of status, and byte counts at most ten times a second.
    if (p.status == throttle.last_status && now - throttle.last_write < std::chrono::milliseconds(100)) return;
    throttle.last_status = p.status;
    throttle.last_write = now;
    json j = {{"status", p.status}};
    if (!p.digest.empty()) j["digest"] = p.digest;
    if (p.total_bytes > 0) j["total"] = p.total_bytes;
    if (p.completed_bytes > 0) j["completed"] = p.completed_bytes;
    ex->Write(Dump(j) + "\n", nullptr);
  };
  auto pulled = daemon.service->Pull(request, on_progress);
  if (!stream) {
    if (!pulled.ok()) {
      SendStatus(*ex, pulled.status());
    } else {
      SendJson(*ex, R"({"status":"success"})");
    }
    return;
  }
  if (!pulled.ok()) {
    ex->Write(Dump(json{{"error", ScrubPaths(pulled.status().message())}}) + "\n", nullptr);
  } else {
    ex->Write(Dump(json{{"status", "success"}}) + "\n", nullptr);
  }
  ex->EndStream();
}

}  // namespace

void AddOllamaRoutes(Router& router, Daemon& daemon) {
  router.Add("POST", "/api/generate", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Generate(daemon, ex, Endpoint::kOllamaGenerate); });
  router.Add("POST", "/api/chat", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Generate(daemon, ex, Endpoint::kOllamaChat); });
  router.Add("POST", "/api/embed", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Embed(daemon, ex, Endpoint::kOllamaEmbed); });
  router.Add("POST", "/api/embeddings", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Embed(daemon, ex, Endpoint::kOllamaEmbeddings); });
  router.Add("GET", "/api/tags", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Tags(daemon, ex); });
  router.Add("GET", "/api/ps", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Ps(daemon, ex); });
  router.Add("POST", "/api/show", RouteScope::kInfer, [&daemon](const ExchangePtr& ex) { Show(daemon, ex); });
  router.Add("DELETE", "/api/delete", RouteScope::kModels, [&daemon](const ExchangePtr& ex) { Delete(daemon, ex); }, Pool::kSlow);
  router.Add("POST", "/api/copy", RouteScope::kModels, [&daemon](const ExchangePtr& ex) { Copy(daemon, ex); }, Pool::kSlow);
  router.Add("POST", "/api/pull", RouteScope::kModels, [&daemon](const ExchangePtr& ex) { Pull(daemon, daemon.allow_private_pull, ex); },
             Pool::kSlow);
  router.Add("GET", "/api/version", RouteScope::kInfer, [](const ExchangePtr& ex) {
    SendJson(*ex, Dump(json{{"version", std::string(kServerVersion)}}));
  });
}

}  // namespace llmasos::api
