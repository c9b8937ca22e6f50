// llmasos serve: the daemon. Opens the registry, starts the model manager (each loaded model
// with its own engine thread and thread pool), mounts the OpenAI and Ollama routes on the HTTP
// server, preloads --models, and serves until SIGINT or SIGTERM.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <thread>

#include "api/auth_gate.h"
#include "api/batch_job.h"
#include "api/daemon.h"
#include "api/http_server.h"
#include "api/os_request.h"
#include "services/auth/authenticator.h"
#include "services/registry/address_policy.h"
#include "services/jobs/job_runner.h"
#include "services/manager/loader.h"
#include "services/manager/model_service.h"
#include "shell/commands.h"
#include "shell/config_file.h"
#include "shell/sched_flags.h"

namespace llmasos::shell {
namespace {

struct ServeFlags {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string models;
  size_t parallel = 4;
  size_t ctx_size = 4096;
  size_t threads = 0;
  size_t batch_size = 512;
  size_t kv_mib = 0;
  cpu::KvType cache_type_k = cpu::KvType::kF16;
  cpu::KvType cache_type_v = cpu::KvType::kF16;
  size_t max_models = 1;
  size_t max_loras = 8;
  double keep_alive_s = 300;
  double load_wait_s = 2;
  size_t max_body_mib = 16;
  double request_timeout_s = 30;
  size_t io_threads = 2;
  bool allow_private_pull = false;
  std::string policy;  // "": config.toml's [scheduler] policy, else fcfs
  SchedulingFlags sched;
  size_t swap_mib = 0;
  std::string log_file;  // "": the request log goes to stderr
  bool log_prompts = false;
  double drain_timeout_s = 30;
  size_t max_queue = 64;
  std::string config;  // "": $LLMASOS_HOME/config.toml when it exists
  bool print_config = false;
  bool share_prefix_across_tenants = false;
  std::string tls_cert;  // both or neither: HTTPS
  std::string tls_key;
};

// Options that are not top-level configuration keys: the scheduler's live under [scheduler].
std::set<std::string> NotKeys() {
  std::set<std::string> keys = {"help", "config", "print-config"};
  keys.insert(SchedulingFlagNames().begin(), SchedulingFlagNames().end());
  return keys;
}

// The scheduler's settings every model instance starts with: the defaults, under the config
// file's [scheduler] table (when `path` is set), under the flags. Errors name the file's line
// or the flag's field.
StatusOr<kernel::SchedulingSettings> StartingScheduling(const ServeFlags& f, const std::string& path) {
  kernel::SchedulingUpdate from_file;
  if (!path.empty()) {
    ASSIGN_OR_RETURN(ConfigTable table, ReadConfigTable(path, "scheduler"));
    std::string param;
    auto update = api::ParseSchedulingUpdate(table.value, &param);
    if (!update.ok()) return InvalidArgumentError(table.where(param) + "[scheduler] " + update.status().message());
    from_file = *std::move(update);
  }
  ASSIGN_OR_RETURN(nlohmann::json flags_json, SchedulingFlagsJson(f.sched, f.policy));
  auto from_flags = api::ParseSchedulingUpdate(flags_json, nullptr);
  if (!from_flags.ok()) return from_flags.status().Annotate("scheduler flags");
  kernel::SchedulingSettings settings = from_flags->Over(from_file).AppliedTo({});
  RETURN_IF_ERROR(kernel::ValidateSchedulingSettings(settings));
  return settings;
}

std::vector<std::string> SplitList(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// The first SIGTERM or SIGINT drains: /ready turns 503, new requests get 503, and the requests
// in flight have `timeout_s` to finish (the rest are cancelled as the engines stop). A second
// signal stops at once. 0 when the drain ended by itself or by its timeout, 1 when a second
// signal cut it short.
int Drain(api::HttpServer& server, api::Daemon& daemon, const sigset_t& signals, double timeout_s) {
  daemon.draining.store(true);
  server.BeginDrain();
  std::fprintf(stderr, "llmasos serve: draining (%zu requests in flight, at most %g s; a second signal stops at once)\n",
               server.num_active(), timeout_s);
  std::fflush(stderr);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                                               std::chrono::duration<double>(timeout_s));
  while (server.num_active() > 0) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      std::fprintf(stderr, "llmasos serve: drain timeout; stopping %zu requests\n", server.num_active());
      break;
    }
    const std::chrono::steady_clock::duration wait = std::min<std::chrono::steady_clock::duration>(
        left, std::chrono::milliseconds(20));
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    if (sigtimedwait(&signals, nullptr, &ts) > 0) {
      std::fprintf(stderr, "llmasos serve: second signal; stopping now\n");
      return 1;
    }
  }
  std::fprintf(stderr, "llmasos serve: stopping\n");
  return 0;
}

