// llmasos finetune MODEL --data FILE.jsonl: LoRA fine-tuning on the CPU (model/train). Writes
// the adapter as a GGUF file in llama.cpp's adapter layout and registers it in the registry as
// a new version whose lineage names the base model (version and digest), the data (digest),
// every hyper-parameter and the final losses. Progress goes to stderr, one line per step; a
// run stopped at any point (kill -9 included) resumes from its last checkpoint when the same
// command is run again, and ends with the same adapter as an uninterrupted run.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "model/train/adapter.h"
#include "model/train/dataset.h"
#include "model/train/trainer.h"
#include "services/registry/blob_store.h"
#include "services/registry/registry.h"
#include "shell/commands.h"
#include "model/chat/conversation.h"
#include "util/file.h"

namespace llmasos::shell {
namespace {

constexpr size_t kMaxDataBytes = size_t{1} << 30;

struct FinetuneFlags {
  std::string model;
  size_t threads = 0;
  std::string data;
  std::string out;
  std::string name;
  std::string version;
  bool no_register = false;
  std::string targets = "q,v";
  std::string chat_template;
  float eval_split = 0.1f;
  size_t max_memory_mib = 0;
  std::string checkpoint;
  train::TrainOptions train;
};

std::string Fingerprint(const ModelSource& base, const std::string& data_digest,
                        const nlohmann::json& params) {
  registry::Sha256 h;
  const std::string text = base.digest + "\n" + data_digest + "\n" + params.dump();
  h.Update({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  return h.FinishDigest();
}

nlohmann::json Hyperparameters(const FinetuneFlags& f) {
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

int FinetuneMain(FinetuneFlags& f) {
  auto base = ResolveModelSource(f.model);
  if (!base.ok()) return ReportError(base.status());
  if (!(f.eval_split >= 0.0f && f.eval_split < 1.0f)) {
    return ReportError(InvalidArgumentError("--eval-split must be in [0, 1)"));
  }
  if (Status s = train::ParseLoraTargets(f.targets, &f.train.lora); !s.ok()) return ReportError(s);
  auto data = ReadFileToString(f.data, kMaxDataBytes);
  if (!data.ok()) return ReportError(data.status().Annotate("reading the training data"));
  registry::Sha256 data_hash;
  data_hash.Update({reinterpret_cast<const uint8_t*>(data->data()), data->size()});
  const std::string data_digest = data_hash.FinishDigest();

  // Training multiplies float activations against the file's own layout; a repacked copy
  // would only double the memory (see arch::Model).
  setenv("LLMASOS_REPACK", "0", 1);
  LoadOptions load;
  load.model_path = base->path;
  load.num_threads = f.threads;
  load.context_tokens = 1;
  load.batch_tokens = 1;
  std::unique_ptr<Session> s = LoadSessionOrReport(load);
  if (!s) return 1;
  auto tmpl = chat::ChatTemplateFor(s->tokenizer(), f.chat_template);
  if (!tmpl.ok()) return ReportError(tmpl.status().Annotate("the chat template"));
  train::ConversationEncoder encode = [&](std::span<const chat::Message> messages, bool gen) {
    return chat::EncodeConversation(s->tokenizer(), *tmpl, messages, gen);
  };
  train::DataStats stats;
  auto seqs = train::ParseJsonl(*data, encode, f.train.max_len, &stats);
  if (!seqs.ok()) return ReportError(seqs.status().Annotate("'" + f.data + "'"));
  std::vector<train::TrainSequence> train_set, eval_set;
  train::SplitHeldOut(std::move(seqs).value(), f.eval_split, f.train.seed, &train_set, &eval_set);

  const nlohmann::json params = Hyperparameters(f);
  f.train.fingerprint = Fingerprint(*base, data_digest, params);
  f.train.max_memory_bytes = f.max_memory_mib << 20;
  if (f.out.empty()) {  // NAME.gguf in the current directory; a namespaced name's '/' becomes '-'
    f.out = (f.name.empty() ? base->stem + "-lora" : f.name) + ".gguf";
    std::replace(f.out.begin(), f.out.end(), '/', '-');
  }
  f.train.checkpoint_path = f.checkpoint.empty() ? f.out + ".ckpt" : f.checkpoint;
  auto trainer = train::Trainer::Create(s->model(), s->pool(), train_set, eval_set, f.train);
  if (!trainer.ok()) return ReportError(trainer.status());
  std::fprintf(stderr,
               "finetune: %zu examples from %zu lines (%zu held out, %zu truncated), %zu tokens, "
               "%zu targets; %zu rows of <= %zu tokens per epoch, %zu steps of %zu rows; "
               "%zu LoRA parameters (rank %zu on %s); %zu threads\n",
               train_set.size() + eval_set.size(), stats.num_lines, eval_set.size(),
               stats.num_truncated, stats.num_tokens, stats.num_target_tokens,
               (*trainer)->rows_per_epoch(), f.train.max_len, (*trainer)->total_steps(),
               f.train.batch, (*trainer)->layout().num_params(), f.train.lora.rank,
               train::LoraTargetList(f.train.lora).c_str(), s->pool().num_threads());
  auto result = (*trainer)->Run([](const train::StepReport& r) {
    std::fprintf(stderr, "step %zu/%zu epoch %zu loss %.4f lr %.3g grad-norm %.3g %.0f tok/s%s%s\n",
                 r.step, r.total_steps, r.epoch, r.loss, r.lr, r.grad_norm, r.tokens_per_second,
                 r.eval_loss >= 0 ? (" eval-loss " + std::to_string(r.eval_loss)).c_str() : "",
                 r.checkpointed ? " (checkpoint)" : "");
    return true;
  });
  if (!result.ok()) return ReportError(result.status());
  if (result->resumed_from_step > 0) {
    std::fprintf(stderr, "finetune: resumed from the checkpoint at step %zu\n", result->resumed_from_step);
  }

  nlohmann::json lineage_params = params;
  lineage_params["total_steps"] = (*trainer)->total_steps();
  lineage_params["first_loss"] = result->first_loss;
  lineage_params["final_loss"] = result->final_loss;
  lineage_params["initial_eval_loss"] = result->initial_eval_loss;
  lineage_params["final_eval_loss"] = result->final_eval_loss;
  train::AdapterInfo info;
  info.name = f.name.empty() ? base->stem + "-lora" : f.name;
  info.notes = {{"base", base->ref}, {"base_digest", base->digest}, {"data_digest", data_digest},
                {"training", lineage_params.dump()}};
  auto bytes = train::SerializeLoraAdapter(s->model().config(), (*trainer)->layout(), result->params, info);
  if (!bytes.ok()) return ReportError(bytes.status());
  Status written = WriteFileAtomically(
      f.out, std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
  if (!written.ok()) return ReportError(written);
  std::remove(f.train.checkpoint_path.c_str());  // the run is complete: nothing to resume

  std::printf("adapter      %s\n", f.out.c_str());
  std::printf("loss         %.4f -> %.4f (training)\n", result->first_loss, result->final_loss);
  if (result->final_eval_loss >= 0) {
    std::printf("eval loss    %.4f -> %.4f (held out)\n", result->initial_eval_loss, result->final_eval_loss);
  }
  std::printf("throughput   %.0f tokens/s over %zu tokens (%.1f s)\n",
              result->tokens / std::max(result->seconds, 1e-9), result->tokens, result->seconds);
  std::printf("peak memory  %.1f MiB (estimated %.1f MiB)\n", result->peak_rss_bytes / 1048576.0,
              result->estimated_bytes / 1048576.0);
  if (f.no_register) return 0;

  registry::TrainingLineage training;
  training.base = base->ref;
  training.base_digest = base->digest;
  training.data_digest = data_digest;
  training.data = std::filesystem::absolute(f.data).lexically_normal().string();
  training.parameters = lineage_params.dump();
  Status registered = RegisterMadeModel(f.out, info.name, f.version, "finetune", training, "the adapter");
  return registered.ok() ? 0 : ReportError(registered);
}

}  // namespace

void AddFinetuneCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<FinetuneFlags>();
  CLI::App* cmd = app.add_subcommand("finetune", "LoRA fine-tuning on JSONL chat data; writes and registers an adapter");
  cmd->add_option("model", f->model, "base model: .gguf path or registry reference (default: the default model)");
  cmd->add_option("--data", f->data, "JSONL: {\"messages\": [...]} or {\"prompt\", \"completion\"} per line")->required();
  cmd->add_option("-o,--out", f->out, "adapter file to write (default: NAME.gguf)");
  cmd->add_option("--name", f->name, "registry name of the adapter (default: BASE-lora)");
  cmd->add_option("--version", f->version, "semantic version (default 1.0.0, then the next minor)");
  cmd->add_flag("--no-register", f->no_register, "write the adapter file only");
  cmd->add_option("--rank", f->train.lora.rank, "LoRA rank")->check(CLI::Range(1, 1024));
  cmd->add_option("--alpha", f->train.lora.alpha, "LoRA alpha (scale = alpha / rank)");
  cmd->add_option("--dropout", f->train.lora.dropout, "LoRA dropout probability");
  cmd->add_option("--targets", f->targets, "projections to adapt: q,k,v,o,gate,up,down or all");
  cmd->add_option("--lr", f->train.adam.lr, "peak learning rate");
  cmd->add_option("--warmup", f->train.adam.warmup_steps, "linear warm-up steps, then cosine decay");
  cmd->add_option("--min-lr-ratio", f->train.adam.min_lr_ratio, "learning rate at the end, as a fraction of --lr");
  cmd->add_option("--weight-decay", f->train.adam.weight_decay, "AdamW decoupled weight decay");
  cmd->add_option("--clip", f->train.adam.clip_norm, "clip gradients to this global norm (0: off)");
  cmd->add_option("--epochs", f->train.epochs, "passes over the data (when --steps is not given)");
  cmd->add_option("--steps", f->train.steps, "optimiser steps (overrides --epochs)");
  cmd->add_option("--batch", f->train.batch, "packed rows per step (gradient accumulation)");
  cmd->add_option("--max-len", f->train.max_len, "tokens per packed row; longer examples are cut");
  cmd->add_option("--eval-split", f->eval_split, "fraction of examples held out for the evaluation loss");
  cmd->add_option("--eval-every", f->train.eval_every, "evaluate every N steps (0: before and after only)");
  cmd->add_option("--checkpoint", f->checkpoint, "checkpoint file (default: OUT.ckpt)");
  cmd->add_option("--checkpoint-every", f->train.checkpoint_every, "write the checkpoint every N steps (0: never)");
  cmd->add_option("--seed", f->train.seed, "seed: initialisation, shuffling, dropout, split");
  AddEngineSizeFlags(*cmd, {.num_threads = &f->threads});
  cmd->add_option("--max-memory", f->max_memory_mib, "refuse to run above this many MiB (0: no bound)");
  cmd->add_option("--chat-template", f->chat_template, "use this template instead of the model's");
  cmd->callback([f, exit_code] { *exit_code = FinetuneMain(*f); });
}

}  // namespace llmasos::shell
