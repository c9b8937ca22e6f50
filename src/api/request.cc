#include "api/request.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <set>

#include "api/json_body.h"
#include "api/json_fields.h"
#include "util/utf8.h"

namespace llmasos::api {
namespace {

using json = nlohmann::json;
using json_fields::Context;
using json_fields::Fields;
using json_fields::ReadKeepAlive;
using json_fields::ReadNumber;
using json_fields::ReadSeed;
using json_fields::Show;

constexpr size_t kMaxModelBytes = 256;
constexpr size_t kMaxUserBytes = 256;
constexpr size_t kMaxTenantBytes = 128;
constexpr size_t kMaxMessages = 65536;
constexpr size_t kMaxLogitBias = 1024;
constexpr int64_t kMaxTokensLimit = 1 << 20;
constexpr int64_t kMaxContextLimit = 1 << 20;
constexpr int64_t kMaxTopK = 1000000;

Status ReadModel(Fields& f, std::string* model) {
  bool present = false;
  RETURN_IF_ERROR(f.String("model", kMaxModelBytes, model, &present));
  if (!present || model->empty()) return f.Fail("model", "is required");
  for (unsigned char c : *model) {
    if (c < 0x20 || c == 0x7F) return f.Fail("model", "contains a control character");
  }
  return OkStatus();
}

// stop: a string or a list of strings.
Status ReadStop(Fields& f, std::string_view key, std::vector<std::string>* out) {
  const json* v = f.Find(key);
  if (v == nullptr) return OkStatus();
  std::vector<const json*> items;
  if (v->is_string()) {
    items.push_back(v);
  } else if (v->is_array()) {
    if (v->size() > kMaxStopStrings) {
      return f.Fail(key, "has " + std::to_string(v->size()) + " strings; at most " + std::to_string(kMaxStopStrings));
    }
    for (const json& s : *v) items.push_back(&s);
  } else {
    return f.Fail(key, "must be a string or a list of strings, got " + Show(*v));
  }
  out->clear();
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string path = v->is_array() ? f.Path(key) + "[" + std::to_string(i) + "]" : f.Path(key);
    if (!items[i]->is_string()) return f.ctx().Fail(path, "must be a string, got " + Show(*items[i]));
    const std::string& s = items[i]->get_ref<const std::string&>();
    if (s.empty()) return f.ctx().Fail(path, "must not be empty");
    if (s.size() > kMaxStopBytes) {
      return f.ctx().Fail(path, "is longer than " + std::to_string(kMaxStopBytes) + " bytes");
    }
    out->push_back(s);
  }
  return OkStatus();
}

// logit_bias: {"token id": bias in -100..100, ...}.
Status ReadLogitBias(Fields& f, std::vector<std::pair<sampling::TokenId, float>>* out) {
  const json* v = f.Find("logit_bias");
  if (v == nullptr) return OkStatus();
  if (!v->is_object()) return f.Fail("logit_bias", "must be an object of token ids to biases, got " + Show(*v));
  if (v->size() > kMaxLogitBias) {
    return f.Fail("logit_bias", "has " + std::to_string(v->size()) + " entries; at most " +
                                    std::to_string(kMaxLogitBias));
  }
  for (auto it = v->begin(); it != v->end(); ++it) {
    const std::string& key = it.key();
    const bool digits = !key.empty() && key.size() <= 10 &&
                        std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
    const int64_t token = digits ? std::stoll(key) : -1;
    if (token < 0 || token > std::numeric_limits<sampling::TokenId>::max()) {
      return f.Fail("logit_bias", "key '" + SanitizeUtf8(key.substr(0, 32)) + "' is not a token id");
    }
    double bias;
    RETURN_IF_ERROR(ReadNumber(f.ctx(), *it, f.Path("logit_bias") + "." + key, -100, 100, &bias));
    out->emplace_back(static_cast<sampling::TokenId>(token), static_cast<float>(bias));
  }
  std::sort(out->begin(), out->end());
  for (size_t i = 1; i < out->size(); ++i) {
    if ((*out)[i].first == (*out)[i - 1].first) {
      return f.Fail("logit_bias", "token " + std::to_string((*out)[i].first) + " is given twice");
    }
  }
  return OkStatus();
}

// One message's content: a string, or (OpenAI) a list of {"type": "text", "text": ...} parts,
// joined with "\n".
Status ReadContent(Fields& m, bool parts_allowed, std::string* out) {
  const json* v = m.Find("content");
  if (v == nullptr) return m.Fail("content", "is required");
  if (v->is_string()) {
    *out = v->get<std::string>();
    return OkStatus();
  }
  if (!parts_allowed || !v->is_array()) {
    return m.Fail("content", std::string("must be a string") + (parts_allowed ? " or a list of text parts" : "") +
                                 ", got " + Show(*v));
  }
  if (v->empty()) return m.Fail("content", "must not be an empty list");
  out->clear();
  for (size_t i = 0; i < v->size(); ++i) {
    const json& part = (*v)[i];
    const std::string path = m.Path("content") + "[" + std::to_string(i) + "]";
    if (!part.is_object()) return m.ctx().Fail(path, "must be an object {\"type\": \"text\", \"text\": ...}");
    Fields p(part, path + ".", m.ctx());
    std::string type;
    RETURN_IF_ERROR(p.String("type", 64, &type));
    if (type != "text") {
      return p.Fail("type", type.empty() ? "is required (\"text\")" : "'" + type + "' is not supported (only \"text\")");
    }
    std::string text;
    bool present = false;
    RETURN_IF_ERROR(p.String("text", std::numeric_limits<size_t>::max(), &text, &present));
    if (!present) return p.Fail("text", "is required");
    if (i > 0) out->push_back('\n');
    *out += text;
    p.IgnoreRest();
  }
  return OkStatus();
}

Status ReadMessages(Fields& f, Endpoint endpoint, std::vector<chat::Message>* out) {
  const json* v = f.Find("messages");
  const bool ollama = IsOllama(endpoint);
  if (v == nullptr) {
    if (ollama) return OkStatus();  // load only
    return f.Fail("messages", "is required");
  }
  if (!v->is_array()) return f.Fail("messages", "must be a list of messages, got " + Show(*v));
  if (v->empty() && !ollama) return f.Fail("messages", "must be a non-empty list");
  if (v->size() > kMaxMessages) return f.Fail("messages", "has more than " + std::to_string(kMaxMessages) + " messages");
  for (size_t i = 0; i < v->size(); ++i) {
    const json& item = (*v)[i];
    const std::string path = f.Path("messages") + "[" + std::to_string(i) + "]";
    if (!item.is_object()) return f.ctx().Fail(path, "must be an object with \"role\" and \"content\"");
    Fields m(item, path + ".", f.ctx());
    chat::Message message;
    bool present = false;
    RETURN_IF_ERROR(m.String("role", 64, &message.role, &present));
    if (!present) return m.Fail("role", "is required");
    if (message.role == "developer" && !ollama) message.role = "system";  // OpenAI's newer name
    if (message.role == "tool" || message.role == "function") {
      return m.Fail("role", "'" + message.role + "' is not supported (system, user or assistant)");
    }
    if (message.role != "system" && message.role != "user" && message.role != "assistant") {
      return m.Fail("role", "unknown role '" + message.role + "' (expected system, user or assistant)");
    }
    RETURN_IF_ERROR(m.Unsupported("tool_calls"));
    RETURN_IF_ERROR(m.Unsupported("function_call"));
    if (ollama) {
      RETURN_IF_ERROR(m.Unsupported("images"));
    } else {
      RETURN_IF_ERROR(m.Unsupported("audio"));
    }
    RETURN_IF_ERROR(ReadContent(m, !ollama, &message.content));
    m.IgnoreRest();  // name, refusal, thinking, tool_name, ...
    out->push_back(std::move(message));
  }
  return OkStatus();
}

// Ollama's `options` object.
// The sampler settings every dialect spells alike, each with its one range.
Status ReadSamplerFields(Fields& f, ParsedGeneration* r) {
  RETURN_IF_ERROR(f.Int("top_k", 0, kMaxTopK, &r->top_k));
  RETURN_IF_ERROR(f.Float("top_p", 0, 1, &r->top_p));
  RETURN_IF_ERROR(f.Float("min_p", 0, 1, &r->min_p));
  RETURN_IF_ERROR(f.Float("repeat_penalty", 1e-6, 10, &r->repeat_penalty));
  RETURN_IF_ERROR(f.Float("presence_penalty", -2, 2, &r->presence_penalty));
  RETURN_IF_ERROR(f.Float("frequency_penalty", -2, 2, &r->frequency_penalty));
  if (const json* seed = f.Find("seed")) RETURN_IF_ERROR(ReadSeed(f.ctx(), *seed, f.Path("seed"), &r->seed));
  return ReadStop(f, "stop", &r->stop);
}

Status ReadOllamaOptions(Fields& f, ParsedGeneration* r) {
  const json* v;
  RETURN_IF_ERROR(f.Object("options", &v));
  if (v == nullptr) return OkStatus();
  Fields o(*v, "options.", f.ctx());
  std::optional<int32_t> num_predict;
  RETURN_IF_ERROR(o.Int("num_predict", -2, kMaxTokensLimit, &num_predict));
  if (num_predict == 0) return o.Fail("num_predict", "must be >= 1, or -1 / -2 for no limit, got 0");
  if (num_predict > 0) r->max_tokens = num_predict;
  RETURN_IF_ERROR(o.Int("num_ctx", 1, kMaxContextLimit, &r->num_ctx));
  RETURN_IF_ERROR(o.Float("temperature", 0, 100, &r->temperature));
  RETURN_IF_ERROR(o.Int("repeat_last_n", -1, kMaxContextLimit, &r->repeat_last_n));
  RETURN_IF_ERROR(ReadSamplerFields(o, r));
  // Samplers the kernel does not have: refused unless they are set to "off".
  RETURN_IF_ERROR(o.Unsupported("typical_p", {1}));
  RETURN_IF_ERROR(o.Unsupported("tfs_z", {1}));
  RETURN_IF_ERROR(o.Unsupported("mirostat", {0}));
  // The rest (num_thread, num_gpu, use_mmap, num_keep, mirostat_tau, ...: runtime and hardware
  // hints, and names Ollama does not know either) are ignored and listed.
  o.IgnoreRest();
  return OkStatus();
}

// Options an embedding request may carry: only num_ctx matters.
Status ReadEmbeddingOptions(Fields& f, ParsedEmbedding* r) {
  const json* v;
  RETURN_IF_ERROR(f.Object("options", &v));
  if (v == nullptr) return OkStatus();
  Fields o(*v, "options.", f.ctx());
  RETURN_IF_ERROR(o.Int("num_ctx", 1, kMaxContextLimit, &r->num_ctx));
  o.IgnoreRest();
  return OkStatus();
}

// The fields every OpenAI generation endpoint shares.
Status ReadOpenAiCommon(Fields& f, ParsedGeneration* r) {
  RETURN_IF_ERROR(f.Bool("stream", &r->stream));
  const json* so;
  RETURN_IF_ERROR(f.Object("stream_options", &so));
  if (so != nullptr) {
    if (!r->stream) return f.Fail("stream_options", "is only allowed when stream is true");
    Fields s(*so, "stream_options.", f.ctx());
    RETURN_IF_ERROR(s.Bool("include_usage", &r->include_usage));
    s.IgnoreRest();
  }
  std::optional<int32_t> max_tokens, max_completion_tokens;
  RETURN_IF_ERROR(f.Int("max_tokens", 1, kMaxTokensLimit, &max_tokens));
  RETURN_IF_ERROR(f.Int("max_completion_tokens", 1, kMaxTokensLimit, &max_completion_tokens));
  if (max_tokens && max_completion_tokens && *max_tokens != *max_completion_tokens) {
    return f.Fail("max_completion_tokens", "differs from max_tokens; give one of them");
  }
  r->max_tokens = max_completion_tokens ? max_completion_tokens : max_tokens;
  RETURN_IF_ERROR(f.Float("temperature", 0, 2, &r->temperature));
  // With top_k, min_p and repeat_penalty: extensions llama-server and vLLM accept on /v1 too.
  RETURN_IF_ERROR(ReadSamplerFields(f, r));
  r->penalty_mode = sampling::PenaltyMode::kOpenAi;
  std::optional<int32_t> n;
  RETURN_IF_ERROR(f.Int("n", 1, kMaxChoices, &n));
  r->n = n.value_or(1);
  RETURN_IF_ERROR(ReadLogitBias(f, &r->logit_bias));
  RETURN_IF_ERROR(f.String("user", kMaxUserBytes, &r->user));
  RETURN_IF_ERROR(f.Int("priority", -kMaxPriority, kMaxPriority, &r->priority));
  RETURN_IF_ERROR(f.Float("timeout", kMinTimeoutSeconds, kMaxTimeoutSeconds, &r->timeout));
  const json* rf;
  RETURN_IF_ERROR(f.Object("response_format", &rf));
  if (rf != nullptr) {
    Fields s(*rf, "response_format.", f.ctx());
    std::string type;
    RETURN_IF_ERROR(s.String("type", 64, &type));
    if (type != "text") {
      return s.Fail("type", type.empty() ? "is required (\"text\")" : "'" + type + "' is not supported (only \"text\")");
    }
    s.IgnoreRest();
  }
  RETURN_IF_ERROR(f.Unsupported("tools"));
  RETURN_IF_ERROR(f.Unsupported("tool_choice", {"none", "auto"}));
  RETURN_IF_ERROR(f.Unsupported("functions"));
  RETURN_IF_ERROR(f.Unsupported("function_call", {"none", "auto"}));
  RETURN_IF_ERROR(f.Unsupported("audio"));
  RETURN_IF_ERROR(f.Unsupported("modalities", {json::array({"text"})}));
  RETURN_IF_ERROR(f.Unsupported("prediction"));
  RETURN_IF_ERROR(f.Unsupported("web_search_options"));
  RETURN_IF_ERROR(f.Unsupported("reasoning_effort"));
  return OkStatus();
}

Status ReadOpenAiChat(Fields& f, ParsedGeneration* r) {
  RETURN_IF_ERROR(ReadModel(f, &r->model));
  r->use_chat_template = true;
  RETURN_IF_ERROR(ReadMessages(f, r->endpoint, &r->messages));
  RETURN_IF_ERROR(ReadOpenAiCommon(f, r));
  RETURN_IF_ERROR(f.Bool("logprobs", &r->logprobs));
  std::optional<int32_t> top;
  RETURN_IF_ERROR(f.Int("top_logprobs", 0, 20, &top));
  if (top && !r->logprobs) return f.Fail("top_logprobs", "needs \"logprobs\": true");
  r->top_logprobs = top.value_or(0);
  return OkStatus();
}

Status ReadOpenAiCompletion(Fields& f, ParsedGeneration* r) {
  RETURN_IF_ERROR(ReadModel(f, &r->model));
  const json* p = f.Find("prompt");
  if (p == nullptr) return f.Fail("prompt", "is required");
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
  if (p->is_array() && !p->empty() && (*p)[0].is_string()) {
    return f.Fail("prompt", "a list of several prompts is not supported; send one request per prompt");
  }
  if (p->is_array()) return f.Fail("prompt", "token ids are not supported; send the prompt as text");
  if (!p->is_string()) return f.Fail("prompt", "must be a string, got " + Show(*p));
  r->prompt = p->get<std::string>();
  RETURN_IF_ERROR(ReadOpenAiCommon(f, r));
  std::optional<int32_t> logprobs;
  RETURN_IF_ERROR(f.Int("logprobs", 0, 5, &logprobs));
  r->logprobs = logprobs.has_value();
  r->top_logprobs = logprobs.value_or(0);
  RETURN_IF_ERROR(f.Unsupported("echo"));
  RETURN_IF_ERROR(f.Unsupported("suffix"));
  RETURN_IF_ERROR(f.Unsupported("best_of", {1}));
  return OkStatus();
}

// The fields /api/generate and /api/chat share.
Status ReadOllamaCommon(Fields& f, ParsedGeneration* r) {
  RETURN_IF_ERROR(ReadModel(f, &r->model));
  r->stream = true;
  RETURN_IF_ERROR(f.Bool("stream", &r->stream));
  if (const json* ka = f.Find("keep_alive")) RETURN_IF_ERROR(ReadKeepAlive(f.ctx(), *ka, &r->keep_alive));
  RETURN_IF_ERROR(ReadOllamaOptions(f, r));
  RETURN_IF_ERROR(f.Bool("logprobs", &r->logprobs));
  std::optional<int32_t> top;
  RETURN_IF_ERROR(f.Int("top_logprobs", 0, 20, &top));
  if (top && *top > 0 && !r->logprobs) return f.Fail("top_logprobs", "needs \"logprobs\": true");
  r->top_logprobs = top.value_or(0);
  RETURN_IF_ERROR(f.Int("priority", -kMaxPriority, kMaxPriority, &r->priority));
  RETURN_IF_ERROR(f.Float("timeout", kMinTimeoutSeconds, kMaxTimeoutSeconds, &r->timeout));
  RETURN_IF_ERROR(f.Unsupported("format"));
  RETURN_IF_ERROR(f.Unsupported("think"));
  RETURN_IF_ERROR(f.Unsupported("tools"));
  return OkStatus();
}

Status ReadOllamaGenerate(Fields& f, ParsedGeneration* r) {
  RETURN_IF_ERROR(ReadOllamaCommon(f, r));
  std::string prompt, system;
  bool raw = false, has_system = false;
  RETURN_IF_ERROR(f.String("prompt", std::numeric_limits<size_t>::max(), &prompt));
  RETURN_IF_ERROR(f.String("system", std::numeric_limits<size_t>::max(), &system, &has_system));
  RETURN_IF_ERROR(f.Bool("raw", &raw));
  if (raw && has_system) return f.Fail("system", "cannot be used with \"raw\": true (no template is applied)");
  RETURN_IF_ERROR(f.Unsupported("suffix"));
  RETURN_IF_ERROR(f.Unsupported("images"));
  RETURN_IF_ERROR(f.Unsupported("template"));
  RETURN_IF_ERROR(f.Unsupported("context"));
  if (prompt.empty()) {
    r->load_only = true;
    return OkStatus();
  }
  if (raw) {
    r->prompt = std::move(prompt);
  } else {
    r->use_chat_template = true;
    if (has_system) r->messages.push_back({"system", std::move(system)});
    r->messages.push_back({"user", std::move(prompt)});
  }
  return OkStatus();
}

Status ReadOllamaChat(Fields& f, ParsedGeneration* r) {
  RETURN_IF_ERROR(ReadOllamaCommon(f, r));
  r->use_chat_template = true;
  RETURN_IF_ERROR(ReadMessages(f, r->endpoint, &r->messages));
  r->load_only = r->messages.empty();
  return OkStatus();
}

// The sampling fields of a batch line, which a batch job's "options" may also set for every line.
constexpr std::string_view kBatchSamplingFields[] = {"max_tokens", "temperature", "top_k", "top_p", "min_p",
                                                     "repeat_penalty", "presence_penalty", "frequency_penalty",
                                                     "seed", "stop"};
Status ReadBatchSampling(Fields& f, ParsedGeneration* r) {
  RETURN_IF_ERROR(f.Int("max_tokens", 1, kMaxTokensLimit, &r->max_tokens));
  RETURN_IF_ERROR(f.Float("temperature", 0, 100, &r->temperature));
  return ReadSamplerFields(f, r);
}

// A line of `llmasos batch`: OpenAI's names for what they share, plus "raw" and "tenant".
// "id" is the batch command's own.
Status ReadBatchLine(Fields& f, ParsedGeneration* r) {
  f.Find("id");
  bool raw = false;
  RETURN_IF_ERROR(f.Bool("raw", &raw));
  if (f.Has("messages")) {
    if (raw) return f.Fail("raw", "applies to \"prompt\", not to \"messages\"");
    if (f.Has("prompt")) return f.Fail("prompt", "give either \"prompt\" or \"messages\", not both");
    r->use_chat_template = true;
    RETURN_IF_ERROR(ReadMessages(f, r->endpoint, &r->messages));
  } else {
    const json* p = f.Find("prompt");
    if (p == nullptr || !p->is_string()) return f.Fail("prompt", "needs a string \"prompt\" or a \"messages\" list");
    if (raw) {
      r->prompt = p->get<std::string>();
    } else {
      r->use_chat_template = true;
      r->messages.push_back({"user", p->get<std::string>()});
    }
  }
  RETURN_IF_ERROR(ReadBatchSampling(f, r));
  RETURN_IF_ERROR(f.Int("priority", -kMaxPriority, kMaxPriority, &r->priority));
  std::string tenant;
  bool has_tenant = false;
  RETURN_IF_ERROR(f.String("tenant", kMaxTenantBytes, &tenant, &has_tenant));
  if (has_tenant) {
    if (tenant.empty()) return f.Fail("tenant", "must not be empty");
    r->tenant = std::move(tenant);
  }
  return OkStatus();
}

}  // namespace

