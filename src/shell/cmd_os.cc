// llmasos ps | kill ID | renice ID PRIO | sched [POLICY] [parameters] | jobs ...: the /os surface of a running daemon
// (docs/api.md), through the shell's daemon client (daemon_client.h: address, API key, errors).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "shell/commands.h"
#include "shell/daemon_client.h"
#include "shell/sched_flags.h"

namespace llmasos::shell {
namespace {

using nlohmann::json;

int Ps(const DaemonFlags& f) {
  auto j = Call(f, "GET", "/os/processes");
  if (!j.ok()) return Fail(j.status());
  std::fputs(FormatProcessTable((*j)["processes"]).c_str(), stdout);
  return 0;
}

int Kill(const DaemonFlags& f, const std::string& id) {
  auto j = Call(f, "DELETE", "/os/processes/" + id);
  if (!j.ok()) return Fail(j.status());
  std::printf("killed %s\n", id.c_str());
  return 0;
}

int Renice(const DaemonFlags& f, const std::string& id, int priority) {
  auto j = Call(f, "PATCH", "/os/processes/" + id, json{{"priority", priority}}.dump());
  if (!j.ok()) return Fail(j.status());
  std::printf("%s priority %d\n", id.c_str(), priority);
  return 0;
}

std::string Number(const json& v) {
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v.is_number() ? v.get<double>() : 0.0);
  return buf;
}

// One instance's scheduler, as GET /os/scheduler's row says it.
void PrintScheduler(const json& i) {
  std::printf("%llu %s@%s policy %s\n", i.value("instance", 0ULL), i.value("model", "").c_str(),
              i.value("version", "").c_str(), i.value("policy", "").c_str());
  const json fair = i.value("fair", json::object());
  std::string weights;
  const json table = fair.value("weights", json::object());
  for (const auto& [tenant, w] : table.items()) weights += " " + tenant + "=" + Number(w);
  std::printf("  fair:       weights%s, default %s\n", weights.empty() ? " (none)" : weights.c_str(),
              Number(fair.value("default_weight", json(1))).c_str());
  std::printf("  rr:         slice %s tokens\n", Number(i.value("rr", json::object()).value("slice_tokens", json(0))).c_str());
  std::printf("  sjf:        aging %s tokens/s\n",
              Number(i.value("sjf", json::object()).value("aging_tokens_per_second", json(0))).c_str());
  std::printf("  priority:   aging %s levels/s\n",
              Number(i.value("priority", json::object()).value("aging_per_second", json(0))).c_str());
  const json p = i.value("preemption", json::object());
  std::printf("  preemption: mode %s, waiting may preempt %s, min tokens before preempt %s "
              "(costs: swap %s s/byte, recompute %s s/token)\n",
              p.value("mode", "").c_str(), p.value("waiting_may_preempt", false) ? "yes" : "no",
              Number(p.value("min_tokens_before_preempt", json(0))).c_str(),
              Number(p.value("swap_seconds_per_byte", json(0))).c_str(),
              Number(p.value("recompute_seconds_per_token", json(0))).c_str());
}

struct SchedArgs {
  std::string policy;
  SchedulingFlags flags;
  uint64_t instance = 0;  // 0: every loaded instance
};

int Sched(const DaemonFlags& f, const SchedArgs& a) {
  auto body = SchedulingFlagsJson(a.flags, a.policy);
  if (!body.ok()) return Fail(body.status());
  const bool show = body->empty();
  if (a.instance != 0) (*body)["instance"] = a.instance;
  auto j = show ? Call(f, "GET", "/os/scheduler") : Call(f, "PUT", "/os/scheduler", body->dump());
  if (!j.ok()) return Fail(j.status());
  for (const json& i : (*j)["instances"]) {
    if (a.instance == 0 || i.value("instance", uint64_t{0}) == a.instance) PrintScheduler(i);
  }
  return 0;
}

// --- llmasos jobs: /os/jobs ---

// The flags of `jobs submit`: a fine-tune's named as `llmasos finetune`'s, a batch's as the
// spec's fields (api/batch_job.h); only those given are sent.
struct JobFlags {
  std::string kind = "finetune";
  std::string model;
  std::string data;
  std::string input, output, options;
  std::optional<int64_t> parallel;
  std::string name, version, targets, chat_template;
  std::optional<int64_t> rank, steps, epochs, batch, max_len, warmup, eval_every, checkpoint_every, seed, threads;
  std::optional<double> alpha, dropout, lr, weight_decay, clip, eval_split;
};

std::string Num(const json& v, const char* format) {
  if (!v.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), format, v.get<double>());
  return buf;
}

