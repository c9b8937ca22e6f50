// What the shell's commands share: a loaded model with its tokenizer, a thread pool, a
// single-sequence Context for direct forward passes (perplexity, bench, eval), and Generate:
// one process through a one-process kernel Engine (the same output pipeline, scheduler and
// paged KV memory as the daemon and `llmasos batch`; its prefix cache reuses a chat's earlier
// turns), as `run` and `chat` use it.
#ifndef LLMASOS_SHELL_SESSION_H_
#define LLMASOS_SHELL_SESSION_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/engine.h"
#include "model/arch/llama_context.h"
#include "model/arch/llama_model.h"
#include "model/sampling/sampler.h"
#include "model/tokenizer/tokenizer.h"
#include "services/jobs/finetune.h"
#include "services/registry/manifest.h"
#include "services/registry/registry.h"
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
StatusOr<std::string> ResolveModelPath(const std::string& model, std::string* label = nullptr,
                                       std::optional<registry::ResolvedModel>* from_registry = nullptr);

// A model argument with what lineage records of it (jobs::ResolveModelSource), for commands
// that make a new model from it (finetune, merge). Empty means kDefaultModelReference.
using ModelSource = jobs::ModelSource;
StatusOr<ModelSource> ResolveModelSource(const std::string& model);

// jobs::RegisterMadeModel, then prints the "registered   name@version digest" line.
Status RegisterMadeModel(const std::string& file, const std::string& name, const std::string& version,
                         const std::string& command, const registry::TrainingLineage& training,
                         const std::string& what);

struct LoadOptions {
  std::string model_path;  // a .gguf path or a registry reference; "" = the default model
  size_t num_threads = 0;     // 0: all hardware threads
  size_t context_tokens = 4096;
  size_t batch_tokens = 512;
  bool float_activations = false;  // see arch::ContextOptions
  // KV cache element types (the Context's and the one-process engine's).
  cpu::KvType cache_type_k = cpu::KvType::kF16;
  cpu::KvType cache_type_v = cpu::KvType::kF16;
  // LoRA adapters merged into the weights at load: "FILE|REF[:scale]" each (scale default 1).
  std::vector<std::string> loras;
  // Allocate the Context (its KV cache holds context_tokens). Commands that generate through
  // an engine (run, chat, batch) do without.
  bool with_context = true;
};

// Parses "FILE|REF[:scale]": the text after the last ':' is the scale when it is a number
// (so "name:tag" stays a reference). InvalidArgument for a scale that is not finite.
Status ParseLoraSpec(const std::string& spec, std::string* ref, float* scale);

// A model, its tokenizer, a thread pool and (with_context) one Context.
class Session {
 public:
  static StatusOr<std::unique_ptr<Session>> Load(const LoadOptions& options);

  const arch::Model& model() const { return *model_; }
  // The model as the user named it, with the registry version when it came from there.
  const std::string& model_label() const { return model_label_; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  // REQUIRES: loaded with_context.
  arch::Context& context() {
    CHECK(context_ != nullptr) << "the session was loaded without a Context";
    return *context_;
  }
  ThreadPool& pool() { return *pool_; }
  const LoadOptions& options() const { return options_; }

  // The one-process engine Generate runs on, created on first use: context_tokens of KV
  // (the model's trained context at most), batch_tokens per forward pass. It keeps the KV of
  // finished processes in its prefix cache, so a chat's next turn reuses the earlier ones.
  StatusOr<kernel::Engine*> OneProcessEngine();

 private:
  Session() = default;

  LoadOptions options_;
  std::string model_label_;
  std::unique_ptr<arch::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<arch::Context> context_;
  std::unique_ptr<kernel::Engine> engine_;
};

// The shell's seed when none is given: the same command gives the same output.
using sampling::kDefaultSeed;

struct GenerateOptions {
  GenerateOptions() { sampling.seed = kDefaultSeed; }
  sampling::SamplingParams sampling;
  int64_t max_tokens = -1;  // -1: until an end-of-generation token or the context is full
  std::vector<std::string> stop;
};

struct GenerateResult {
  std::string text;
  std::vector<TokenId> tokens;
  size_t prompt_tokens = 0;
  size_t reused_tokens = 0;  // prompt tokens whose KV came from the prefix cache
  double prompt_seconds = 0;
  double generate_seconds = 0;
  // "stop" (EOG token or stop string), "length" (max_tokens), "context" (the context is
  // full), "cancelled" (on_text returned false).
  std::string finish_reason;
};

// Generates a continuation of `prompt` as one process on session.OneProcessEngine(). on_text
// receives text as it becomes final (never a partial UTF-8 character, never part of a stop
// string); returning false cancels the process. InvalidArgument for a prompt that leaves no
// room in the context, or bad sampling parameters.
StatusOr<GenerateResult> Generate(Session& session, const std::vector<TokenId>& prompt,
                                  const GenerateOptions& options,
                                  const std::function<bool(std::string_view)>& on_text);

struct EmbedResult {
  std::vector<float> embedding;  // [embd], L2-normalised
  arch::Pooling pooling = arch::Pooling::kMean;
};

// The embedding of `tokens`: one embedding process (kernel::ProcessKind::kEmbed) on
// session.OneProcessEngine(). InvalidArgument for an empty or too long input.
StatusOr<EmbedResult> Embed(Session& session, const std::vector<TokenId>& tokens);

}  // namespace llmasos::shell

#endif  // LLMASOS_SHELL_SESSION_H_
