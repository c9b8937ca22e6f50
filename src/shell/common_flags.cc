#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <tuple>

#include "shell/commands.h"

namespace llmasos::shell {

CLI::Validator FiniteRange(double lo, double hi) {
  char desc[96];
  std::snprintf(desc, sizeof(desc), "FLOAT in [%g, %g]", lo, hi);
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (end == text.c_str() || *end != '\0' || !std::isfinite(v)) return "'" + text + "' is not a finite number";
        if (v < lo || v > hi) {
          char range[96];
          std::snprintf(range, sizeof(range), "[%g, %g]", lo, hi);
          return "'" + text + "' is not in " + range;
        }
        return "";
      },
      desc);
}

void AddEngineSizeFlags(CLI::App& cmd, const EngineSizeFlags& flags) {
  if (flags.num_threads != nullptr) {
    cmd.add_option("-t,--threads", *flags.num_threads, flags.threads_help)->check(CLI::Range(0, 1024));
  }
  if (flags.context_tokens != nullptr) {
    // Two tokens at least: one of prompt and one generated (or an embedding's end step).
    cmd.add_option("-c,--ctx-size", *flags.context_tokens, flags.context_help)->check(CLI::Range(2, 1 << 24));
  }
  if (flags.batch_tokens != nullptr) {
    cmd.add_option("-b,--batch-size", *flags.batch_tokens, flags.batch_help)->check(CLI::Range(1, 1 << 16));
  }
  CHECK((flags.cache_type_k == nullptr) == (flags.cache_type_v == nullptr));
  if (flags.cache_type_k != nullptr) {
    for (auto [flag, target, what] : {std::tuple{"--cache-type-k", flags.cache_type_k, "keys"},
                                      std::tuple{"--cache-type-v", flags.cache_type_v, "values"}}) {
      // Plain copies: a lambda may not capture structured bindings before C++20 in clang 14.
      const char* name = flag;
      cpu::KvType* type = target;
      cmd.add_option_function<std::string>(
             name,
             [type, name](const std::string& text) {
               StatusOr<cpu::KvType> parsed = cpu::ParseKvType(text, name);
               if (!parsed.ok()) throw CLI::ValidationError(parsed.status().message());
               *type = *parsed;
             },
             std::string("element type of the KV cache's ") + what + ": " +
                 std::string(cpu::kKvTypeNames) + " (q8_0 needs a head dimension that is a multiple of 32)")
          ->type_name("TYPE")
          ->default_str(std::string(cpu::KvTypeName(*type)));
    }
  }
}

void AddLoadFlags(CLI::App& cmd, LoadOptions* options) {
  options->model_path.clear();
  cmd.add_option("model", options->model_path,
                 "a .gguf file or a registry reference (name, name:tag, name@version, name@^1.2); "
                 "default: " + std::string(kDefaultModelReference) +
                     " from the registry, else the downloaded default model file");
  AddEngineSizeFlags(cmd, {.num_threads = &options->num_threads,
                           .context_tokens = &options->context_tokens,
                           .batch_tokens = &options->batch_tokens,
                           .cache_type_k = &options->cache_type_k,
                           .cache_type_v = &options->cache_type_v});
  cmd.add_option("--lora", options->loras,
                 "merge a LoRA adapter into the weights: FILE or registry reference, optionally "
                 ":scale (repeatable)")
      ->allow_extra_args(false);  // one value per --lora, so MODEL after it stays the model
  cmd.add_flag("--float-activations", options->float_activations,
               "multiply in float32, not 8-bit activations (slow; equals the exact reference)");
}

void AddSamplingFlags(CLI::App& cmd, GenerateOptions* options) {
  sampling::SamplingParams& s = options->sampling;
  cmd.add_option("--temp", s.temperature, "temperature; 0 = greedy")->check(FiniteRange(0.0, 100.0));
  cmd.add_option("--top-k", s.top_k, "keep the k most likely tokens; 0 disables")->check(CLI::Range(0, 1 << 24));
  cmd.add_option("--top-p", s.top_p, "nucleus sampling threshold; 1 disables")->check(FiniteRange(0.0, 1.0));
  cmd.add_option("--min-p", s.min_p, "drop tokens below min-p x the top probability; 0 disables")
      ->check(FiniteRange(0.0, 1.0));
  cmd.add_option("--repeat-penalty", s.repeat_penalty, "penalty for repeated tokens; 1 disables")
      ->check(FiniteRange(0.0, 100.0));
  cmd.add_option("--repeat-last-n", s.penalty_last_n, "tokens the penalties look back over")
      ->check(CLI::Range(0, 1 << 20));
  cmd.add_option("--presence-penalty", s.presence_penalty, "subtracted once from seen tokens")
      ->check(FiniteRange(-100.0, 100.0));
  cmd.add_option("--frequency-penalty", s.frequency_penalty, "subtracted per occurrence")
      ->check(FiniteRange(-100.0, 100.0));
  cmd.add_option_function<uint64_t>(
      "-s,--seed", [&s](const uint64_t& seed) { s.seed = seed; },
      "random seed (same seed, same output; default " + std::to_string(kDefaultSeed) + ")");
  cmd.add_option("-n,--max-tokens", options->max_tokens, "tokens to generate; -1 = until done")
      ->check(CLI::Range(static_cast<int64_t>(-1), static_cast<int64_t>(1) << 30));
  cmd.add_option("--stop", options->stop, "stop when this text is generated (repeatable)");
}

std::unique_ptr<Session> LoadSessionOrReport(const LoadOptions& options) {
  auto session = Session::Load(options);
  if (!session.ok()) {
    ReportError(session.status());
    return nullptr;
  }
  return std::move(session).value();
}

int ReportError(const Status& status) {
  std::fprintf(stderr, "llmasos: %s\n", status.ToString().c_str());
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return 2;
    default:
      return 1;
  }
}

StatusOr<std::vector<int64_t>> ParseIntList(const std::string& text, const std::string& flag,
                                            int64_t lo, int64_t hi) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < lo || v > hi) {
      return InvalidArgumentError(flag + ": '" + item + "' is not a whole number in " + std::to_string(lo) +
                                  ".." + std::to_string(hi));
    }
    out.push_back(v);
  }
  if (out.empty()) return InvalidArgumentError(flag + ": no values given");
  return out;
}

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace llmasos::shell