// Test only (LLMASOS_TEST_LOAD_GATE=PATH): each load waits while PATH exists, at most
// kMaxGateWait, so an e2e test can hold a model in the loading state for as long as it needs
// without relying on how long a load takes. Unset (the default), the loader is not wrapped.
constexpr auto kMaxGateWait = std::chrono::seconds(120);

class GatedLoader : public manager::Loader {
 public:
  GatedLoader(std::unique_ptr<manager::Loader> inner, std::string gate)
      : inner_(std::move(inner)), gate_(std::move(gate)) {}
  uint64_t EstimateBytes(const registry::ResolvedModel& m) const override { return inner_->EstimateBytes(m); }
  StatusOr<std::unique_ptr<manager::LoadedModel>> Load(const registry::ResolvedModel& m) override {
    const auto deadline = std::chrono::steady_clock::now() + kMaxGateWait;
    while (::access(gate_.c_str(), F_OK) == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return inner_->Load(m);
  }

 private:
  const std::unique_ptr<manager::Loader> inner_;
  const std::string gate_;
};

int ServeMain(const ServeFlags& f, const kernel::SchedulingSettings& scheduling) {
  // Every thread started from here on inherits the mask: only the sigwait below sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto reg = registry::Registry::Open(registry::DefaultHome());
  if (!reg.ok()) return ReportError(reg.status());

  // Keys: without any, only this machine may connect (the daemon then serves without
  // authentication); any other address needs a key first.
  auto keys = auth::KeyStore::OpenDefault();
  if (!keys.ok()) return ReportError(keys.status());
  auto address = registry::ClassifyAddressText(f.host);
  const bool loopback = address.ok() && *address == registry::AddressClass::kLoopback;
  auto any_keys = (*keys)->AnyActiveKeys(api::UnixSeconds());
  if (!any_keys.ok()) return ReportError(any_keys.status());
  if (!loopback && !*any_keys) {
    return ReportError(FailedPreconditionError(
        "--host " + f.host + " is reachable from other machines and no API key exists, so anyone could use "
        "this daemon. Create a key first (llmasos keys create --tenant NAME --scopes infer), or serve on "
        "127.0.0.1"));
  }
  auth::AuthenticatorOptions auth_options;
  auth_options.open_without_keys = loopback;
  std::unique_ptr<auth::Authenticator> authenticator =
      auth::Authenticator::Create(std::move(keys).value(), auth_options);
  api::AuthGate gate(authenticator.get());

  manager::InstanceEngineOptions engine;
  const size_t threads = f.threads == 0 ? ThreadPool::DefaultNumThreads() : f.threads;
  // Each instance's share of the CPU: the threads divided among the models that may be
  // loaded at once.
  engine.num_threads = std::max<size_t>(1, threads / std::max<size_t>(f.max_models, 1));
  engine.context_tokens = f.ctx_size;
  engine.parallel = f.parallel;
  engine.batch_tokens = f.batch_size;
  engine.kv_budget_bytes = uint64_t{f.kv_mib} << 20;
  engine.cache_type_k = f.cache_type_k;
  engine.cache_type_v = f.cache_type_v;
  engine.scheduling = scheduling;
  engine.swap_budget_bytes = uint64_t{f.swap_mib} << 20;
  engine.max_queued = f.max_queue;
  engine.share_prefix_across_tenants = f.share_prefix_across_tenants;
  manager::GgufLoaderOptions loader;
  loader.engine = engine;
  // The kernel log (/os/events): made before the manager, which publishes into it until it is
  // destroyed (its instances' unloads).
  kernel::EventBus events;
  manager::ManagerOptions mo;
  mo.events = &events;
  mo.max_loaded_models = f.max_models;
  mo.max_adapters = f.max_loras;
  mo.default_keep_alive = f.keep_alive_s < 0 ? manager::Duration(-1)
                                             : std::chrono::duration_cast<manager::Duration>(
                                                   std::chrono::duration<double>(f.keep_alive_s));
  mo.reap_interval = std::chrono::seconds(1);
  mo.unload_in_background = true;
  std::unique_ptr<manager::Loader> gguf_loader = manager::NewGgufLoader(loader);
  if (const char* gate = std::getenv("LLMASOS_TEST_LOAD_GATE"); gate != nullptr && *gate != '\0') {
    std::fprintf(stderr, "llmasos serve: LLMASOS_TEST_LOAD_GATE is set: model loads wait while '%s' exists (for tests only)\n", gate);
    gguf_loader = std::make_unique<GatedLoader>(std::move(gguf_loader), gate);
  }
  auto manager = manager::ModelManager::Create(reg->get(), std::move(gguf_loader), mo);
  if (!manager.ok()) return ReportError(manager.status());
  manager::ModelService service(reg->get(), manager->get());

  // Jobs (/os/jobs): one job thread at the lowest CPU priority. A fine-tune waits between
  // optimiser steps while any loaded model has processes waiting or running; a batch job
  // feeds its prompts to the model's engine at the lowest priority, a few at a time.
  auto job_store = jobs::JobStore::Open(registry::DefaultHome() + "/state.db");
  if (!job_store.ok()) return ReportError(job_store.status());
  jobs::JobRunnerOptions jo;
  jo.jobs_dir = registry::DefaultHome() + "/jobs";
  jo.threads = threads;
  manager::ModelManager* models = manager->get();
  jo.inference_busy = [models] {
    bool busy = false;
    models->ForEachLoaded([&](uint64_t, const registry::Manifest&, const manager::LoadedModel& loaded) {
      if (loaded.engine != nullptr && loaded.engine->Stats().num_live > 0) busy = true;
    });
    return busy;
  };
  std::vector<std::unique_ptr<jobs::JobKind>> kinds;
  kinds.push_back(api::NewBatchJobKind(models, reg->get()));  // files of prompts (llmasos batch) as jobs
  auto job_runner = jobs::JobRunner::Start(job_store->get(), jo, std::move(kinds));
  if (!job_runner.ok()) return ReportError(job_runner.status());

  auto request_log = api::RequestLog::Open(f.log_file, f.log_prompts);
  if (!request_log.ok()) return ReportError(request_log.status());

  api::Daemon daemon;
  daemon.request_log = request_log->get();
  daemon.registry = reg->get();
  daemon.manager = manager->get();
  daemon.service = &service;
  daemon.jobs = job_runner->get();
  daemon.events = &events;
  daemon.allow_private_pull = f.allow_private_pull;
  daemon.load_wait = std::chrono::milliseconds(std::llround(f.load_wait_s * 1000));
  api::Router router;
  api::AddRoutes(router, daemon);
  router.SetGate(&gate);

  api::HttpServerOptions so;
  so.host = f.host;
  so.port = f.port;
  so.io_threads = f.io_threads;
  so.max_body_bytes = f.max_body_mib << 20;
  so.request_timeout = std::chrono::milliseconds(static_cast<int64_t>(f.request_timeout_s * 1000));
  so.on_request_end = [&daemon](const api::HttpRequest& request, const api::RequestRecord& record) {
    api::OnRequestEnd(daemon, request, record);
  };
  so.drain_exempt_paths = {"/health", "/ready", "/metrics"};
  so.tls_cert_file = f.tls_cert;
  so.tls_key_file = f.tls_key;
  auto server = api::HttpServer::Start(so, &router);
  if (!server.ok()) return ReportError(server.status());
  const char* scheme = f.tls_cert.empty() ? "http" : "https";
  std::fprintf(stderr, "llmasos serve: listening on %s://%s:%u (%zu threads per model, %zu parallel, context %zu)\n",
               scheme, f.host.c_str(), static_cast<unsigned>((*server)->port()), engine.num_threads, f.parallel,
               f.ctx_size);
  // The web console (api/console.h); an IPv6 address goes in brackets in a URL.
  const std::string url_host = f.host.find(':') == std::string::npos ? f.host : "[" + f.host + "]";
  std::fprintf(stderr, "console: %s://%s:%u/\n", scheme, url_host.c_str(), static_cast<unsigned>((*server)->port()));
  auto keys_ever = authenticator->store().AnyKeys();  // once a key exists, one is always needed
  const bool keys_required = !loopback || !keys_ever.ok() || *keys_ever;
  std::fprintf(stderr, "llmasos serve: %s\n",
               keys_required ? "API keys required (llmasos keys list)"
                         : "no API keys: serving this machine's clients without authentication until one is "
                           "created (llmasos keys create)");
  std::fflush(stderr);

  int exit_code = 0;
  for (const std::string& model : SplitList(f.models)) {
    manager::LoadRequest load;
    load.model = model;
    load.keep_alive = manager::Duration(-1);  // preloaded models stay
    auto loaded = service.Load(load);
    if (!loaded.ok()) {
      ReportError(loaded.status().Annotate("preloading --models " + model));
      exit_code = 1;
      break;
    }
    std::fprintf(stderr, "llmasos serve: loaded %s (%s@%s)\n", model.c_str(), loaded->name.c_str(),
                 loaded->version.c_str());
  }
  if (exit_code == 0) {
    daemon.ready.store(true);
    int sig = 0;
    sigwait(&signals, &sig);
    exit_code = Drain(**server, daemon, signals, f.drain_timeout_s);
  }
  (*server)->Stop();
  server->reset();
  return exit_code;
}

}  // namespace

void AddServeCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "the daemon: OpenAI- and Ollama-compatible HTTP API");
  cmd->option_defaults()->always_capture_default();  // --print-config shows the defaults
  cmd->add_option("--host", f->host, "address to listen on (default 127.0.0.1)");
  cmd->add_option("--port", f->port, "port to listen on (default 8080; 0: any free port)");
  cmd->add_option("--models", f->models, "models to load at start, comma-separated references");
  cmd->add_option("--parallel", f->parallel, "processes each model runs at once (default 4)")
      ->check(CLI::Range(1, 4096));
  AddEngineSizeFlags(*cmd, {.num_threads = &f->threads,
                            .threads_help = "CPU threads, shared by the loaded models (default 0: all cores)",
                            .context_tokens = &f->ctx_size,
                            .context_help = "context per process in tokens (default 4096, clamped to the model's)",
                            .batch_tokens = &f->batch_size,
                            .batch_help = "tokens per forward pass (default 512)",
                            .cache_type_k = &f->cache_type_k,
                            .cache_type_v = &f->cache_type_v});
  cmd->add_option("--kv-mib", f->kv_mib, "KV memory per model in MiB (default: parallel x ctx-size)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--max-models", f->max_models, "models loaded at once (default 1); each gets threads / max-models")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--max-loras", f->max_loras,
                  "LoRA adapters kept loaded per model for requests naming base+adapter (default 8; the least "
                  "recently used goes first)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--keep-alive", f->keep_alive_s,
                  "seconds a model stays loaded after its last request (default 300; negative: forever)")
      ->check(FiniteRange(-1e9, 1e9));
  cmd->add_option("--load-wait", f->load_wait_s,
                  "seconds a request waits for a model another request is loading before its 503 with "
                  "Retry-After (default 2; 0: answer at once)")
      ->check(FiniteRange(0.0, 3600.0));
  cmd->add_option("--policy", f->policy, "scheduling policy: fcfs, sjf, rr, priority, fair (default fcfs)")
      ->check(CLI::IsMember(std::vector<std::string>(std::begin(kernel::kPolicyNames), std::end(kernel::kPolicyNames))))
      ->always_capture_default(false)
      ->default_str("");
  AddSchedulingFlags(*cmd, &f->sched);
  cmd->add_option("--swap-mib", f->swap_mib,
                  "host memory per model that preempted processes' KV may be swapped out to, in MiB "
                  "(default 0: preemption recomputes)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--max-body-mib", f->max_body_mib, "largest request body in MiB (default 16)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--request-timeout", f->request_timeout_s,
                  "seconds a client has to send a whole request (default 30)")
      ->check(FiniteRange(0.1, 3600.0));
  cmd->add_option("--io-threads", f->io_threads, "threads doing network I/O (default 2)")->check(CLI::Range(1, 64));
  cmd->add_flag("--allow-private-pull", f->allow_private_pull,
                "let /api/pull fetch from loopback, private and link-local addresses");
  cmd->add_option("--max-queue", f->max_queue,
                  "processes each model keeps waiting beyond --parallel; more get 503 with Retry-After (default 64)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--log-file", f->log_file, "append the request log (one JSON line per request) here instead of stderr");
  cmd->add_flag("--log-prompts", f->log_prompts, "write the prompt text in the request log (off: it may be private)");
  cmd->add_option("--drain-timeout", f->drain_timeout_s,
                  "seconds requests in flight have to finish after SIGTERM/SIGINT (default 30)")
      ->check(FiniteRange(0.0, 3600.0));
  cmd->add_flag("--share-prefix-across-tenants", f->share_prefix_across_tenants,
                "let tenants share cached prompt prefixes (by default each tenant's are kept apart)");
  cmd->add_option("--tls-cert", f->tls_cert,
                  "serve HTTPS with this PEM certificate chain (needs --tls-key; default: plain HTTP)");
  cmd->add_option("--tls-key", f->tls_key, "the PEM private key of --tls-cert (unencrypted)");
  cmd->add_option("--config", f->config,
                  "TOML file of flags (key = flag without dashes; flags given here win; default "
                  "$LLMASOS_HOME/config.toml when it exists)");
  cmd->add_flag("--print-config", f->print_config, "print the effective configuration as TOML and exit");
  cmd->callback([f, cmd, exit_code] {
    std::string path = f->config;
    if (path.empty()) {
      std::error_code ec;
      const std::string home_config = registry::DefaultHome() + "/config.toml";
      if (std::filesystem::exists(home_config, ec)) path = home_config;
    }
    if (!path.empty()) {
      if (Status s = ApplyConfigFile(*cmd, path, NotKeys(), {"scheduler"}); !s.ok()) {
        *exit_code = ReportError(s);
        return;
      }
    }
    StatusOr<kernel::SchedulingSettings> scheduling = StartingScheduling(*f, path);
    if (!scheduling.ok()) {
      *exit_code = ReportError(scheduling.status());
      return;
    }
    if (f->print_config) {
      const std::string text = EffectiveConfigToml(*cmd, NotKeys()) + "\n" +
                               TomlTableText("scheduler", api::SchedulingSettingsJson(*scheduling));
      std::fputs(text.c_str(), stdout);
      *exit_code = 0;
      return;
    }
    *exit_code = ServeMain(*f, *scheduling);
  });
}

}  // namespace llmasos::shell