std::string_view EndpointPath(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kCompletions: return "/v1/completions";
    case Endpoint::kChatCompletions: return "/v1/chat/completions";
    case Endpoint::kEmbeddings: return "/v1/embeddings";
    case Endpoint::kOllamaGenerate: return "/api/generate";
    case Endpoint::kOllamaChat: return "/api/chat";
    case Endpoint::kOllamaEmbed: return "/api/embed";
    case Endpoint::kOllamaEmbeddings: return "/api/embeddings";
    case Endpoint::kBatchLine: return "batch line";
  }
  return "?";
}

bool IsOllama(Endpoint e) {
  return e == Endpoint::kOllamaGenerate || e == Endpoint::kOllamaChat || e == Endpoint::kOllamaEmbed ||
         e == Endpoint::kOllamaEmbeddings;
}

bool IsEmbedding(Endpoint e) {
  return e == Endpoint::kEmbeddings || e == Endpoint::kOllamaEmbed || e == Endpoint::kOllamaEmbeddings;
}

StatusOr<ParsedGeneration> ParseGenerationJson(Endpoint endpoint, const nlohmann::json& body,
                                               std::string* error_param) {
  CHECK(!IsEmbedding(endpoint)) << EndpointPath(endpoint) << " is an embedding endpoint";
  if (error_param != nullptr) error_param->clear();
  if (!body.is_object()) return InvalidArgumentError("not a JSON object (got " + JsonTypeName(body) + ")");
  ParsedGeneration r;
  r.endpoint = endpoint;
  const Context ctx{error_param, &r.ignored_fields};
  Fields f(body, "", ctx);
  switch (endpoint) {
    case Endpoint::kCompletions: RETURN_IF_ERROR(ReadOpenAiCompletion(f, &r)); break;
    case Endpoint::kChatCompletions: RETURN_IF_ERROR(ReadOpenAiChat(f, &r)); break;
    case Endpoint::kOllamaGenerate: RETURN_IF_ERROR(ReadOllamaGenerate(f, &r)); break;
    case Endpoint::kOllamaChat: RETURN_IF_ERROR(ReadOllamaChat(f, &r)); break;
    case Endpoint::kBatchLine: RETURN_IF_ERROR(ReadBatchLine(f, &r)); break;
    default: break;
  }
  f.IgnoreRest();
  return r;
}

