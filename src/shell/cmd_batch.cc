// llmasos batch [MODEL] -f prompts.jsonl -o results.jsonl: a file of prompts through the
// kernel at once (continuous batching, the chosen scheduling policy), with a progress line and
// results as JSON lines. Resumable: ids already in the output file are skipped, so running the
// same command again after an interruption finishes the rest.
//
// Input, one JSON object per line:
//   {"id": "q1", "prompt": "text"}                       the chat template is applied
//   {"id": "q2", "messages": [{"role": ..., "content": ...}, ...]}
//   {"id": "q3", "prompt": "text", "raw": true}          plain completion
// optional per line: max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
// presence_penalty, frequency_penalty, seed, stop (a string or a list), priority, tenant.
// "id" defaults to the line number. The fields are read by api/request.h (Endpoint::kBatchLine).
// Output, one line per finished prompt, in finishing order:
//   {"id", "text", "finish_reason" ("stop" | "length" | "error"), "prompt_tokens",
//    "completion_tokens", "error" (only for "error")}
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "api/request.h"
#include "kernel/engine_thread.h"
#include "model/chat/conversation.h"
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

constexpr size_t kMaxLineBytes = 1 << 20;
constexpr size_t kMaxPrompts = 1 << 20;

struct Job {
  std::string id;
  std::vector<TokenId> prompt;
  kernel::ProcessSpec spec;
  std::vector<std::string> stop;
};

// A submitted job: its result line so far.
struct Running {
  std::string id;
  size_t prompt_tokens = 0;
  std::string text;
};

// Ids already in the output file. A last line cut short by a crash is dropped from the file.
StatusOr<std::set<std::string>> DoneIds(const std::string& path) {
  std::set<std::string> done;
  std::ifstream in(path, std::ios::binary);
  if (!in) return done;  // no output yet
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t keep = 0, pos = 0;
  while (pos < content.size()) {
    size_t nl = content.find('\n', pos);
    if (nl == std::string::npos) break;  // an unterminated last line: dropped below
    auto j = nlohmann::json::parse(content.substr(pos, nl - pos), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string()) {
      return DataLossError("output file '" + path + "' line at byte " + std::to_string(pos) +
                           " is not a result line; refusing to append to it");
    }
    done.insert(j["id"].get<std::string>());
    pos = nl + 1;
    keep = pos;
  }
  if (keep < content.size() && truncate(path.c_str(), static_cast<off_t>(keep)) != 0) {
    return IoError("cannot trim the cut-short last line of '" + path + "'");
  }
  return done;
}

// The tokens one process may hold: the context the engine is started with.
size_t BatchContextTokens(const BatchFlags& f, const Session& s) {
  return std::min<size_t>(f.load.context_tokens, s.model().config().context_length);
}

