#include "services/jobs/finetune.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include "model/chat/chat_template.h"
#include "model/chat/conversation.h"
#include "model/train/adapter.h"
#include "model/train/dataset.h"
#include "services/manager/loader.h"
#include "services/registry/blob_store.h"
#include "services/registry/registry.h"
#include "util/file.h"
#include "util/thread_pool.h"

namespace llmasos::jobs {
namespace {

using nlohmann::json;

constexpr size_t kMaxDataBytes = size_t{1} << 30;
constexpr size_t kMaxTextBytes = 4096;

std::string Fingerprint(const ModelSource& base, const std::string& data_digest, const json& params) {
  registry::Sha256 h;
  const std::string text = base.digest + "\n" + data_digest + "\n" + params.dump();
  h.Update({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  return h.FinishDigest();
}

// Reads the fields of the spec's JSON object, each once, with errors naming the field.
class SpecReader {
 public:
  SpecReader(const json& j, std::string* bad_field) : j_(j), bad_field_(bad_field) {}

  Status Fail(const std::string& key, const std::string& what) { return SpecFieldError(bad_field_, key, what); }
  const json* Find(const std::string& key) {
    known_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  Status String(const std::string& key, std::string* out, bool required = false) {
    const json* v = Find(key);
    if (v == nullptr) return required ? Fail(key, "is required") : OkStatus();
    if (!v->is_string()) return Fail(key, "must be a string");
    const std::string& s = v->get_ref<const std::string&>();
    if (s.size() > kMaxTextBytes) return Fail(key, "is longer than " + std::to_string(kMaxTextBytes) + " bytes");
    if (required && s.empty()) return Fail(key, "must not be empty");
    if (s.find('\0') != std::string::npos) return Fail(key, "holds a NUL byte");
    *out = s;
    return OkStatus();
  }
  template <typename T>
  Status Int(const std::string& key, int64_t lo, int64_t hi, T* out) {
    const json* v = Find(key);
    if (v == nullptr) return OkStatus();
    double d = 0;
    if (v->is_number_integer() || v->is_number_unsigned()) {
      d = v->is_number_unsigned() ? static_cast<double>(v->get<uint64_t>()) : static_cast<double>(v->get<int64_t>());
    } else if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()) {
      d = v->get<double>();
    } else {
      return Fail(key, "must be a whole number");
    }
    if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi))) {
      return Fail(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    *out = static_cast<T>(v->is_number_unsigned() ? static_cast<int64_t>(v->get<uint64_t>())
                                                  : v->is_number_integer() ? v->get<int64_t>() : static_cast<int64_t>(d));
    return OkStatus();
  }
  Status Number(const std::string& key, double lo, double hi, bool lo_open, float* out) {
    const json* v = Find(key);
    if (v == nullptr) return OkStatus();
    if (!v->is_number()) return Fail(key, "must be a number");
    const double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > hi || (lo_open && d == lo)) {
      return Fail(key, std::string("must be in ") + (lo_open ? "(" : "[") + json(lo).dump() + ", " + json(hi).dump() + "]");
    }
    *out = static_cast<float>(d);
    return OkStatus();
  }
  Status RejectUnknown() {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (!known_.contains(it.key())) {
        return Fail(it.key().substr(0, 64), "unknown field (see docs/api.md#jobs for a job's fields)");
      }
    }
    return OkStatus();
  }

 private:
  const json& j_;
  std::string* bad_field_;
  std::set<std::string> known_;
};

}  // namespace

