// llmasos batch [MODEL] -f prompts.jsonl -o results.jsonl: a file of prompts through the
// kernel at once (continuous batching, the chosen scheduling policy), with a progress line and
// results as JSON lines. Resumable: ids already in the output file are skipped, so running the
// same command again after an interruption finishes the rest.
//
// The input and result formats, and the loop, are api/batch_file.h's (a batch job runs the same).
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>

#include "api/batch_file.h"
#include "model/chat/conversation.h"
#include "kernel/engine_thread.h"
#include "shell/commands.h"

namespace llmasos::shell {
namespace {

struct BatchFlags {
  LoadOptions load;
  GenerateOptions gen;
  std::string input;
  std::string output;
  std::string policy = "fcfs";
  size_t parallel = 16;
  size_t kv_mib = 512;
  std::string chat_template;
};

volatile std::sig_atomic_t g_stop = 0;
void OnInterrupt(int) { g_stop = 1; }

// The tokens one process may hold: the context the engine is started with.
size_t BatchContextTokens(const BatchFlags& f, const Session& s) {
  return std::min<size_t>(f.load.context_tokens, s.model().config().context_length);
}

// A progress line, redrawn in place on a terminal; on a pipe or file, one line every 10 s.
void PrintProgress(size_t done, size_t total, size_t tokens, double seconds) {
  static double last_printed = -1e9;
  const bool tty = isatty(STDERR_FILENO);
  if (!tty && seconds - last_printed < 10 && done < total) return;
  last_printed = seconds;
  const double rate = seconds > 0 ? tokens / seconds : 0;
  const double per_job = done > 0 ? seconds / done : 0;
  const double eta = per_job * (total - done);
  std::fprintf(stderr, "%s[%zu/%zu] %.1f tokens/s, elapsed %.0f s, ETA %.0f s%s", tty ? "\r" : "", done, total,
               rate, seconds, eta, tty ? "   " : "\n");
  std::fflush(stderr);
}

int BatchMain(BatchFlags& f) {
  auto done = api::ReadBatchResultIds(f.output);
  if (!done.ok()) return ReportError(done.status());
  f.load.with_context = false;  // the engine has its own paged KV memory
  std::unique_ptr<Session> s = LoadSessionOrReport(f.load);
  if (!s) return 1;
  auto tmpl = chat::ChatTemplateFor(s->tokenizer(), f.chat_template);
  if (!tmpl.ok()) return ReportError(tmpl.status().Annotate(s->model_label()));
  api::BatchInputOptions in;
  in.defaults.sampling = f.gen.sampling;
  in.defaults.sampling.seed = f.gen.sampling.seed.value_or(kDefaultSeed);  // --seed (or its default) for lines without one
  in.defaults.max_tokens =
      f.gen.max_tokens < 0 ? api::kDefaultBatchMaxTokens : static_cast<int32_t>(std::min<int64_t>(f.gen.max_tokens, 1 << 20));
  in.defaults.context_tokens = BatchContextTokens(f, *s);
  in.defaults.vocab_size = s->tokenizer().vocab_size();
  in.stop = f.gen.stop;
  in.chat_template = &*tmpl;
  auto input = api::ReadBatchInput(f.input, f.input, s->tokenizer(), in, *done);
  if (!input.ok()) return ReportError(input.status());
  if (!input->ignored_fields.empty()) {
    std::string names;
    for (const std::string& name : input->ignored_fields) names += (names.empty() ? "" : ", ") + name;
    std::fprintf(stderr, "llmasos batch: ignored fields (not part of the line format): %s\n", names.c_str());
  }
  const std::vector<api::BatchLine>& lines = input->todo;
  std::fprintf(stderr, "llmasos batch: %zu prompts to run, %zu already done\n", lines.size(), done->size());
  if (lines.empty()) return 0;

  kernel::EngineThreadOptions o;
  o.engine.policy = f.policy;
  o.engine.scheduler.max_running = f.parallel;
  o.engine.scheduler.max_batch_tokens = std::max<size_t>(f.load.batch_tokens, f.parallel);
  o.engine.scheduler.max_prefill_chunk_tokens = o.engine.scheduler.max_batch_tokens;
  o.engine.kv_budget_bytes = f.kv_mib << 20;
  o.engine.cache_type_k = f.load.cache_type_k;
  o.engine.cache_type_v = f.load.cache_type_v;
  o.engine.max_context = BatchContextTokens(f, *s);
  o.engine.float_activations = f.load.float_activations;
  auto engine_or = kernel::EngineThread::Start(s->model(), s->tokenizer(), s->pool(), o, RealClock());
  if (!engine_or.ok()) return ReportError(engine_or.status());
  kernel::EngineThread& engine = **engine_or;

  FILE* out = std::fopen(f.output.c_str(), "ab");
  if (out == nullptr) return ReportError(IoError("cannot open '" + f.output + "' for appending"));
  g_stop = 0;
  auto previous = std::signal(SIGINT, OnInterrupt);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  double last_progress = 0;
  api::BatchRunOptions ro;
  // Keep a few more processes queued than run, so the scheduler always has work to admit.
  ro.max_in_flight = f.parallel * 2;
  ro.should_stop = [] { return g_stop != 0; };
  ro.on_result = [&](size_t written, size_t tokens) {
    last_progress = elapsed();
    PrintProgress(written, lines.size(), tokens, last_progress);
  };
  ro.on_event = [&](size_t written, size_t tokens) {
    if (elapsed() - last_progress > 0.2) ro.on_result(written, tokens);
  };
  auto run = api::RunBatch(engine, lines, out, ro);
  engine.Shutdown();  // after an interrupt: cancels what is left, unrecorded, for the next run
  std::signal(SIGINT, previous);
  std::fclose(out);
  std::fputc('\n', stderr);
  if (!run.ok()) {
    ReportError(run.status());
    return 1;
  }
  if (run->stopped) {
    std::fprintf(stderr, "llmasos batch: interrupted; %zu of %zu done. Run the same command to finish.\n",
                 run->num_written, lines.size());
    return 130;
  }
  return 0;
}

}  // namespace

void AddBatchCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<BatchFlags>();
  CLI::App* cmd = app.add_subcommand("batch", "run a JSONL file of prompts through the kernel at once");
  AddLoadFlags(*cmd, &flags->load);
  AddSamplingFlags(*cmd, &flags->gen);
  cmd->add_option("-f,--file", flags->input, "prompts, one JSON object per line")->required();
  cmd->add_option("-o,--output", flags->output, "results, JSON lines (appended; finished ids are skipped)")->required();
  cmd->add_option("--policy", flags->policy, "scheduling policy: fcfs, sjf, rr, priority, fair");
  cmd->add_option("--parallel", flags->parallel, "processes running at once")->check(CLI::Range(1, 4096));
  cmd->add_option("--kv-mib", flags->kv_mib, "KV memory budget in MiB")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--chat-template", flags->chat_template, "use this template instead of the model's");
  cmd->callback([flags, exit_code] { *exit_code = BatchMain(*flags); });
}

}  // namespace llmasos::shell
