// llmasos inspect (metadata and tensor table of a GGUF file) and llmasos eval (the raw
// forward pass on given token ids, for the correctness oracles in tests/).
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "model/gguf/gguf_describe.h"
#include "shell/commands.h"

namespace llmasos::shell {
namespace {

struct InspectFlags {
  std::string path;
  bool all_tensors = false;
};

int InspectMain(const InspectFlags& f) {
  auto path = ResolveModelPath(f.path);
  if (!path.ok()) return ReportError(path.status());
  auto file = gguf::GgufFile::Open(*path);
  if (!file.ok()) return ReportError(file.status());
  std::string text = gguf::DescribeGguf(**file, f.all_tensors);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

// The hyper-parameters as the loader resolved them from the file's metadata and the
// architecture's defaults (what `eval` runs with), for the oracle tests to check.
nlohmann::json ConfigJson(const arch::ModelConfig& c) {
  std::vector<size_t> sliding_layers;
  for (size_t i = 0; i < c.num_layers; ++i) {
    if (c.IsSlidingLayer(i)) sliding_layers.push_back(i);
  }
  return {{"architecture", c.architecture},
          {"num_layers", c.num_layers},
          {"embd", c.embd},
          {"ffn", c.ffn},
          {"num_heads", c.num_heads},
          {"num_kv_heads", c.num_kv_heads},
          {"head_dim", c.head_dim},
          {"rope_dims", c.rope_dims},
          {"rope_mode", c.rope_mode == arch::RopeMode::kNeox ? "neox" : "normal"},
          {"rope_theta", c.rope_theta},
          {"rope_linear_factor", c.rope_linear_factor},
          {"rms_eps", c.rms_eps},
          {"context_length", c.context_length},
          {"qk_norm", c.qk_norm},
          {"post_norms", c.post_norms},
          {"embd_scale", c.embd_scale},
          {"ffn_activation", c.ffn_activation == arch::FfnActivation::kGeluTanh ? "gelu_tanh" : "silu"},
          {"query_scale", c.query_scale},
          {"attn_softcap", c.attn_softcap},
          {"final_softcap", c.final_softcap},
          {"sliding_window", c.sliding_window},
          {"sliding_layers", sliding_layers},
          {"rope_theta_swa", c.rope_theta_swa},
          {"rope_linear_factor_swa", c.rope_linear_factor_swa}};
}

struct EvalFlags {
  LoadOptions load;
  std::string tokens;
  std::string logits_out;
  size_t greedy = 0;
  bool context_given = false;  // -c: the context the model runs with (LongRoPE picks by it)
};

int EvalMain(EvalFlags& f) {
  auto list = ParseIntList(f.tokens, "--tokens", 0, INT32_MAX);
  if (!list.ok()) return ReportError(list.status());
  auto ids = StatusOr<std::vector<TokenId>>(std::vector<TokenId>(list->begin(), list->end()));
  const size_t needed = ids->size() + f.greedy;
  if (!f.context_given) {
    f.load.context_tokens = needed;
  } else if (f.load.context_tokens < needed) {
    return ReportError(InvalidArgumentError("--ctx-size " + std::to_string(f.load.context_tokens) +
                                            " is smaller than the " + std::to_string(needed) +
                                            " tokens evaluated and generated"));
  }
  std::unique_ptr<Session> s = LoadSessionOrReport(f.load);
  if (!s) return 1;
  const size_t vocab = s->model().config().vocab_size;
  // Every position's logits only when they are written out: [tokens, vocab] costs a vocab-wide
  // matrix product per token (262k rows for Gemma), where --greedy needs only the last row.
  const bool all_logits = !f.logits_out.empty();
  std::vector<float> logits((all_logits ? ids->size() : 1) * vocab);
  Status st = s->context().Forward(*ids, all_logits, logits.data());
  if (!st.ok()) return ReportError(st);
  if (!f.logits_out.empty()) {
    std::ofstream out(f.logits_out, std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits.data()), logits.size() * sizeof(float));
    if (!out) return ReportError(IoError("cannot write '" + f.logits_out + "'"));
  }
  std::vector<TokenId> greedy;
  std::vector<float> last(logits.end() - vocab, logits.end());
  for (size_t i = 0; i < f.greedy; ++i) {
    TokenId best = 0;
    for (size_t v = 1; v < vocab; ++v) {
      if (last[v] > last[best]) best = static_cast<TokenId>(v);
    }
    greedy.push_back(best);
    if (i + 1 == f.greedy) break;
    st = s->context().Forward(std::span<const TokenId>(&best, 1), false, last.data());
    if (!st.ok()) return ReportError(st);
  }
  nlohmann::json out = {{"vocab_size", vocab}, {"num_tokens", ids->size()}, {"greedy", greedy},
                        {"config", ConfigJson(s->model().config())}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

void AddInspectCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<InspectFlags>();
  CLI::App* cmd = app.add_subcommand("inspect", "print a GGUF file's metadata and tensor table");
  cmd->add_option("file", flags->path, "a .gguf file or a registry reference")->required();
  cmd->add_flag("--all-tensors", flags->all_tensors, "list every tensor, not only the first ones");
  cmd->callback([flags, exit_code] { *exit_code = InspectMain(*flags); });
}

void AddEvalCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand("eval", "run the forward pass on token ids (for tests)");
  AddLoadFlags(*cmd, &flags->load);
  cmd->add_option("--tokens", flags->tokens, "comma-separated token ids")->required();
  cmd->add_option("--logits-out", flags->logits_out, "write float32 logits [tokens, vocab] here");
  cmd->add_option("--greedy", flags->greedy, "also continue greedily for N tokens")->check(CLI::Range(0, 1 << 16));
  cmd->callback([flags, cmd, exit_code] {
    flags->context_given = cmd->get_option("--ctx-size")->count() > 0;
    *exit_code = EvalMain(*flags);
  });
}

}  // namespace llmasos::shell