StatusOr<ModelSource> ResolveModelSource(const std::string& model) {
  ModelSource b;
  std::error_code ec;
  if (model.empty()) return InvalidArgumentError("no model given");
  if (std::filesystem::is_regular_file(model, ec)) {
    b.path = std::filesystem::absolute(model).lexically_normal().string();
    b.ref = b.path;
    ASSIGN_OR_RETURN(registry::BlobInfo info, registry::HashFile(b.path));
    b.digest = info.digest;
    std::string stem = std::filesystem::path(model).stem().string();
    for (char& c : stem) c = std::isalnum(static_cast<unsigned char>(c)) ? std::tolower(c) : '-';
    b.stem = stem;
    return b;
  }
  registry::OpenOptions open;
  open.create = false;
  open.recover = false;
  ASSIGN_OR_RETURN(auto reg, registry::Registry::Open(registry::DefaultHome(), open));
  auto resolved = reg->Resolve(model);
  if (!resolved.ok()) {
    return Status(resolved.status().code(), "'" + model + "' is neither an existing file nor a registry reference: " +
                                                resolved.status().message());
  }
  b.path = resolved->blob_path;
  b.ref = resolved->manifest.name + "@" + resolved->manifest.version;
  b.digest = resolved->manifest.digest;
  b.stem = resolved->manifest.name;
  return b;
}

StatusOr<registry::Manifest> RegisterMadeModel(const std::string& file, const std::string& name,
                                               const std::string& version, const std::string& command,
                                               const registry::TrainingLineage& training, const std::string& what) {
  auto reg = registry::Registry::Open(registry::DefaultHome(), {});
  if (!reg.ok()) return reg.status().Annotate("registering " + what);
  registry::ImportOptions imp;
  imp.file = file;
  imp.name = name;
  if (!version.empty()) imp.version = version;
  imp.command = command;
  imp.training = training;
  auto m = (*reg)->Import(imp);
  if (!m.ok()) return m.status().Annotate("registering " + what);
  return m;
}

StatusOr<FinetuneSpec> FinetuneSpecFromJson(const json& body, std::string* bad_field) {
  if (!body.is_object()) return InvalidArgumentError("a job's spec must be a JSON object");
  SpecReader r(body, bad_field);
  FinetuneSpec s;
  r.Find("kind");  // the caller's
  RETURN_IF_ERROR(r.String("model", &s.model, true));
  RETURN_IF_ERROR(r.String("data", &s.data, true));
  RETURN_IF_ERROR(r.String("name", &s.name));
  RETURN_IF_ERROR(r.String("version", &s.version));
  RETURN_IF_ERROR(r.String("chat_template", &s.chat_template));
  if (const json* t = r.Find("targets")) {
    std::string list;
    if (t->is_string()) {
      list = t->get<std::string>();
    } else if (t->is_array()) {
      for (const json& item : *t) {
        if (!item.is_string()) return r.Fail("targets", "must be a list of strings or a string like \"q,v\"");
        list += (list.empty() ? "" : ",") + item.get<std::string>();
      }
    } else {
      return r.Fail("targets", "must be a list of strings or a string like \"q,v\"");
    }
    if (Status st = train::ParseLoraTargets(list, &s.train.lora); !st.ok()) return r.Fail("targets", st.message());
    s.targets = list;
  }
  train::TrainOptions& t = s.train;
  RETURN_IF_ERROR(r.Int("rank", 1, 1024, &t.lora.rank));
  RETURN_IF_ERROR(r.Number("alpha", 0, 1e6, true, &t.lora.alpha));
  RETURN_IF_ERROR(r.Number("dropout", 0, 0.99, false, &t.lora.dropout));
  RETURN_IF_ERROR(r.Number("lr", 0, 10, true, &t.adam.lr));
  RETURN_IF_ERROR(r.Int("warmup", 0, 100000000, &t.adam.warmup_steps));
  RETURN_IF_ERROR(r.Number("min_lr_ratio", 0, 1, false, &t.adam.min_lr_ratio));
  RETURN_IF_ERROR(r.Number("weight_decay", 0, 1, false, &t.adam.weight_decay));
  RETURN_IF_ERROR(r.Number("clip", 0, 1e6, false, &t.adam.clip_norm));
  RETURN_IF_ERROR(r.Int("epochs", 1, 100000, &t.epochs));
  RETURN_IF_ERROR(r.Int("steps", 1, 100000000, &t.steps));
  RETURN_IF_ERROR(r.Int("batch", 1, 4096, &t.batch));
  RETURN_IF_ERROR(r.Int("max_len", 2, 1 << 20, &t.max_len));
  RETURN_IF_ERROR(r.Number("eval_split", 0, 0.99, false, &s.eval_split));
  RETURN_IF_ERROR(r.Int("eval_every", 0, 100000000, &t.eval_every));
  RETURN_IF_ERROR(r.Int("checkpoint_every", 0, 100000000, &t.checkpoint_every));
  RETURN_IF_ERROR(r.Int("seed", 0, INT64_MAX, &t.seed));
  RETURN_IF_ERROR(r.Int("threads", 0, 1024, &s.threads));
  RETURN_IF_ERROR(r.Int("max_memory", 0, int64_t{1} << 30, &s.max_memory_mib));
  RETURN_IF_ERROR(r.RejectUnknown());
  return s;
}