// The daemon reads and writes the files: they go as absolute paths (it is on this machine).
std::string AbsolutePath(const std::string& path) {
  std::error_code ec;
  return std::filesystem::absolute(path, ec).lexically_normal().string();
}

int JobsSubmitBatch(const DaemonFlags& f, const JobFlags& j) {
  if (j.input.empty() || j.output.empty()) {
    return Fail(InvalidArgumentError("a batch job needs --input (prompts, JSONL) and --output (results)"));
  }
  if (!j.data.empty()) return Fail(InvalidArgumentError("--data is a fine-tune's; a batch job reads --input"));
  json body = {{"kind", "batch"},
               {"model", j.model.empty() ? std::string(kDefaultModelReference) : j.model},
               {"input", AbsolutePath(j.input)},
               {"output", AbsolutePath(j.output)}};
  if (!j.options.empty()) {
    json options = json::parse(j.options, nullptr, false);
    if (!options.is_object()) return Fail(InvalidArgumentError("--options must be a JSON object, as '{\"temperature\": 0}'"));
    body["options"] = std::move(options);
  }
  if (j.parallel) body["parallel"] = *j.parallel;
  auto r = Call(f, "POST", "/os/jobs", body.dump());
  if (!r.ok()) return Fail(r.status());
  std::printf("%s %s\n", r->value("id", "").c_str(), r->value("state", "").c_str());
  return 0;
}

int JobsSubmit(const DaemonFlags& f, const JobFlags& j) {
  if (j.kind == "batch") return JobsSubmitBatch(f, j);
  if (j.data.empty()) return Fail(InvalidArgumentError("a fine-tune needs --data (a JSONL file)"));
  if (!j.input.empty() || !j.output.empty() || !j.options.empty() || j.parallel) {
    return Fail(InvalidArgumentError("--input, --output, --options and --parallel are a batch job's (--kind batch)"));
  }
  json body = {{"kind", "finetune"}, {"model", j.model.empty() ? std::string(kDefaultModelReference) : j.model}};
  body["data"] = AbsolutePath(j.data);
  for (const auto& [key, value] : {std::pair{"name", &j.name}, {"version", &j.version}, {"targets", &j.targets},
                                   {"chat_template", &j.chat_template}}) {
    if (!value->empty()) body[key] = *value;
  }
  for (const auto& [key, value] : {std::pair{"rank", &j.rank}, {"steps", &j.steps}, {"epochs", &j.epochs},
                                   {"batch", &j.batch}, {"max_len", &j.max_len}, {"warmup", &j.warmup},
                                   {"eval_every", &j.eval_every}, {"checkpoint_every", &j.checkpoint_every},
                                   {"seed", &j.seed}, {"threads", &j.threads}}) {
    if (*value) body[key] = **value;
  }
  for (const auto& [key, value] : {std::pair{"alpha", &j.alpha}, {"dropout", &j.dropout}, {"lr", &j.lr},
                                   {"weight_decay", &j.weight_decay}, {"clip", &j.clip},
                                   {"eval_split", &j.eval_split}}) {
    if (*value) body[key] = **value;
  }
  auto r = Call(f, "POST", "/os/jobs", body.dump());
  if (!r.ok()) return Fail(r.status());
  std::printf("%s %s\n", r->value("id", "").c_str(), r->value("state", "").c_str());
  return 0;
}

int JobsList(const DaemonFlags& f) {
  auto r = Call(f, "GET", "/os/jobs");
  if (!r.ok()) return Fail(r.status());
  std::printf("%-8s %-9s %-10s %11s %9s %-28s %s\n", "ID", "KIND", "STATE", "STEP", "LOSS", "MODEL", "ADAPTER");
  for (const json& j : (*r)["jobs"]) {
    const json& p = j["progress"];
    const std::string step = std::to_string(p.value("step", 0LL)) + "/" + std::to_string(p.value("total_steps", 0LL));
    const std::string model = j["spec"].is_object() ? j["spec"].value("model", "") : "";
    std::printf("%-8s %-9s %-10s %11s %9s %-28s %s\n", j.value("id", "").c_str(), j.value("kind", "").c_str(),
                j.value("state", "").c_str(), step.c_str(), Num(p["loss"], "%.4f").c_str(), model.c_str(),
                j["adapter"].is_string() ? j["adapter"].get<std::string>().c_str() : "-");
  }
  return 0;
}