StatusOr<ParsedGeneration> ParseBatchOptions(const nlohmann::json& object, std::string* error_param) {
  if (error_param != nullptr) error_param->clear();
  if (!object.is_object()) {
    if (error_param != nullptr) *error_param = "options";
    return InvalidArgumentError("options: must be a JSON object (got " + JsonTypeName(object) + ")");
  }
  ParsedGeneration r;
  r.endpoint = Endpoint::kBatchLine;
  const Context ctx{error_param, &r.ignored_fields};
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (std::find(std::begin(kBatchSamplingFields), std::end(kBatchSamplingFields), it.key()) ==
        std::end(kBatchSamplingFields)) {
      return ctx.Fail("options." + it.key().substr(0, 64),
                      "unknown option (max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, "
                      "presence_penalty, frequency_penalty, seed, stop)");
    }
  }
  Fields f(object, "options.", ctx);
  RETURN_IF_ERROR(ReadBatchSampling(f, &r));
  return r;
}

StatusOr<ParsedGeneration> ParseGeneration(Endpoint endpoint, std::string_view body,
                                                   std::string* error_param) {
  if (error_param != nullptr) error_param->clear();
  auto j = ParseJsonObject(body);
  if (!j.ok()) return j.status();
  return ParseGenerationJson(endpoint, *j, error_param);
}

