// llmasos bench: prompt processing and token generation speed, measured as llama-bench does
// (pp: one batch of N prompt tokens; tg: N single-token steps; each after -d DEPTH tokens
// already in the cache, 0 by default), repeated, mean and standard deviation.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include "drivers/cpu/ops.h"
#include "shell/commands.h"

namespace llmasos::shell {
namespace {

struct BenchFlags {
  LoadOptions load;
  size_t prompt_tokens = 512;
  size_t gen_tokens = 128;
  size_t depth_tokens = 0;
  size_t repetitions = 5;
  bool json = false;
};

struct Figure {
  std::string test;
  double mean_tps = 0;
  double stddev_tps = 0;
  std::vector<double> samples;
};

Figure Summarize(std::string test, std::vector<double> tps) {
  Figure f{std::move(test), 0, 0, tps};
  for (double v : tps) f.mean_tps += v;
  f.mean_tps /= tps.size();
  for (double v : tps) f.stddev_tps += (v - f.mean_tps) * (v - f.mean_tps);
  f.stddev_tps = tps.size() > 1 ? std::sqrt(f.stddev_tps / (tps.size() - 1)) : 0;
  return f;
}

// Each timed run starts from the depth tokens already cached (computed once, untimed).
StatusOr<double> TimePrompt(Session& s, size_t depth, const std::vector<TokenId>& tokens,
                            std::vector<float>& logits) {
  s.context().Truncate(depth);
  auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(s.context().Forward(tokens, false, logits.data()));
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return tokens.size() / sec;
}

StatusOr<double> TimeGenerate(Session& s, size_t depth, const std::vector<TokenId>& tokens,
                              std::vector<float>& logits) {
  s.context().Truncate(depth);
  auto start = std::chrono::steady_clock::now();
  for (TokenId t : tokens) {
    RETURN_IF_ERROR(s.context().Forward(std::span<const TokenId>(&t, 1), false, logits.data()));
  }
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return tokens.size() / sec;
}

int BenchMain(BenchFlags& f) {
  f.load.context_tokens = f.depth_tokens + std::max(f.prompt_tokens, f.gen_tokens);
  // The pp test is one batch; the depth prefill runs in batches of at least 512.
  f.load.batch_tokens = std::max<size_t>({f.prompt_tokens, std::min<size_t>(f.depth_tokens, 512), 1});
  std::unique_ptr<Session> s = LoadSessionOrReport(f.load);
  if (!s) return 1;
  const arch::ModelConfig& c = s->model().config();
  if (s->context().max_tokens() < f.load.context_tokens) {
    return ReportError(InvalidArgumentError("the model's context (" + std::to_string(c.context_length) +
                                            " tokens) is shorter than the benchmark"));
  }
  std::mt19937 rng(42);
  std::uniform_int_distribution<TokenId> pick(0, static_cast<TokenId>(c.vocab_size - 1));
  std::vector<TokenId> pp(f.prompt_tokens), tg(f.gen_tokens), depth(f.depth_tokens);
  for (auto& t : pp) t = pick(rng);
  for (auto& t : tg) t = pick(rng);
  for (auto& t : depth) t = pick(rng);
  std::vector<float> logits(c.vocab_size);
  if (!depth.empty()) {
    s->context().Truncate(0);
    Status filled = s->context().Forward(depth, false, nullptr);
    if (!filled.ok()) return ReportError(filled);
  }
  const std::string at_depth = depth.empty() ? "" : " @ d" + std::to_string(depth.size());

  std::vector<Figure> figures;
  for (int which = 0; which < 2; ++which) {
    const std::vector<TokenId>& tokens = which == 0 ? pp : tg;
    if (tokens.empty()) continue;
    auto run = [&]() {
      return which == 0 ? TimePrompt(*s, depth.size(), tokens, logits)
                        : TimeGenerate(*s, depth.size(), tokens, logits);
    };
    auto warmup = run();
    if (!warmup.ok()) return ReportError(warmup.status());
    std::vector<double> tps;
    for (size_t r = 0; r < f.repetitions; ++r) {
      auto v = run();
      if (!v.ok()) return ReportError(v.status());
      tps.push_back(*v);
    }
    figures.push_back(Summarize((which == 0 ? "pp" : "tg") + std::to_string(tokens.size()) + at_depth, tps));
  }

  const double size_mib = s->model().file().size_bytes() / 1048576.0;
  const size_t threads = s->pool().num_threads();
  if (f.json) {
    nlohmann::json out;
    out["model"] = s->model_label();
    out["size_bytes"] = s->model().file().size_bytes();
    out["weight_bytes_per_token"] = s->model().weight_bytes();
    out["threads"] = threads;
    out["simd_target"] = cpu::ChosenTarget();
    out["kv_cache_bytes"] = s->context().kv_cache_bytes();
    out["cache_type_k"] = cpu::KvTypeName(f.load.cache_type_k);
    out["cache_type_v"] = cpu::KvTypeName(f.load.cache_type_v);
    out["depth"] = f.depth_tokens;
    struct rusage usage {};
    getrusage(RUSAGE_SELF, &usage);
    out["max_rss_bytes"] = static_cast<uint64_t>(usage.ru_maxrss) * 1024;  // Linux: KiB
    for (const Figure& fig : figures) {
      out["results"].push_back({{"test", fig.test}, {"tokens_per_second", fig.mean_tps},
                                {"stddev", fig.stddev_tps}, {"samples", fig.samples}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("| model | size | threads | simd | type_k | type_v | test | t/s |\n|---|---|---|---|---|---|---|---|\n");
  for (const Figure& fig : figures) {
    std::printf("| %s %s | %.1f MiB | %zu | %s | %s | %s | %s | %.2f ± %.2f |\n", c.architecture.c_str(),
                std::to_string(c.num_layers).append("L").c_str(), size_mib, threads,
                cpu::ChosenTarget(), std::string(cpu::KvTypeName(f.load.cache_type_k)).c_str(),
                std::string(cpu::KvTypeName(f.load.cache_type_v)).c_str(), fig.test.c_str(),
                fig.mean_tps, fig.stddev_tps);
  }
  return 0;
}

}  // namespace

void AddBenchCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand("bench", "measure prompt (pp) and generation (tg) tokens/s");
  AddLoadFlags(*cmd, &flags->load);
  cmd->add_option("-p,--n-prompt", flags->prompt_tokens, "prompt tokens per pp test (0 skips)")
      ->check(CLI::Range(0, 1 << 16));
  cmd->add_option("-n,--n-gen", flags->gen_tokens, "generated tokens per tg test (0 skips)")
      ->check(CLI::Range(0, 1 << 16));
  cmd->add_option("-d,--n-depth", flags->depth_tokens,
                  "tokens already in the KV cache before each test (as llama-bench's -d; default 0)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("-r,--repetitions", flags->repetitions, "timed repetitions of each test")
      ->check(CLI::Range(1, 1000));
  cmd->add_flag("--json", flags->json, "print JSON instead of a table");
  cmd->callback([flags, exit_code] { *exit_code = BenchMain(*flags); });
}

}  // namespace llmasos::shell