json Hyperparameters(const FinetuneSpec& f) {
  const train::TrainOptions& t = f.train;
  return {{"rank", t.lora.rank},          {"alpha", t.lora.alpha},
          {"dropout", t.lora.dropout},    {"targets", train::LoraTargetList(t.lora)},
          {"lr", t.adam.lr},              {"warmup_steps", t.adam.warmup_steps},
          {"min_lr_ratio", t.adam.min_lr_ratio}, {"weight_decay", t.adam.weight_decay},
          {"clip_norm", t.adam.clip_norm}, {"beta1", t.adam.beta1}, {"beta2", t.adam.beta2},
          {"epochs", t.epochs},           {"steps", t.steps},
          {"batch", t.batch},             {"max_len", t.max_len},
          {"eval_split", f.eval_split},   {"seed", t.seed},
          {"chat_template", f.chat_template}};
}

std::string FormatStepReport(const train::StepReport& r) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "step %zu/%zu epoch %zu loss %.4f lr %.3g grad-norm %.3g %.0f tok/s", r.step,
                r.total_steps, r.epoch, r.loss, r.lr, r.grad_norm, r.tokens_per_second);
  std::string line = buf;
  if (r.eval_loss >= 0) line += " eval-loss " + std::to_string(r.eval_loss);
  if (r.checkpointed) line += " (checkpoint)";
  return line;
}

