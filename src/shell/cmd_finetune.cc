// llmasos finetune MODEL --data FILE.jsonl: LoRA fine-tuning on the CPU (model/train). Writes
// the adapter as a GGUF file in llama.cpp's adapter layout and registers it in the registry as
// a new version whose lineage names the base model (version and digest), the data (digest),
// every hyper-parameter and the final losses. Progress goes to stderr, one line per step; a
// run stopped at any point (kill -9 included) resumes from its last checkpoint when the same
// command is run again, and ends with the same adapter as an uninterrupted run.
// The run itself is services/jobs/finetune.h, which the daemon's jobs run too.
#include <algorithm>
#include <cstdio>

#include "services/jobs/finetune.h"
#include "shell/commands.h"

namespace llmasos::shell {
namespace {

struct FinetuneFlags {
  jobs::FinetuneSpec spec;
  bool no_register = false;
};

int FinetuneMain(FinetuneFlags& f) {
  if (f.spec.model.empty()) f.spec.model = std::string(kDefaultModelReference);
  jobs::FinetuneHooks hooks;
  hooks.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  hooks.on_step = [](const train::StepReport& r) {
    std::fprintf(stderr, "%s\n", jobs::FormatStepReport(r).c_str());
    return true;
  };
  auto run = jobs::RunFinetune(f.spec, hooks);
  if (!run.ok()) return ReportError(run.status());
  const train::TrainResult& result = run->result;
  std::printf("adapter      %s\n", run->adapter_path.c_str());
  std::printf("loss         %.4f -> %.4f (training)\n", result.first_loss, result.final_loss);
  if (result.final_eval_loss >= 0) {
    std::printf("eval loss    %.4f -> %.4f (held out)\n", result.initial_eval_loss, result.final_eval_loss);
  }
  std::printf("throughput   %.0f tokens/s over %zu tokens (%.1f s)\n",
              result.tokens / std::max(result.seconds, 1e-9), result.tokens, result.seconds);
  std::printf("peak memory  %.1f MiB (estimated %.1f MiB)\n", result.peak_rss_bytes / 1048576.0,
              result.estimated_bytes / 1048576.0);
  if (f.no_register) return 0;
  Status registered = RegisterMadeModel(run->adapter_path, run->adapter_name, f.spec.version, "finetune",
                                        run->lineage, "the adapter");
  return registered.ok() ? 0 : ReportError(registered);
}

}  // namespace

void AddFinetuneCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<FinetuneFlags>();
  jobs::FinetuneSpec* f = &flags->spec;
  CLI::App* cmd = app.add_subcommand("finetune", "LoRA fine-tuning on JSONL chat data; writes and registers an adapter");
  cmd->add_option("model", f->model, "base model: .gguf path or registry reference (default: the default model)");
  cmd->add_option("--data", f->data, "JSONL: {\"messages\": [...]} or {\"prompt\", \"completion\"} per line")->required();
  cmd->add_option("-o,--out", f->out, "adapter file to write (default: NAME.gguf)");
  cmd->add_option("--name", f->name, "registry name of the adapter (default: BASE-lora)");
  cmd->add_option("--version", f->version, "semantic version (default 1.0.0, then the next minor)");
  cmd->add_flag("--no-register", flags->no_register, "write the adapter file only");
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
  cmd->callback([flags, exit_code] { *exit_code = FinetuneMain(*flags); });
}

}  // namespace llmasos::shell