int JobsStatus(const DaemonFlags& f, const std::string& id) {
  auto r = Call(f, "GET", "/os/jobs/" + id);
  if (!r.ok()) return Fail(r.status());
  const json& j = *r;
  const json& p = j["progress"];
  std::printf("id           %s\n", j.value("id", "").c_str());
  std::printf("state        %s\n", j.value("state", "").c_str());
  std::printf("step         %lld/%lld (epoch %s)\n", p.value("step", 0LL), p.value("total_steps", 0LL),
              Num(p["epoch"], "%.0f").c_str());
  std::printf("loss         %s (held out %s)\n", Num(p["loss"], "%.4f").c_str(), Num(p["eval_loss"], "%.4f").c_str());
  std::printf("throughput   %s tokens/s, %s s left\n", Num(p["tokens_per_second"], "%.0f").c_str(),
              Num(p["seconds_left"], "%.0f").c_str());
  if (j["adapter"].is_string()) std::printf("adapter      %s\n", j["adapter"].get<std::string>().c_str());
  if (j["error"].is_string()) std::printf("error        %s\n", j["error"].get<std::string>().c_str());
  std::printf("spec         %s\n", j["spec"].dump().c_str());
  return 0;
}

int JobsAct(const DaemonFlags& f, const std::string& id, const std::string& action) {
  auto r = Call(f, "POST", "/os/jobs/" + id + "/" + action);
  if (!r.ok()) return Fail(r.status());
  std::printf("%s %s\n", r->value("id", "").c_str(), r->value("state", "").c_str());
  return 0;
}

int JobsLogs(const DaemonFlags& f, const std::string& id) {
  auto r = Call(f, "GET", "/os/jobs/" + id + "/logs");
  if (!r.ok()) return Fail(r.status());
  for (const json& l : (*r)["lines"]) std::printf("%s\n", l.value("line", "").c_str());
  return 0;
}

