// The one parser of request fields: turns the JSON body of an OpenAI or Ollama request (and a
// line of `llmasos batch`'s input) into a validated plain struct, and a generation request plus
// its tokenized prompt into a kernel::ProcessSpec.
//
// What it guarantees (docs/api.md lists every field):
//   - A body is checked before nlohmann parses it: valid UTF-8, no lone surrogate escape
//     (\ud800), nesting at most kMaxJsonDepth deep; each failure has its own message.
//   - Every number is range-checked as a double before it is converted to an integer type, so
//     `"priority": 1e308` or `"top_k": 1e20` is an error, never undefined behaviour.
//   - A parameter the project does not support is an InvalidArgument naming it when it asks for
//     something (a neutral value such as `"tools": []` or `"echo": false` is accepted); unknown
//     top-level fields are ignored, as OpenAI does, and listed in `ignored_fields`.
//   - Every error is kInvalidArgument; its message starts with the field's path
//     ("messages[2].content: ...", "options.top_k: ...") and, when the caller passes
//     `error_param`, the path alone is stored there (empty for errors about the whole body), for
//     the `param` of an OpenAI error body.
//
// Defaults are not filled in here: a field the request leaves out stays std::nullopt, and
// ToProcessSpec takes the server's (or the command line's) defaults for it.
//
// Thread safety: pure functions over values.
#ifndef LLMASOS_API_REQUEST_H_
#define LLMASOS_API_REQUEST_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/json_body.h"
#include "kernel/process.h"
#include "model/chat/chat_template.h"
#include "util/status.h"

namespace llmasos::api {

// A process's priority, in requests and in a renice: -kMaxPriority..kMaxPriority.
inline constexpr int64_t kMaxPriority = 1000;

enum class Endpoint {
  kCompletions,        // POST /v1/completions
  kChatCompletions,    // POST /v1/chat/completions
  kEmbeddings,         // POST /v1/embeddings
  kOllamaGenerate,     // POST /api/generate
  kOllamaChat,         // POST /api/chat
  kOllamaEmbed,        // POST /api/embed
  kOllamaEmbeddings,   // POST /api/embeddings (Ollama's older embedding endpoint)
  kBatchLine,          // one line of `llmasos batch`'s input file
};

// "/v1/chat/completions", ... ("batch line" for kBatchLine).
std::string_view EndpointPath(Endpoint endpoint);
bool IsOllama(Endpoint endpoint);
bool IsEmbedding(Endpoint endpoint);

// Most completions one request may ask for (`n`).
inline constexpr int32_t kMaxChoices = 16;
// Most stop strings, and the longest one in bytes.
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopBytes = 1024;
// Most inputs in one embedding request (OpenAI's limit).
inline constexpr size_t kMaxEmbeddingInputs = 2048;

struct ParsedGeneration {
  Endpoint endpoint = Endpoint::kChatCompletions;
  std::string model;  // the model reference as sent, 1..256 bytes; empty only for kBatchLine

  // The prompt. use_chat_template: `messages` (roles "system", "user", "assistant"; text parts
  // joined with "\n") are rendered with the model's template; else `prompt` is fed as is.
  // A non-raw Ollama /api/generate or batch prompt arrives here as messages ([system,] user).
  bool use_chat_template = false;
  std::vector<chat::Message> messages;
  std::string prompt;
  // Ollama only: no prompt and no messages, which Ollama answers by loading the model and
  // generating nothing.
  bool load_only = false;

  bool stream = false;         // Ollama's default is true, OpenAI's false
  bool include_usage = false;  // OpenAI stream_options.include_usage (only with stream)

  // Left out: the defaults ToProcessSpec is given. Ranges as docs/api.md says.
  std::optional<int32_t> max_tokens;  // >= 1; Ollama num_predict -1/-2 arrive as nullopt
  std::optional<float> temperature;   // 0..2 (OpenAI), 0..100 (Ollama, batch); 0 is greedy
  std::optional<float> top_p;         // 0..1; 0 keeps only the most likely token
  std::optional<int32_t> top_k;       // 0..1000000; 0 disables
  std::optional<float> min_p;         // 0..1
  std::optional<float> repeat_penalty;     // (0, 10]
  std::optional<int32_t> repeat_last_n;    // Ollama: -1 (the whole context) .. 1000000
  std::optional<float> presence_penalty;   // -2..2
  std::optional<float> frequency_penalty;  // -2..2
  // How presence and frequency penalties count earlier tokens: kOpenAi on OpenAI's /v1
  // endpoints, kLlamaCpp (Ollama, the CLI, batch) elsewhere.
  sampling::PenaltyMode penalty_mode = sampling::PenaltyMode::kLlamaCpp;
  std::optional<uint64_t> seed;  // left out or -1: SpecDefaults::sampling.seed
  std::vector<std::string> stop;  // at most kMaxStopStrings, each 1..kMaxStopBytes bytes
  int32_t n = 1;                  // 1..kMaxChoices
  std::vector<std::pair<sampling::TokenId, float>> logit_bias;  // sorted by token, unique; -100..100
  bool logprobs = false;
  int32_t top_logprobs = 0;  // 0..20 (0..5 on /v1/completions); only with logprobs
  std::string user;          // OpenAI `user`, up to 256 bytes
  std::optional<int32_t> priority;  // extension: -1000..1000, higher runs first
  std::optional<std::string> tenant;  // kBatchLine only ("tenant")
  // Extension: seconds (0, 86400] the request may take; past it its processes end with
  // EndReason::kDeadline (the daemon also reads X-Request-Timeout). Not on batch lines.
  std::optional<float> timeout;
  // Ollama keep_alive: how long the model stays loaded after this request; negative: forever.
  std::optional<std::chrono::milliseconds> keep_alive;
  std::optional<int32_t> num_ctx;  // Ollama options.num_ctx: 1..1048576 tokens

