#include "shell/session.h"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdlib>

#include <sys/stat.h>

#include "services/manager/loader.h"
#include "model/gguf/gguf.h"
#include "model/train/adapter.h"
#include "services/registry/reference.h"
#include "services/registry/registry.h"

namespace llmasos::shell {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

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

StatusOr<std::string> ResolveModelPath(const std::string& model, std::string* label) {
  std::string shown;
  if (label == nullptr) label = &shown;
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

Status ParseLoraSpec(const std::string& spec, std::string* ref, float* scale) {
  *ref = spec;
  *scale = 1.0f;
  const size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon + 1 == spec.size()) return OkStatus();
  const std::string tail = spec.substr(colon + 1);
  char* end = nullptr;
  const float v = std::strtof(tail.c_str(), &end);
  if (end != tail.c_str() + tail.size()) return OkStatus();  // a tag, not a scale
  if (!std::isfinite(v)) return InvalidArgumentError("--lora '" + spec + "': the scale is not finite");
  *ref = spec.substr(0, colon);
  *scale = v;
  return OkStatus();
}

StatusOr<std::unique_ptr<Session>> Session::Load(const LoadOptions& options) {
  std::unique_ptr<Session> s(new Session());
  ASSIGN_OR_RETURN(std::string path, ResolveModelPath(options.model_path, &s->model_label_));
  ASSIGN_OR_RETURN(manager::ModelFiles files, manager::LoadModelFile(path, "'" + s->model_label_ + "'"));
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
  size_t threads = options.num_threads == 0 ? ThreadPool::DefaultNumThreads() : options.num_threads;
  s->pool_ = std::make_unique<ThreadPool>(threads);
  arch::ContextOptions copt;
  copt.max_tokens = options.context_tokens;
  copt.max_batch_tokens = options.batch_tokens;
  copt.float_activations = options.float_activations;
  ASSIGN_OR_RETURN(s->context_, arch::Context::Create(*s->model_, *s->pool_, copt));
  return s;
}

StatusOr<size_t> Session::Prefill(const std::vector<TokenId>& prompt, std::vector<float>* logits) {
  if (prompt.empty()) return InvalidArgumentError("the prompt is empty");
  size_t common = 0;
  while (common < cached_.size() && common < prompt.size() && cached_[common] == prompt[common]) {
    ++common;
  }
  // At least the last prompt token is evaluated: its logits are needed.
  common = std::min(common, prompt.size() - 1);
  context_->Truncate(common);
  cached_.resize(common);
  logits->resize(model_->config().vocab_size);
  std::span<const TokenId> rest(prompt.data() + common, prompt.size() - common);
  RETURN_IF_ERROR(context_->Forward(rest, /*all_logits=*/false, logits->data()));
  cached_.insert(cached_.end(), rest.begin(), rest.end());
  return common;
}

Status Session::Append(TokenId token, std::vector<float>* logits) {
  logits->resize(model_->config().vocab_size);
  RETURN_IF_ERROR(context_->Forward(std::span<const TokenId>(&token, 1), false, logits->data()));
  cached_.push_back(token);
  return OkStatus();
}

StatusOr<GenerateResult> Generate(Session& session, const std::vector<TokenId>& prompt,
                                  const GenerateOptions& options,
                                  const std::function<bool(std::string_view)>& on_text) {
  RETURN_IF_ERROR(sampling::ValidateSamplingParams(options.sampling));
  GenerateResult result;
  result.prompt_tokens = prompt.size();
  std::vector<float> logits;
  auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(result.reused_tokens, session.Prefill(prompt, &logits));
  result.prompt_seconds = SecondsSince(start);

  sampling::Sampler sampler(options.sampling);
  for (TokenId t : prompt) sampler.Accept(t);
  tokenizer::IncrementalDecoder decoder(session.tokenizer());
  sampling::StopMatcher stops(options.stop);
  const arch::Context& ctx = session.context();
  bool keep_going = true;
  auto emit = [&](const std::string& text) {
    if (text.empty() || !keep_going) return;
    result.text += text;
    keep_going = on_text(text);
  };

  start = std::chrono::steady_clock::now();
  for (;;) {
    if (options.max_tokens >= 0 && static_cast<int64_t>(result.tokens.size()) >= options.max_tokens) {
      result.finish_reason = "length";
      break;
    }
    TokenId token = sampler.Sample(logits);
    sampler.Accept(token);
    if (session.tokenizer().IsEog(token)) {
      result.finish_reason = "stop";
      break;
    }
    result.tokens.push_back(token);
    emit(stops.Push(decoder.Push(token)));
    if (stops.stopped()) {
      result.finish_reason = "stop";
      break;
    }
    if (!keep_going) {
      result.finish_reason = "cancelled";
      break;
    }
    if (ctx.num_tokens() >= ctx.max_tokens()) {
      result.finish_reason = "context";
      break;
    }
    RETURN_IF_ERROR(session.Append(token, &logits));
  }
  if (!stops.stopped()) emit(stops.Push(decoder.Flush()) + stops.Flush());
  result.generate_seconds = SecondsSince(start);
  return result;
}

}  // namespace llmasos::shell