void AddJobsCommands(CLI::App& app, const std::shared_ptr<DaemonFlags>& f, int* exit_code) {
  CLI::App* jobs = app.add_subcommand("jobs", "training jobs on the running daemon (/os/jobs)");
  jobs->require_subcommand(1);
  auto j = std::make_shared<JobFlags>();
  CLI::App* submit = jobs->add_subcommand(
      "submit", "queue a LoRA fine-tune (flags as llmasos finetune's) or a file of prompts (--kind batch) (POST /os/jobs)");
  submit->add_option("--kind", j->kind, "finetune (default) or batch")->check(CLI::IsMember({"finetune", "batch"}));
  submit->add_option("model", j->model, "the model: registry reference (or a fine-tune's .gguf path; default: the default model)");
  submit->add_option("--data", j->data, "fine-tune: JSONL training file on the daemon's machine");
  submit->add_option("--input", j->input, "batch: prompts, JSONL as llmasos batch reads, on the daemon's machine");
  submit->add_option("--output", j->output, "batch: results, JSON lines (appended; answered ids are skipped)");
  submit->add_option("--options", j->options, "batch: JSON object of defaults for every line, as '{\"temperature\": 0}'");
  submit->add_option("--parallel", j->parallel, "batch: prompts in flight at once (default 2)")->check(CLI::Range(1, 64));
  submit->add_option("--name", j->name, "registry name of the adapter (default: BASE-lora)");
  submit->add_option("--version", j->version, "semantic version of the adapter");
  submit->add_option("--targets", j->targets, "projections to adapt: q,k,v,o,gate,up,down or all");
  submit->add_option("--chat-template", j->chat_template, "use this template instead of the model's");
  submit->add_option("--rank", j->rank, "LoRA rank");
  submit->add_option("--alpha", j->alpha, "LoRA alpha");
  submit->add_option("--dropout", j->dropout, "LoRA dropout probability");
  submit->add_option("--lr", j->lr, "peak learning rate");
  submit->add_option("--warmup", j->warmup, "warm-up steps");
  submit->add_option("--weight-decay", j->weight_decay, "AdamW weight decay");
  submit->add_option("--clip", j->clip, "gradient clipping norm");
  submit->add_option("--epochs", j->epochs, "passes over the data");
  submit->add_option("--steps", j->steps, "optimiser steps (overrides --epochs)");
  submit->add_option("--batch", j->batch, "packed rows per step");
  submit->add_option("--max-len", j->max_len, "tokens per packed row");
  submit->add_option("--eval-split", j->eval_split, "fraction held out");
  submit->add_option("--eval-every", j->eval_every, "evaluate every N steps");
  submit->add_option("--checkpoint-every", j->checkpoint_every, "checkpoint every N steps (default 10)");
  submit->add_option("--seed", j->seed, "seed");
  submit->add_option("--train-threads", j->threads, "threads the job trains on (default: the daemon's)");
  AddDaemonFlags(submit, f.get());
  submit->callback([f, j, exit_code] { *exit_code = JobsSubmit(*f, *j); });

  CLI::App* list = jobs->add_subcommand("list", "every job, newest first (GET /os/jobs)");
  AddDaemonFlags(list, f.get());
  list->callback([f, exit_code] { *exit_code = JobsList(*f); });

  auto id = std::make_shared<std::string>();
  struct Verb {
    const char* name;
    const char* help;
  };
  for (const Verb& v : {Verb{"status", "one job's state, progress and adapter (GET /os/jobs/ID)"},
                        Verb{"logs", "one job's log (GET /os/jobs/ID/logs)"},
                        Verb{"pause", "pause a job after its current step (POST /os/jobs/ID/pause)"},
                        Verb{"resume", "queue a paused job again (POST /os/jobs/ID/resume)"},
                        Verb{"cancel", "cancel a job (POST /os/jobs/ID/cancel)"}}) {
    CLI::App* cmd = jobs->add_subcommand(v.name, v.help);
    cmd->add_option("id", *id, "the job id, job-N as `llmasos jobs list` shows it")->required();
    AddDaemonFlags(cmd, f.get());
    const std::string verb = v.name;
    cmd->callback([f, id, verb, exit_code] {
      if (verb == "status") *exit_code = JobsStatus(*f, *id);
      else if (verb == "logs") *exit_code = JobsLogs(*f, *id);
      else *exit_code = JobsAct(*f, *id, verb);
    });
  }
}

}  // namespace

void AddOsCommands(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<DaemonFlags>();
  CLI::App* ps = app.add_subcommand("ps", "list the running daemon's processes (GET /os/processes)");
  AddDaemonFlags(ps, f.get());
  ps->callback([f, exit_code] { *exit_code = Ps(*f); });

  auto id = std::make_shared<std::string>();
  CLI::App* kill = app.add_subcommand("kill", "kill a process of the running daemon (DELETE /os/processes/ID)");
  kill->add_option("id", *id, "the process id, INSTANCE-PID as `llmasos ps` shows it")->required();
  AddDaemonFlags(kill, f.get());
  kill->callback([f, id, exit_code] { *exit_code = Kill(*f, *id); });

  auto priority = std::make_shared<int>(0);
  CLI::App* renice = app.add_subcommand("renice", "give a process a new priority (PATCH /os/processes/ID)");
  renice->add_option("id", *id, "the process id, INSTANCE-PID")->required();
  renice->add_option("priority", *priority, "the new priority, -1000..1000")->required()->check(CLI::Range(-1000, 1000));
  AddDaemonFlags(renice, f.get());
  renice->callback([f, id, priority, exit_code] { *exit_code = Renice(*f, *id, *priority); });

  auto sched_args = std::make_shared<SchedArgs>();
  CLI::App* sched = app.add_subcommand(
      "sched", "show, or set, the scheduling policy and its parameters of every loaded model (/os/scheduler)");
  sched->add_option("policy", sched_args->policy, "fcfs, sjf, rr, priority or fair (none: keep the policy)")
      ->check(CLI::IsMember(std::vector<std::string>(std::begin(kernel::kPolicyNames), std::end(kernel::kPolicyNames))));
  AddSchedulingFlags(*sched, &sched_args->flags);
  sched->add_option("--instance", sched_args->instance, "show or change only this model instance (default: all)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 62));
  AddDaemonFlags(sched, f.get());
  sched->callback([f, sched_args, exit_code] { *exit_code = Sched(*f, *sched_args); });

  AddJobsCommands(app, f, exit_code);
}

}  // namespace llmasos::shell
