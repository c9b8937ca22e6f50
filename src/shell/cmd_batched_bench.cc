// llmasos batched-bench: throughput of the kernel with many processes at once, in the manner
// of llama.cpp's llama-batched-bench. For each parallel count B: B processes, each with its own
// random prompt of --npp tokens, generate --ntg tokens each (end-of-generation ignored), all
// through one Engine (continuous batching over the paged KV memory). Reported as
// llama-batched-bench does: T_PP until every process has its first token (prompt phase),
// S_PP = B * npp / T_PP; T_TG the rest, S_TG = B * (ntg - 1) / T_TG; S = all tokens / T.
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "kernel/engine.h"
#include "shell/commands.h"

namespace llmasos::shell {
namespace {

struct BatchedBenchFlags {
  LoadOptions load;
  size_t npp = 128;
  size_t ntg = 128;
  std::string npl = "1,4,16,64";
  std::string policy = "fcfs";
  bool json = false;
};

struct Row {
  size_t parallel;
  double t_pp, s_pp, t_tg, s_tg, t, s;
};

StatusOr<Row> RunOne(Session& s, const BatchedBenchFlags& f, size_t parallel) {
  const arch::ModelConfig& c = s.model().config();
  kernel::EngineOptions o;
  o.policy = f.policy;
  o.ignore_eog = true;
  o.float_activations = f.load.float_activations;
  o.scheduler.max_running = parallel;
  o.scheduler.max_batch_tokens = std::max<size_t>(f.load.batch_tokens, parallel);
  o.scheduler.max_prefill_chunk_tokens = o.scheduler.max_batch_tokens;
  o.max_context = f.npp + f.ntg;
  // Room for every process at full length, in whole blocks.
  const size_t blocks = parallel * ((f.npp + f.ntg + o.kv_block_tokens - 1) / o.kv_block_tokens);
  o.cache_type_k = f.load.cache_type_k;
  o.cache_type_v = f.load.cache_type_v;
  RETURN_IF_ERROR(cpu::CheckKvTypesFit(o.cache_type_k, o.cache_type_v, c.head_dim));
  o.kv_budget_bytes = blocks * *kernel::KvBlockBytes(c.num_layers, c.kv_dim(), o.kv_block_tokens,
                                                     o.cache_type_k, o.cache_type_v);
  ASSIGN_OR_RETURN(std::unique_ptr<kernel::Engine> engine,
                   kernel::Engine::Create(s.model(), s.tokenizer(), s.pool(), o, RealClock()));
  std::mt19937 rng(static_cast<uint32_t>(parallel));
  std::uniform_int_distribution<kernel::TokenId> pick(0, static_cast<kernel::TokenId>(c.vocab_size - 1));
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < parallel; ++i) {
    kernel::ProcessSpec spec;
    spec.prompt.resize(f.npp);
    for (auto& t : spec.prompt) t = pick(rng);
    spec.sampling.temperature = 0;
    spec.limits.max_tokens = static_cast<int32_t>(f.ntg);
    RETURN_IF_ERROR(engine->Submit(std::move(spec)).status());
  }
  // Prompt phase: until every process has produced its first token.
  size_t first_tokens = 0;
  std::vector<bool> seen;
  engine->SetOutputCallback([&](kernel::ProcessId id, const kernel::TokenOutput&) {
    if (seen.size() <= id) seen.resize(id + 1, false);
    if (!seen[id]) {
      seen[id] = true;
      ++first_tokens;
    }
  });
  double t_pp = 0;
  while (engine->HasWork()) {
    RETURN_IF_ERROR(engine->Step().status());
    engine->TakeEnded();
    if (t_pp == 0 && first_tokens == parallel) {
      t_pp = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  }
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  Row r{parallel, t_pp, 0, t - t_pp, 0, t, 0};
  r.s_pp = parallel * f.npp / std::max(t_pp, 1e-9);
  r.s_tg = parallel * (f.ntg - 1) / std::max(r.t_tg, 1e-9);
  r.s = parallel * (f.npp + f.ntg) / std::max(t, 1e-9);
  return r;
}

int BatchedBenchMain(BatchedBenchFlags& f) {
  auto counts = ParseIntList(f.npl, "--npl", 1, 4096);
  if (!counts.ok()) return ReportError(counts.status());
  if (f.npp == 0 || f.ntg < 2) return ReportError(InvalidArgumentError("--npp must be >= 1 and --ntg >= 2"));
  f.load.with_context = false;  // the engine has its own paged KV memory
  std::unique_ptr<Session> s = LoadSessionOrReport(f.load);
  if (!s) return 1;
  std::vector<Row> rows;
  for (size_t b : *counts) {
    auto r = RunOne(*s, f, b);
    if (!r.ok()) return ReportError(r.status());
    rows.push_back(*r);
  }
  if (f.json) {
    nlohmann::json out;
    out["model"] = f.load.model_path;
    out["threads"] = s->pool().num_threads();
    out["simd_target"] = cpu::ChosenTarget();
    out["npp"] = f.npp;
    out["ntg"] = f.ntg;
    for (const Row& r : rows) {
      out["results"].push_back({{"parallel", r.parallel}, {"t_pp", r.t_pp}, {"s_pp", r.s_pp},
                                {"t_tg", r.t_tg}, {"s_tg", r.s_tg}, {"t", r.t}, {"s", r.s}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("|    PP |     TG |    B |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |\n"
              "|-------|--------|------|----------|----------|----------|----------|----------|----------|\n");
  for (const Row& r : rows) {
    std::printf("| %5zu | %6zu | %4zu | %8.3f | %8.2f | %8.3f | %8.2f | %8.3f | %8.2f |\n", f.npp, f.ntg,
                r.parallel, r.t_pp, r.s_pp, r.t_tg, r.s_tg, r.t, r.s);
  }
  return 0;
}

}  // namespace

void AddBatchedBenchCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<BatchedBenchFlags>();
  CLI::App* cmd = app.add_subcommand("batched-bench", "throughput with many processes at once (like llama-batched-bench)");
  AddLoadFlags(*cmd, &flags->load);
  cmd->add_option("--npp", flags->npp, "prompt tokens per process")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--ntg", flags->ntg, "generated tokens per process")->check(CLI::Range(2, 1 << 16));
  cmd->add_option("--npl", flags->npl, "comma-separated numbers of parallel processes");
  cmd->add_option("--policy", flags->policy, "scheduling policy: fcfs, sjf, rr, priority, fair");
  cmd->add_flag("--json", flags->json, "print JSON instead of a table");
  cmd->callback([flags, exit_code] { *exit_code = BatchedBenchMain(*flags); });
}

}  // namespace llmasos::shell
