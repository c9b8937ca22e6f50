// A LoRA fine-tune from a base model and a JSONL file to an adapter file: what `llmasos
// finetune` runs in the foreground and the daemon's job runner runs as a job (job_runner.h).
// One home for the steps between them: resolving the base (a file or a registry reference),
// loading it, reading and splitting the data, the fingerprint that ties a checkpoint to its
// run, training (model/train), writing the adapter in llama.cpp's layout with its lineage, and
// registering it as a new version.
//
// The spec's JSON form is the body of `POST /os/jobs` (docs/api.md): the flags of `llmasos
// finetune` by name ("lr", "batch", "max_len", ...), validated here so that a bad field is
// refused before the job is queued.
//
// Thread safety: functions of their arguments; RunFinetune uses a thread pool of its own.
#ifndef LLMASOS_SERVICES_JOBS_FINETUNE_H_
#define LLMASOS_SERVICES_JOBS_FINETUNE_H_

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/train/trainer.h"
#include "services/jobs/job_kind.h"
#include "services/registry/manifest.h"
#include "util/status.h"

namespace llmasos::jobs {

// A model argument with what lineage records of it, for what makes a new model from it
// (finetune, merge): its file, what lineage calls it ("name@version", or the file's absolute
// path), its digest, and a name to derive new names from.
struct ModelSource {
  std::string path;
  std::string ref;
  std::string digest;  // "sha256:<hex>"
  std::string stem;    // "smollm2-135m-instruct"
};
// An existing file is hashed; anything else is resolved in the registry at
// registry::DefaultHome() (never created or recovered here). Errors say why it is neither.
StatusOr<ModelSource> ResolveModelSource(const std::string& model);

// Registers `file`, a model made from another (finetune, merge), as a new version of `name`
// (`version` "" = the next one) with `command` and `training` as its lineage, in the registry
// at registry::DefaultHome(). `what` names the file in errors ("the adapter").
StatusOr<registry::Manifest> RegisterMadeModel(const std::string& file, const std::string& name,
                                               const std::string& version, const std::string& command,
                                               const registry::TrainingLineage& training, const std::string& what);

struct FinetuneSpec {
  std::string model;       // the base: a .gguf path or a registry reference (required)
  std::string data;        // the JSONL file (required)
  std::string out;         // the adapter file; "" = NAME.gguf in the working directory
  std::string checkpoint;  // "" = OUT.ckpt
  std::string name;        // the adapter's registry name; "" = BASE-lora
  std::string version;     // "" = 1.0.0, then the next minor
  std::string targets = "q,v";
  std::string chat_template;  // "" = the model's
  float eval_split = 0.1f;
  size_t max_memory_mib = 0;  // 0: no bound
  size_t threads = 0;         // 0: all cores
  train::TrainOptions train;
};

// The JSON object of POST /os/jobs (its "kind" aside). InvalidArgument "FIELD: what is wrong"
// for a missing, mistyped, out-of-range or unknown field; *bad_field (optional) names it.
// Fields: model, data (required); name, version, targets (a list or "q,v"), chat_template,
// rank, alpha, dropout, lr, warmup, min_lr_ratio, weight_decay, clip, epochs, steps, batch,
// max_len, eval_split, eval_every, checkpoint_every, seed, threads, max_memory (MiB).
StatusOr<FinetuneSpec> FinetuneSpecFromJson(const nlohmann::json& body, std::string* bad_field = nullptr);

// Every hyper-parameter, as lineage records it.
nlohmann::json Hyperparameters(const FinetuneSpec& spec);

// One progress line: "step 3/10 epoch 1 loss 2.3456 lr 0.0002 grad-norm 1.2 540 tok/s".
std::string FormatStepReport(const train::StepReport& r);

struct FinetuneHooks {
  std::function<void(const std::string&)> log;  // what happens, one line at a time; may be empty
  // After each optimiser step; returning false stops the run there, with a checkpoint.
  std::function<bool(const train::StepReport&)> on_step;
};

struct FinetuneRun {
  ModelSource base;
  train::TrainResult result;  // result.completed false: stopped by on_step
  size_t total_steps = 0;
  std::string adapter_path;   // written when completed
  std::string adapter_name;   // the name to register it under
  registry::TrainingLineage lineage;
};

// Trains as the spec says, resuming from its checkpoint when there is one; when the run
// completes, writes the adapter atomically and removes the checkpoint. Registering is the
// caller's (RegisterMadeModel). Errors name what is wrong (the base, the data, an option).
StatusOr<FinetuneRun> RunFinetune(FinetuneSpec spec, const FinetuneHooks& hooks);

// The "finetune" job kind: Validate as FinetuneSpecFromJson plus a data file that exists at an
// absolute path and a model that resolves; Run trains in the job's directory (adapter.gguf and
// its checkpoint, every spec's checkpoint_every steps or `default_checkpoint_every`), on the
// spec's threads or `default_threads` (0: all cores), yielding to inference between optimiser
// steps, and registers the adapter when done.
std::unique_ptr<JobKind> NewFinetuneJobKind(size_t default_checkpoint_every, size_t default_threads);

}  // namespace llmasos::jobs

#endif  // LLMASOS_SERVICES_JOBS_FINETUNE_H_
