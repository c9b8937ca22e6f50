// What the shell's commands share: a loaded model with its tokenizer, a thread pool, and a
// single-sequence generation loop over a Context (prompt-prefix reuse, sampling, incremental
// detokenization, stop strings). The daemon will run generation through the kernel's
// scheduler instead; this is the one-process path used by run, chat, perplexity and bench.
#ifndef LLMASOS_SHELL_SESSION_H_
#define LLMASOS_SHELL_SESSION_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/arch/llama_context.h"
#include "model/arch/llama_model.h"
#include "model/sampling/sampler.h"
#include "model/tokenizer/tokenizer.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace llmasos::shell {

using tokenizer::TokenId;

// The default model's path: $LLMASOS_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf, with
// LLMASOS_HOME defaulting to ~/.llmasos.
std::string DefaultModelPath();

// The default model in the registry (scripts/setup imports it under this reference).
inline constexpr std::string_view kDefaultModelReference = "smollm2-135m-instruct:q4_1";

// A model argument as a file to load. An existing file is used as is; otherwise the argument
// is resolved as a registry reference (registry/reference.h) to its blob. Empty means the
// default model: kDefaultModelReference if the registry has it, else DefaultModelPath().
// Errors say why the argument is neither. `*label` (optional) receives what to show the
// user: the path, or "reference (name@version)".
StatusOr<std::string> ResolveModelPath(const std::string& model, std::string* label = nullptr);

struct LoadOptions {
  std::string model_path;  // a .gguf path or a registry reference; "" = the default model
  size_t num_threads = 0;     // 0: all hardware threads
  size_t context_tokens = 4096;
  size_t batch_tokens = 512;
  bool float_activations = false;  // see arch::ContextOptions
  // LoRA adapters merged into the weights at load: "FILE|REF[:scale]" each (scale default 1).
  std::vector<std::string> loras;
};

// Parses "FILE|REF[:scale]": the text after the last ':' is the scale when it is a number
// (so "name:tag" stays a reference). InvalidArgument for a scale that is not finite.
Status ParseLoraSpec(const std::string& spec, std::string* ref, float* scale);

// A model, its tokenizer, a thread pool and one Context, ready to generate.
class Session {
 public:
  static StatusOr<std::unique_ptr<Session>> Load(const LoadOptions& options);

  const arch::Model& model() const { return *model_; }
  // The model as the user named it, with the registry version when it came from there.
  const std::string& model_label() const { return model_label_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  arch::Context& context() { return *context_; }
  ThreadPool& pool() { return *pool_; }

  // Makes the cache hold exactly `prompt` and returns the logits [vocab] of its last token.
  // Reuses the longest common prefix already in the cache, evaluates only the rest, and
  // returns how many prompt tokens were reused.
  StatusOr<size_t> Prefill(const std::vector<TokenId>& prompt, std::vector<float>* logits);
  // Appends one token and returns the logits after it.
  Status Append(TokenId token, std::vector<float>* logits);
  // Tokens currently in the cache.
  const std::vector<TokenId>& cached_tokens() const { return cached_; }

 private:
  Session() = default;

  std::string model_label_;
  std::unique_ptr<arch::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<arch::Context> context_;
  std::vector<TokenId> cached_;
};

struct GenerateOptions {
  sampling::SamplingParams sampling;
  int64_t max_tokens = -1;  // -1: until an end-of-generation token or the context is full
  std::vector<std::string> stop;
};

struct GenerateResult {
  std::string text;
  std::vector<TokenId> tokens;
  size_t prompt_tokens = 0;
  size_t reused_tokens = 0;  // prompt tokens whose KV was already cached
  double prompt_seconds = 0;
  double generate_seconds = 0;
  std::string finish_reason;  // "stop" (EOG token or stop string), "length" (max_tokens), "context"
};

// Generates a continuation of `prompt`. on_text receives text as it becomes final (never a
// partial UTF-8 character, never part of a stop string); returning false stops generation.
StatusOr<GenerateResult> Generate(Session& session, const std::vector<TokenId>& prompt,
                                  const GenerateOptions& options,
                                  const std::function<bool(std::string_view)>& on_text);

}  // namespace llmasos::shell

#endif  // LLMASOS_SHELL_SESSION_H_