  // Fields accepted and ignored, with their paths ("service_tier", "options.num_gpu",
  // "messages[0].name"), so the caller can log or warn.
  std::vector<std::string> ignored_fields;
};

enum class EmbeddingEncoding { kFloat, kBase64 };

// The range of a request's timeout, in seconds (the "timeout" field, X-Request-Timeout).
inline constexpr double kMinTimeoutSeconds = 0.001;
inline constexpr double kMaxTimeoutSeconds = 86400;

struct ParsedEmbedding {
  Endpoint endpoint = Endpoint::kEmbeddings;
  std::string model;
  // The texts to embed. /v1/embeddings: 1..kMaxEmbeddingInputs non-empty strings; Ollama:
  // may be empty (/api/embed with no input loads the model).
  std::vector<std::string> inputs;
  // Whether `input` was a list (OpenAI answers a list either way; kept for logging and for
  // Ollama's /api/embeddings, which takes one `prompt`).
  bool input_is_list = false;
  EmbeddingEncoding encoding = EmbeddingEncoding::kFloat;
  // Ollama /api/embed `truncate` (default true): cut an input longer than the context to fit;
  // false, and always on /v1/embeddings: such an input is an error.
  bool truncate = false;
  std::string user;
  std::optional<int32_t> priority;
  std::optional<float> timeout;  // as ParsedGeneration::timeout
  std::optional<std::chrono::milliseconds> keep_alive;
  std::optional<int32_t> num_ctx;
  std::vector<std::string> ignored_fields;
};

// Parses a request body for a generation endpoint (not an embedding one). On error, the
// field's path goes to *error_param when error_param is non-null.
StatusOr<ParsedGeneration> ParseGeneration(Endpoint endpoint, std::string_view body,
                                                   std::string* error_param = nullptr);
// The same from an already parsed object (`llmasos batch` reads `id` itself first).
StatusOr<ParsedGeneration> ParseGenerationJson(Endpoint endpoint, const nlohmann::json& body,
                                               std::string* error_param = nullptr);
// A batch job's "options" object: the sampling fields of a batch line (max_tokens,
// temperature, top_k, top_p, min_p, repeat_penalty, presence_penalty, frequency_penalty,
// seed, stop), with a line's ranges, as defaults for every line. Any other field is an error.
// Errors start with "options.FIELD", which goes to *error_param.
StatusOr<ParsedGeneration> ParseBatchOptions(const nlohmann::json& object, std::string* error_param = nullptr);
// Parses a request body for an embedding endpoint.
StatusOr<ParsedEmbedding> ParseEmbedding(Endpoint endpoint, std::string_view body,
                                                 std::string* error_param = nullptr);

// What the server (or the command line) uses where a request says nothing, and the model's
// limits the request is checked against.
struct SpecDefaults {
  sampling::SamplingParams sampling;
  // Generated tokens when the request gives no max_tokens; <= 0: until the context is full.
  int32_t max_tokens = -1;
  size_t context_tokens = 0;  // tokens one process may hold, prompt included; > 0
  size_t vocab_size = 0;      // logit_bias token ids must be below it; > 0
  std::string tenant = "default";
};

// Sets on *params the sampling fields `request` gives (temperature, top_k, top_p, min_p, the
// penalties, seed), leaving the others; a repeat_last_n of -1 becomes `context_tokens`.
void ApplySamplingFields(const ParsedGeneration& request, size_t context_tokens, sampling::SamplingParams* params);

// The kernel's ProcessSpec for `request` with its tokenized `prompt` (the caller renders the
// chat template and encodes). InvalidArgument naming the field (and *error_param, as above)
// for: an empty prompt; a prompt that leaves no room in the context (both numbers in the
// message); max_tokens that run past the context; a logit_bias token outside the vocabulary;
// and a field the kernel cannot carry yet (named, never dropped). Stop strings, `n` and
// `stream` are not part of a ProcessSpec: the caller passes `request.stop` with the spec and
// starts `request.n` processes.
StatusOr<kernel::ProcessSpec> ToProcessSpec(const ParsedGeneration& request,
                                            std::vector<sampling::TokenId> prompt,
                                            const SpecDefaults& defaults,
                                            std::string* error_param = nullptr);

}  // namespace llmasos::api

#endif  // LLMASOS_API_REQUEST_H_
