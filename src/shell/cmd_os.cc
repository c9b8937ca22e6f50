// llmasos ps | kill ID | renice ID PRIO | sched [POLICY] [parameters] | jobs ...: the /os surface of a running daemon
// (docs/api.md), over the project's one HTTP client (registry::Fetch, libcurl). The daemon is
// found at --host/--port, else $LLMASOS_HOST (HOST:PORT), else 127.0.0.1:8080; one that cannot
// be reached is a clear error naming the address. Every call carries the API key of --api-key,
// else $LLMASOS_API_KEY, as "Authorization: Bearer KEY"; a 401 or 403 is an error that says
// which (no key, a bad key, or a key without the admin scope) and how to give one.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "services/registry/http_fetch.h"
#include "shell/commands.h"
#include "shell/sched_flags.h"

namespace llmasos::shell {
namespace {

using nlohmann::json;

struct DaemonFlags {
  std::string host;  // "" = $LLMASOS_HOST or 127.0.0.1
  int port = 0;      // 0 = $LLMASOS_HOST's or 8080
  std::string api_key;  // "" = $LLMASOS_API_KEY, else none
};

// The key the calls present: --api-key, else $LLMASOS_API_KEY, else "" (none).
std::string ApiKey(const DaemonFlags& f) {
  if (!f.api_key.empty()) return f.api_key;
  const char* env = std::getenv("LLMASOS_API_KEY");
  return env != nullptr ? env : "";
}

std::string BaseUrl(const DaemonFlags& f) {
  std::string host = "127.0.0.1";
  int port = 8080;
  if (const char* env = std::getenv("LLMASOS_HOST"); env != nullptr && *env != '\0') {
    std::string v = env;
    const size_t colon = v.rfind(':');
    if (colon != std::string::npos && colon + 1 < v.size()) {
      host = v.substr(0, colon);
      port = std::atoi(v.c_str() + colon + 1);
    } else {
      host = v;
    }
  }
  if (!f.host.empty()) host = f.host;
  if (f.port != 0) port = f.port;
  return "http://" + host + ":" + std::to_string(port);
}

class Collect : public registry::FetchSink {
 public:
  Status OnResponse(const registry::FetchResponse& r) override {
    status = r.status;
    return OkStatus();
  }
  Status OnBody(std::span<const uint8_t> bytes) override {
    if (body.size() + bytes.size() > (size_t{64} << 20)) return ResourceExhaustedError("answer over 64 MiB");
    body.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return OkStatus();
  }
  long status = 0;
  std::string body;
};

// The JSON answer of one call, or an error naming the daemon's address or its error message.
StatusOr<json> Call(const DaemonFlags& f, const std::string& method, const std::string& path, const std::string& body = "") {
  registry::FetchOptions o;
  const std::string base = BaseUrl(f);
  o.url = base + path;
  o.method = method;
  o.body = body;
  o.allow_private = true;  // the daemon is usually on loopback
  o.connect_timeout_s = 5;
  o.stall_timeout_s = 30;
  o.max_redirects = 0;
  const std::string key = ApiKey(f);
  // A key is one header line: a CR or LF in it would smuggle another header.
  if (key.find_first_of("\r\n") != std::string::npos) {
    return InvalidArgumentError("the API key (--api-key or LLMASOS_API_KEY) contains a line break");
  }
  if (!key.empty()) o.headers.push_back("Authorization: Bearer " + key);
  Collect sink;
  registry::FetchResult r = registry::Fetch(o, sink);
  if (!r.status.ok()) {
    return UnavailableError("cannot reach the daemon at " + base + " (is `llmasos serve` running there? " +
                            "--host/--port or LLMASOS_HOST=HOST:PORT say where): " + r.status.message());
  }
  json j = json::parse(sink.body, nullptr, false);
  if (j.is_discarded()) return InternalError(method + " " + path + ": the daemon answered " + std::to_string(sink.status) + " without JSON");
  if (sink.status >= 400) {
    std::string message = j.contains("error") && j["error"].is_object() ? j["error"].value("message", "") : j.dump();
    if (sink.status == 401) {
      return PermissionDeniedError(
          "the daemon at " + base + " refused " +
          (key.empty() ? std::string("the call without an API key") : std::string("the API key")) +
          " (401: " + message + "); give an admin key with --api-key KEY or LLMASOS_API_KEY=KEY " +
          "(`llmasos keys create --scopes admin` makes one)");
    }
    if (sink.status == 403) {
      return PermissionDeniedError("the API key is not allowed " + method + " " + path + " (403: " + message +
                                   "); the /os routes need a key with the admin scope");
    }
    return UnavailableError(std::to_string(sink.status) + ": " + message);
  }
  return j;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  return 1;
}

std::string Age(double seconds) {
  char buf[32];
  if (seconds < 60) std::snprintf(buf, sizeof(buf), "%.1fs", seconds);
  else std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(seconds) / 60, static_cast<int>(seconds) % 60);
  return buf;
}

int Ps(const DaemonFlags& f) {
  auto j = Call(f, "GET", "/os/processes");
  if (!j.ok()) return Fail(j.status());
  std::printf("%-10s %-28s %-12s %-9s %5s %7s %7s %6s %8s\n", "ID", "MODEL", "TENANT", "STATE", "PRIO", "PROMPT",
              "GEN", "KV", "AGE");
  for (const json& p : (*j)["processes"]) {
    const std::string model = p.value("model", "") + "@" + p.value("version", "");
    std::printf("%-10s %-28s %-12s %-9s %5d %7lld %7lld %6lld %8s\n", p.value("id", "").c_str(), model.c_str(),
                p.value("tenant", "").c_str(), p.value("state", "").c_str(), p.value("priority", 0),
                p.value("prompt_tokens", 0LL), p.value("generated_tokens", 0LL),
                p["kv_blocks"].value("resident", 0LL) + p["kv_blocks"].value("swapped", 0LL),
                Age(p.value("age_seconds", 0.0)).c_str());
  }
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

void AddDaemonFlags(CLI::App* cmd, DaemonFlags* f);

// --- llmasos jobs: /os/jobs ---

// The flags of `jobs submit`, named as `llmasos finetune`'s; only those given are sent.
struct JobFlags {
  std::string model;
  std::string data;
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

int JobsSubmit(const DaemonFlags& f, const JobFlags& j) {
  json body = {{"kind", "finetune"}, {"model", j.model.empty() ? std::string(kDefaultModelReference) : j.model}};
  std::error_code ec;
  // The daemon reads the file: send it as an absolute path (the daemon is on this machine).
  body["data"] = std::filesystem::absolute(j.data, ec).lexically_normal().string();
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
  CLI::App* submit = jobs->add_subcommand("submit", "queue a LoRA fine-tune (POST /os/jobs); flags as llmasos finetune's");
  submit->add_option("model", j->model, "base model: registry reference or .gguf path (default: the default model)");
  submit->add_option("--data", j->data, "JSONL file on the daemon's machine")->required();
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

void AddDaemonFlags(CLI::App* cmd, DaemonFlags* f) {
  cmd->add_option("--host", f->host, "the daemon's address (default: $LLMASOS_HOST, else 127.0.0.1)");
  cmd->add_option("--port", f->port, "the daemon's port (default: $LLMASOS_HOST's, else 8080)")->check(CLI::Range(1, 65535));
  cmd->add_option("--api-key", f->api_key, "the API key to send, with the admin scope (default: $LLMASOS_API_KEY)");
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