StatusOr<ParsedEmbedding> ParseEmbedding(Endpoint endpoint, std::string_view body,
                                                 std::string* error_param) {
  CHECK(IsEmbedding(endpoint)) << EndpointPath(endpoint) << " is not an embedding endpoint";
  if (error_param != nullptr) error_param->clear();
  auto j = ParseJsonObject(body);
  if (!j.ok()) return j.status();
  ParsedEmbedding r;
  r.endpoint = endpoint;
  const Context ctx{error_param, &r.ignored_fields};
  Fields f(*j, "", ctx);
  RETURN_IF_ERROR(ReadModel(f, &r.model));
  const bool ollama = IsOllama(endpoint);
  const std::string_view input_key = endpoint == Endpoint::kOllamaEmbeddings ? "prompt" : "input";
  if (const json* in = f.Find(input_key)) {
    if (in->is_string()) {
      if (!in->get_ref<const std::string&>().empty() || !ollama) r.inputs.push_back(in->get<std::string>());
    } else if (in->is_array() && endpoint != Endpoint::kOllamaEmbeddings) {
      r.input_is_list = true;
      if (in->size() > kMaxEmbeddingInputs) {
        return f.Fail(input_key, "has " + std::to_string(in->size()) + " inputs; at most " +
                                     std::to_string(kMaxEmbeddingInputs));
      }
      for (size_t i = 0; i < in->size(); ++i) {
        const json& item = (*in)[i];
        const std::string path = f.Path(input_key) + "[" + std::to_string(i) + "]";
        if (item.is_number() || item.is_array()) {
          return f.Fail(input_key, "token ids are not supported; send the input as text");
        }
        if (!item.is_string()) return ctx.Fail(path, "must be a string, got " + Show(item));
        r.inputs.push_back(item.get<std::string>());
      }
    } else {
      return f.Fail(input_key, endpoint == Endpoint::kOllamaEmbeddings
                                   ? "must be a string, got " + Show(*in)
                                   : "must be a string or a list of strings, got " + Show(*in));
    }
  } else if (!ollama) {
    return f.Fail(input_key, "is required");
  }
  if (!ollama) {
    if (r.inputs.empty()) return f.Fail(input_key, "must not be an empty list");
    for (size_t i = 0; i < r.inputs.size(); ++i) {
      if (r.inputs[i].empty()) {
        return ctx.Fail(r.input_is_list ? f.Path(input_key) + "[" + std::to_string(i) + "]" : f.Path(input_key),
                        "must not be empty");
      }
    }
    std::string format = "float";
    RETURN_IF_ERROR(f.String("encoding_format", 16, &format));
    if (format == "base64") {
      r.encoding = EmbeddingEncoding::kBase64;
    } else if (format != "float") {
      return f.Fail("encoding_format", "must be \"float\" or \"base64\", got " + Show(json(format)));
    }
    RETURN_IF_ERROR(f.String("user", kMaxUserBytes, &r.user));
  } else {
    r.truncate = endpoint == Endpoint::kOllamaEmbed;
    if (endpoint == Endpoint::kOllamaEmbed) RETURN_IF_ERROR(f.Bool("truncate", &r.truncate));
    if (const json* ka = f.Find("keep_alive")) RETURN_IF_ERROR(ReadKeepAlive(ctx, *ka, &r.keep_alive));
    RETURN_IF_ERROR(ReadEmbeddingOptions(f, &r));
  }
  RETURN_IF_ERROR(f.Int("priority", -kMaxPriority, kMaxPriority, &r.priority));
  RETURN_IF_ERROR(f.Float("timeout", kMinTimeoutSeconds, kMaxTimeoutSeconds, &r.timeout));
  RETURN_IF_ERROR(f.Unsupported("dimensions"));
  f.IgnoreRest();
  return r;
}

}  // namespace llmasos::api