StatusOr<FinetuneRun> RunFinetune(FinetuneSpec f, const FinetuneHooks& hooks) {
  auto log = [&](const std::string& line) {
    if (hooks.log) hooks.log(line);
  };
  FinetuneRun run;
  ASSIGN_OR_RETURN(run.base, ResolveModelSource(f.model));
  if (!(f.eval_split >= 0.0f && f.eval_split < 1.0f)) return InvalidArgumentError("--eval-split must be in [0, 1)");
  RETURN_IF_ERROR(train::ParseLoraTargets(f.targets, &f.train.lora));
  auto data = ReadFileToString(f.data, kMaxDataBytes);
  if (!data.ok()) return data.status().Annotate("reading the training data");
  registry::Sha256 data_hash;
  data_hash.Update({reinterpret_cast<const uint8_t*>(data->data()), data->size()});
  const std::string data_digest = data_hash.FinishDigest();

  // Training multiplies float activations against the file's own layout: no repacked copy.
  arch::LoadOptions load;
  load.repack = false;
  ASSIGN_OR_RETURN(manager::ModelFiles files,
                   manager::LoadModelFile(run.base.path, "'" + run.base.ref + "'", load));
  const arch::Model& model = *files.model;
  const tokenizer::Tokenizer& tok = *files.tokenizer;
  ThreadPool pool(f.threads == 0 ? ThreadPool::DefaultNumThreads() : f.threads);
  auto tmpl = chat::ChatTemplateFor(tok, f.chat_template);
  if (!tmpl.ok()) return tmpl.status().Annotate("the chat template");
  train::ConversationEncoder encode = [&](std::span<const chat::Message> messages, bool gen) {
    return chat::EncodeConversation(tok, *tmpl, messages, gen);
  };
  train::DataStats stats;
  auto seqs = train::ParseJsonl(*data, encode, f.train.max_len, &stats);
  if (!seqs.ok()) return seqs.status().Annotate("'" + f.data + "'");
  std::vector<train::TrainSequence> train_set, eval_set;
  train::SplitHeldOut(std::move(seqs).value(), f.eval_split, f.train.seed, &train_set, &eval_set);
  const size_t num_examples = train_set.size() + eval_set.size();

  const json params = Hyperparameters(f);
  f.train.fingerprint = Fingerprint(run.base, data_digest, params);
  f.train.max_memory_bytes = f.max_memory_mib << 20;
  run.adapter_name = f.name.empty() ? run.base.stem + "-lora" : f.name;
  if (f.out.empty()) {  // NAME.gguf in the working directory; a namespaced name's '/' becomes '-'
    f.out = run.adapter_name + ".gguf";
    std::replace(f.out.begin(), f.out.end(), '/', '-');
  }
  f.train.checkpoint_path = f.checkpoint.empty() ? f.out + ".ckpt" : f.checkpoint;
  ASSIGN_OR_RETURN(std::unique_ptr<train::Trainer> trainer,
                   train::Trainer::Create(model, pool, train_set, eval_set, f.train));
  run.total_steps = trainer->total_steps();
  char intro[512];
  std::snprintf(intro, sizeof(intro),
                "finetune: %zu examples from %zu lines (%zu held out, %zu truncated), %zu tokens, "
                "%zu targets; %zu rows of <= %zu tokens per epoch, %zu steps of %zu rows; "
                "%zu LoRA parameters (rank %zu on %s); %zu threads",
                num_examples, stats.num_lines, eval_set.size(), stats.num_truncated, stats.num_tokens,
                stats.num_target_tokens, trainer->rows_per_epoch(), f.train.max_len, trainer->total_steps(),
                f.train.batch, trainer->layout().num_params(), f.train.lora.rank,
                train::LoraTargetList(f.train.lora).c_str(), pool.num_threads());
  log(intro);
  ASSIGN_OR_RETURN(run.result, trainer->Run(hooks.on_step));
  if (run.result.resumed_from_step > 0) {
    log("finetune: resumed from the checkpoint at step " + std::to_string(run.result.resumed_from_step));
  }
  if (!run.result.completed) return run;

  json lineage_params = params;
  lineage_params["total_steps"] = trainer->total_steps();
  lineage_params["first_loss"] = run.result.first_loss;
  lineage_params["final_loss"] = run.result.final_loss;
  lineage_params["initial_eval_loss"] = run.result.initial_eval_loss;
  lineage_params["final_eval_loss"] = run.result.final_eval_loss;
  train::AdapterInfo info;
  info.name = run.adapter_name;
  info.notes = {{"base", run.base.ref}, {"base_digest", run.base.digest}, {"data_digest", data_digest},
                {"training", lineage_params.dump()}};
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes,
                   train::SerializeLoraAdapter(model.config(), trainer->layout(), run.result.params, info));
  RETURN_IF_ERROR(WriteFileAtomically(f.out, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size())));
  std::remove(f.train.checkpoint_path.c_str());  // the run is complete: nothing to resume
  run.adapter_path = f.out;
  run.lineage.base = run.base.ref;
  run.lineage.base_digest = run.base.digest;
  run.lineage.data_digest = data_digest;
  run.lineage.data = std::filesystem::absolute(f.data).lexically_normal().string();
  run.lineage.parameters = lineage_params.dump();
  return run;
}

namespace {

class FinetuneJobKind : public JobKind {
 public:
  FinetuneJobKind(size_t checkpoint_every, size_t threads) : checkpoint_every_(checkpoint_every), threads_(threads) {}
  std::string_view name() const override { return "finetune"; }