// Every line is validated by the API's request parser (api/request.h), so a batch line and an
// API request mean the same by the same field names and are range-checked the same way.
StatusOr<std::vector<Job>> ReadJobs(const BatchFlags& f, const Session& s, const chat::ChatTemplate& tmpl,
                                    const std::set<std::string>& done) {
  std::ifstream in(f.input, std::ios::binary);
  if (!in) return NotFoundError("cannot open prompts file '" + f.input + "'");
  api::SpecDefaults defaults;
  defaults.sampling = f.gen.sampling;
  defaults.sampling.seed = f.gen.sampling.seed.value_or(kDefaultSeed);  // --seed (or its default) for lines without one
  defaults.max_tokens = f.gen.max_tokens < 0 ? 256 : static_cast<int32_t>(std::min<int64_t>(f.gen.max_tokens, 1 << 20));
  defaults.context_tokens = BatchContextTokens(f, s);
  defaults.vocab_size = s.tokenizer().vocab_size();
  std::vector<Job> jobs;
  std::set<std::string> ids;
  std::set<std::string> ignored;
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    const std::string where = f.input + ":" + std::to_string(line_no);
    if (line.size() > kMaxLineBytes) return InvalidArgumentError(where + ": line longer than 1 MiB");
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    if (jobs.size() >= kMaxPrompts) return InvalidArgumentError(where + ": more than 2^20 prompts");
    auto j = api::ParseJsonObject(line);
    if (!j.ok()) return j.status().Annotate(where);
    Job job;
    job.id = std::to_string(line_no);
    if (auto it = j->find("id"); it != j->end()) {
      if (!it->is_string()) return InvalidArgumentError(where + ": id: must be a string");
      job.id = it->get<std::string>();
    }
    if (!ids.insert(job.id).second) return InvalidArgumentError(where + ": id '" + job.id + "' repeats");
    if (done.count(job.id)) continue;
    auto request = api::ParseGenerationJson(api::Endpoint::kBatchLine, *j);
    if (!request.ok()) return request.status().Annotate(where);
    ignored.insert(request->ignored_fields.begin(), request->ignored_fields.end());
    if (request->use_chat_template) {
      auto ids_or = chat::EncodeConversation(s.tokenizer(), tmpl, request->messages, true);
      if (!ids_or.ok()) return ids_or.status().Annotate(where);
      job.prompt = *std::move(ids_or);
    } else {
      job.prompt = s.tokenizer().Encode(request->prompt, true, false);
    }
    auto spec = api::ToProcessSpec(*request, job.prompt, defaults);
    if (!spec.ok()) return spec.status().Annotate(where);
    job.spec = *std::move(spec);
    job.stop = f.gen.stop;
    job.stop.insert(job.stop.end(), request->stop.begin(), request->stop.end());
    for (std::string& e : tmpl.EndOfTurnStrings()) job.stop.push_back(std::move(e));
    jobs.push_back(std::move(job));
  }
  if (!ignored.empty()) {
    std::string names;
    for (const std::string& name : ignored) names += (names.empty() ? "" : ", ") + name;
    std::fprintf(stderr, "llmasos batch: ignored fields (not part of the line format): %s\n", names.c_str());
  }
  return jobs;
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
  auto done = DoneIds(f.output);
  if (!done.ok()) return ReportError(done.status());
  f.load.with_context = false;  // the engine has its own paged KV memory
  std::unique_ptr<Session> s = LoadSessionOrReport(f.load);
  if (!s) return 1;
  auto tmpl = chat::ChatTemplateFor(s->tokenizer(), f.chat_template);
  if (!tmpl.ok()) return ReportError(tmpl.status().Annotate(s->model_label()));
  auto jobs_or = ReadJobs(f, *s, *tmpl, *done);
  if (!jobs_or.ok()) return ReportError(jobs_or.status());
  std::vector<Job>& jobs = *jobs_or;
  std::fprintf(stderr, "llmasos batch: %zu prompts to run, %zu already done\n", jobs.size(), done->size());
  if (jobs.empty()) return 0;

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
  auto write_result = [&](const nlohmann::json& j) {
    const std::string line = j.dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), out);  // one write per line: a crash cuts at most one
    std::fflush(out);
  };

  // Every process streams into one channel; its events name the process.
  kernel::Channel channel;
  std::map<kernel::ProcessId, Running> running;
  g_stop = 0;
  auto previous = std::signal(SIGINT, OnInterrupt);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  size_t next_job = 0, finished = 0, tokens = 0;
  double last_progress = 0;
  int exit_code = 0;
  // Keep a few more processes queued than run, so the scheduler always has work to admit.
  const size_t window = f.parallel * 2;
  while (!g_stop && (next_job < jobs.size() || !running.empty())) {
    while (next_job < jobs.size() && running.size() < window) {
      Job& job = jobs[next_job++];
      auto id = engine.SubmitTo(channel, job.spec, job.stop);
      if (!id.ok()) {
        write_result({{"id", job.id}, {"text", ""}, {"finish_reason", "error"}, {"prompt_tokens", job.prompt.size()},
                      {"completion_tokens", 0}, {"error", id.status().ToString()}});
        ++finished;
        continue;
      }
      running.emplace(*id, Running{job.id, job.prompt.size(), ""});
    }
    if (running.empty()) continue;
    // A bounded wait, so an interrupt is noticed while a long step runs.
    StatusOr<kernel::StreamEvent> event = channel.Next(std::chrono::milliseconds(200));
    if (!event.ok()) {
      if (event.status().code() == StatusCode::kUnavailable) continue;
      ReportError(event.status());
      exit_code = 1;
      break;
    }
    auto it = running.find(event->id);
    if (it == running.end()) continue;
    Running& r = it->second;
    r.text += event->text;
    if (event->kind == kernel::StreamEvent::Kind::kToken) {
      ++tokens;
    } else {
      if (event->state != kernel::ProcessState::kFinished) {
        const Status engine_error = engine.Stats().error;
        if (!engine_error.ok()) {  // a failed step: no result line, as for a crash
          ReportError(engine_error);
          exit_code = 1;
          break;
        }
      }
      // Ended by the scheduler at max_tokens: "length"; by an end-of-generation token or a
      // stop string: "stop".
      const bool length = event->reason == kernel::EndReason::kLength;
      nlohmann::json j = {{"id", r.id}, {"text", r.text}, {"finish_reason", length ? "length" : "stop"},
                          {"prompt_tokens", r.prompt_tokens},
                          {"completion_tokens", event->accounting.num_generated_tokens}};
      if (event->state == kernel::ProcessState::kFailed || event->state == kernel::ProcessState::kCancelled) {
        j["finish_reason"] = "error";
        j["error"] = event->message.empty() ? std::string(kernel::EndReasonName(event->reason)) : event->message;
      }
      write_result(j);
      running.erase(it);
      ++finished;
    }
    if (event->kind == kernel::StreamEvent::Kind::kEnd || elapsed() - last_progress > 0.2) {
      last_progress = elapsed();
      PrintProgress(finished, jobs.size(), tokens, last_progress);
    }
  }
  engine.Shutdown();  // after an interrupt: cancels what is left, unrecorded, for the next run
  std::signal(SIGINT, previous);
  std::fclose(out);
  std::fputc('\n', stderr);
  if (g_stop) {
    std::fprintf(stderr, "llmasos batch: interrupted; %zu of %zu done. Run the same command to finish.\n",
                 finished, jobs.size());
    return 130;
  }
  return exit_code;
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
