#include "shell/session.h"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <sys/stat.h>

#include "services/manager/adapter_cache.h"
#include "services/manager/loader.h"
#include "model/gguf/gguf.h"
#include "model/train/adapter.h"
#include "services/registry/blob_store.h"
#include "services/registry/reference.h"
#include "services/registry/registry.h"

namespace llmasos::shell {
std::string DefaultModelPath() {
  std::string home;
  if (const char* env = std::getenv("LLMASOS_HOME"); env != nullptr && *env != '\0') {
    home = env;
  } else if (const char* user_home = std::getenv("HOME"); user_home != nullptr) {
    home = std::string(user_home) + "/.llmasos";
  } else {
    home = ".llmasos";
  }
  return home + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

StatusOr<std::string> ResolveModelPath(const std::string& model, std::string* label,
                                       std::optional<registry::ResolvedModel>* from_registry) {
  std::string shown;
  if (label == nullptr) label = &shown;
  if (from_registry != nullptr) from_registry->reset();
  struct stat st;
  if (!model.empty() && ::stat(model.c_str(), &st) == 0) {
    *label = model;
    return model;
  }
  const bool is_default = model.empty();
  auto looks_like_path = [](std::string_view m) {
    return m.starts_with("/") || m.starts_with("./") || m.starts_with("../") ||
           m.starts_with("~") || m.ends_with(".gguf");
  };
  if (!is_default && looks_like_path(model)) {
    return NotFoundError("model file '" + model + "' does not exist");
  }
  const std::string ref = is_default ? std::string(kDefaultModelReference) : model;
  auto parsed = registry::ParseReference(ref);
  if (!parsed.ok()) {
    return NotFoundError("'" + model + "' is neither an existing file nor a registry reference (" +
                         parsed.status().message() + ")");
  }
  registry::OpenOptions open;
  open.create = false;  // resolving must not create a registry
  open.recover = false;  // nor delete anything: recovery belongs to the registry commands
  auto reg = registry::Registry::Open(registry::DefaultHome(), open);
  StatusOr<registry::ResolvedModel> resolved =
      reg.ok() ? (*reg)->Resolve(ref) : StatusOr<registry::ResolvedModel>(reg.status());
  if (resolved.ok()) {
    *label = ref + " (" + resolved->manifest.name + "@" + resolved->manifest.version + ")";
    if (from_registry != nullptr) *from_registry = *resolved;
    return resolved->blob_path;
  }
  if (is_default && resolved.status().code() == StatusCode::kNotFound) {
    // Before scripts/setup imported it, the default model was a plain file.
    std::string path = DefaultModelPath();
    if (::stat(path.c_str(), &st) == 0) {
      *label = path;
      return path;
    }
    return NotFoundError("no model given and the default model is not installed (" +
                         resolved.status().message() + "; nor is '" + path +
                         "' present); run scripts/setup or give a .gguf path or a registry reference");
  }
  return Status(resolved.status().code(),
                "'" + ref + "' is not an existing file, and as a registry reference: " +
                    resolved.status().message());
}

StatusOr<ModelSource> ResolveModelSource(const std::string& model) {
  return jobs::ResolveModelSource(model.empty() ? std::string(kDefaultModelReference) : model);
}

Status RegisterMadeModel(const std::string& file, const std::string& name, const std::string& version,
                         const std::string& command, const registry::TrainingLineage& training,
                         const std::string& what) {
  auto m = jobs::RegisterMadeModel(file, name, version, command, training, what);
  if (!m.ok()) return m.status();
  std::printf("registered   %s@%s %s\n", m->name.c_str(), m->version.c_str(), m->digest.c_str());
  return OkStatus();
}

Status ParseLoraSpec(const std::string& spec, std::string* ref, float* scale) {
  return manager::SplitAdapterScale(spec, ref, scale).Annotate("--lora");
}

StatusOr<std::unique_ptr<Session>> Session::Load(const LoadOptions& options) {
  std::unique_ptr<Session> s(new Session());
  s->options_ = options;
  std::optional<registry::ResolvedModel> resolved;
  ASSIGN_OR_RETURN(std::string path, ResolveModelPath(options.model_path, &s->model_label_, &resolved));
  size_t threads = options.num_threads == 0 ? ThreadPool::DefaultNumThreads() : options.num_threads;
  s->pool_ = std::make_unique<ThreadPool>(threads);  // first: the repack runs on it
  arch::LoadOptions load;
  load.pool = s->pool_.get();
  if (resolved) manager::UsePackedBlob(*resolved, &load);  // a plain file repacks every load
  ASSIGN_OR_RETURN(manager::ModelFiles files, manager::LoadModelFile(path, "'" + s->model_label_ + "'", load));
  s->model_ = std::move(files.model);
  s->tokenizer_ = std::move(files.tokenizer);
  for (const std::string& spec : options.loras) {
    std::string ref;
    float scale = 1.0f;
    RETURN_IF_ERROR(ParseLoraSpec(spec, &ref, &scale));
    std::string label;
    auto lora_path = ResolveModelPath(ref, &label);
    if (!lora_path.ok()) return lora_path.status().Annotate("--lora");
    ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(*lora_path));
    auto adapter = train::ReadLoraAdapter(*file, s->model_->config());
    if (!adapter.ok()) return adapter.status().Annotate("--lora '" + label + "'");
    train::MergeLoraAdapter(*adapter, scale, s->model_.get());
    s->model_label_ += " + " + label + (scale != 1.0f ? " x" + std::to_string(scale) : "");
  }
  if (options.with_context) {
    arch::ContextOptions copt;
    copt.max_tokens = options.context_tokens;
    copt.max_batch_tokens = options.batch_tokens;
    copt.float_activations = options.float_activations;
    copt.cache_type_k = options.cache_type_k;
    copt.cache_type_v = options.cache_type_v;
    ASSIGN_OR_RETURN(s->context_, arch::Context::Create(*s->model_, *s->pool_, copt));
  }
  return s;
}

StatusOr<kernel::Engine*> Session::OneProcessEngine() {
  if (engine_ != nullptr) return engine_.get();
  const arch::ModelConfig& c = model_->config();
  kernel::EngineOptions o;
  o.max_context = std::min(options_.context_tokens, c.context_length);
  o.scheduler.max_running = 1;
  o.scheduler.max_batch_tokens = options_.batch_tokens;
  o.scheduler.max_prefill_chunk_tokens = options_.batch_tokens;
  o.float_activations = options_.float_activations;
  o.cache_type_k = options_.cache_type_k;
  o.cache_type_v = options_.cache_type_v;
  // Room for one whole context, as the Context of the direct commands has.
  RETURN_IF_ERROR(cpu::CheckKvTypesFit(o.cache_type_k, o.cache_type_v, c.head_dim));
  const size_t num_blocks = (o.max_context + o.kv_block_tokens - 1) / o.kv_block_tokens;
  o.kv_budget_bytes = num_blocks * *kernel::KvBlockBytes(c.num_layers, c.kv_dim(), o.kv_block_tokens,
                                                         o.cache_type_k, o.cache_type_v);
  ASSIGN_OR_RETURN(engine_, kernel::Engine::Create(*model_, *tokenizer_, *pool_, o, RealClock()));
  return engine_.get();
}

StatusOr<GenerateResult> Generate(Session& session, const std::vector<TokenId>& prompt,
                                  const GenerateOptions& options,
                                  const std::function<bool(std::string_view)>& on_text) {
  ASSIGN_OR_RETURN(kernel::Engine* engine, session.OneProcessEngine());
  GenerateResult result;
  result.prompt_tokens = prompt.size();
  if (options.max_tokens == 0) {
    result.finish_reason = "length";
    return result;
  }
  const size_t context = std::min(session.options().context_tokens, session.model().config().context_length);
  if (prompt.size() >= context) {
    return InvalidArgumentError("the prompt (" + std::to_string(prompt.size()) +
                                " tokens) leaves no room to generate in the context of " +
                                std::to_string(context) + " tokens");
  }
  // Without -n, or with more than fits, generation runs until the context is full.
  const size_t room = context - prompt.size();
  const bool until_full = options.max_tokens < 0 || static_cast<size_t>(options.max_tokens) > room;
  kernel::ProcessSpec spec;
  spec.prompt = prompt;
  spec.sampling = options.sampling;
  spec.stop = options.stop;
  spec.limits.max_tokens = static_cast<int32_t>(until_full ? room : static_cast<size_t>(options.max_tokens));
  ASSIGN_OR_RETURN(const kernel::ProcessId id, engine->Submit(std::move(spec)));

  bool keep_going = true;
  auto emit = [&](const std::string& text) {
    if (text.empty() || !keep_going) return;
    result.text += text;
    keep_going = on_text(text);
  };
  engine->SetOutputCallback([&](kernel::ProcessId from, const kernel::TokenOutput& out) {
    if (from == id) emit(out.text);
  });
  Status failed;
  while (engine->HasWork()) {
    StatusOr<kernel::StepReport> step = engine->Step();
    if (!step.ok()) {
      failed = step.status();
      (void)engine->End(id, kernel::EndReason::kError, failed.ToString());
      break;
    }
    if (!keep_going) (void)engine->Cancel(id);  // ended already if that token was its last
  }
  engine->SetOutputCallback(nullptr);
  std::vector<kernel::EndedProcess> ended = engine->TakeEnded();
  if (!failed.ok()) return failed;
  CHECK_EQ(ended.size(), 1u);
  const kernel::Process& p = *ended[0].process;
  emit(ended[0].text);

  // As the user counts them: an end-of-generation token is not part of the answer.
  std::span<const TokenId> generated = p.generated();
  if (p.end_reason() == kernel::EndReason::kEndOfGeneration) generated = generated.first(generated.size() - 1);
  result.tokens.assign(generated.begin(), generated.end());
  result.reused_tokens = static_cast<size_t>(p.accounting().num_prefix_cached_tokens);
  const kernel::ProcessAccounting& a = p.accounting();
  const TimePoint first = a.first_token_at.value_or(*a.ended_at);
  result.prompt_seconds = ToSeconds(first - a.submitted_at);
  result.generate_seconds = ToSeconds(*a.ended_at - first);
  switch (p.end_reason()) {
    case kernel::EndReason::kEndOfGeneration:
    case kernel::EndReason::kStopString: result.finish_reason = "stop"; break;
    case kernel::EndReason::kLength: result.finish_reason = until_full ? "context" : "length"; break;
    case kernel::EndReason::kCancelled: result.finish_reason = "cancelled"; break;
    default: result.finish_reason = std::string(kernel::EndReasonName(p.end_reason())); break;
  }
  return result;
}

StatusOr<EmbedResult> Embed(Session& session, const std::vector<TokenId>& tokens) {
  ASSIGN_OR_RETURN(kernel::Engine* engine, session.OneProcessEngine());
  kernel::ProcessSpec spec;
  spec.kind = kernel::ProcessKind::kEmbed;
  spec.prompt = tokens;
  spec.limits.max_tokens = 1;
  ASSIGN_OR_RETURN(const kernel::ProcessId id, engine->Submit(std::move(spec)));
  while (engine->HasWork()) {
    StatusOr<kernel::StepReport> step = engine->Step();
    if (!step.ok()) {
      (void)engine->End(id, kernel::EndReason::kError, step.status().ToString());
      (void)engine->TakeEnded();
      return step.status();
    }
  }
  std::vector<kernel::EndedProcess> ended = engine->TakeEnded();
  CHECK_EQ(ended.size(), 1u);
  if (ended[0].embedding.empty()) {
    return InternalError("the embedding process ended (" +
                         std::string(kernel::EndReasonName(ended[0].process->end_reason())) + ") without a vector");
  }
  return EmbedResult{std::move(ended[0].embedding), session.model().config().pooling};
}

}  // namespace llmasos::shell