  Status Validate(const json& body, std::string* bad_field) override {
    ASSIGN_OR_RETURN(FinetuneSpec spec, FinetuneSpecFromJson(body, bad_field));
    auto fail = [&](const std::string& field, const std::string& what) {
      return SpecFieldError(bad_field, field, what);
    };
    std::error_code ec;
    if (!std::filesystem::path(spec.data).is_absolute()) {
      return fail("data", "must be an absolute path on the daemon's machine");
    }
    if (!std::filesystem::is_regular_file(spec.data, ec)) return fail("data", "no file '" + spec.data + "'");
    if (auto base = ResolveModelSource(spec.model); !base.ok()) return fail("model", base.status().message());
    return OkStatus();
  }

  StatusOr<JobOutcome> Run(const JobRecord& job, JobControl& control) override {
    ASSIGN_OR_RETURN(FinetuneSpec spec, FinetuneSpecFromJson(json::parse(job.spec, nullptr, false)));
    spec.out = control.dir() + "/adapter.gguf";
    spec.checkpoint = spec.out + ".ckpt";
    if (spec.train.checkpoint_every == 0) spec.train.checkpoint_every = checkpoint_every_;
    if (spec.threads == 0) spec.threads = threads_;
    const auto t0 = std::chrono::steady_clock::now();
    size_t first_step = 0;
    FinetuneHooks hooks;
    hooks.log = [&](const std::string& line) { control.Log(line); };
    hooks.on_step = [&](const train::StepReport& r) {
      if (first_step == 0) first_step = r.step;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double per_step = secs / static_cast<double>(r.step - first_step + 1);
      control.SetProgress({.step = static_cast<int64_t>(r.step),
                           .total_steps = static_cast<int64_t>(r.total_steps),
                           .epoch = static_cast<double>(r.epoch),
                           .loss = r.loss,
                           .eval_loss = r.eval_loss >= 0 ? r.eval_loss : job.progress.eval_loss,
                           .tokens_per_second = r.tokens_per_second,
                           .seconds_left = per_step * static_cast<double>(r.total_steps - r.step)});
      control.Log(FormatStepReport(r));
      // Yield to inference before the next step; a stop request ends the wait.
      if (r.step < r.total_steps) control.YieldToInference();
      return !control.StopRequested();
    };
    ASSIGN_OR_RETURN(FinetuneRun run, RunFinetune(spec, hooks));
    JobOutcome outcome;
    if (!run.result.completed) {
      outcome.stopped_at = "step " + std::to_string(run.result.steps) + " (checkpoint written)";
      return outcome;
    }
    ASSIGN_OR_RETURN(registry::Manifest manifest, RegisterMadeModel(run.adapter_path, run.adapter_name, spec.version,
                                                                    "finetune", run.lineage, "the adapter"));
    const train::TrainResult& r = run.result;
    outcome.completed = true;
    outcome.result = {{"adapter", manifest.name + "@" + manifest.version},
                      {"adapter_digest", manifest.digest},
                      {"adapter_path", run.adapter_path},
                      {"base", run.base.ref},
                      {"steps", run.total_steps},
                      {"first_loss", r.first_loss},
                      {"final_loss", r.final_loss},
                      {"initial_eval_loss", r.initial_eval_loss},
                      {"final_eval_loss", r.final_eval_loss}};
    char line[256];
    std::snprintf(line, sizeof(line), "succeeded: %s@%s, loss %.4f -> %.4f", manifest.name.c_str(),
                  manifest.version.c_str(), r.first_loss, r.final_loss);
    outcome.summary = line;
    return outcome;
  }

 private:
  const size_t checkpoint_every_;
  const size_t threads_;
};

}  // namespace

std::unique_ptr<JobKind> NewFinetuneJobKind(size_t default_checkpoint_every, size_t default_threads) {
  return std::make_unique<FinetuneJobKind>(default_checkpoint_every, default_threads);
}

}  // namespace llmasos::jobs
