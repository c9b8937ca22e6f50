// llmasos perplexity: the standard sliding-window perplexity as llama.cpp computes it, so the
// figures are comparable: the text is cut into windows of ctx tokens; in each window the
// first half is context only and each token of the second half is scored by the model's
// probability of it given everything before it in the window. PPL = exp(mean NLL).
#include <cmath>
#include <cstdio>

#include "shell/commands.h"
#include "util/file.h"

namespace llmasos::shell {
namespace {

constexpr size_t kMaxTextBytes = 256 << 20;

struct PerplexityFlags {
  LoadOptions load;
  std::string file;
  size_t max_chunks = 0;  // 0: all
};

// -log softmax(logits)[target], computed stably in double.
double NegLogProb(const float* logits, size_t vocab, TokenId target) {
  float max = logits[0];
  for (size_t i = 1; i < vocab; ++i) max = std::max(max, logits[i]);
  double sum = 0;
  for (size_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  return std::log(sum) - (static_cast<double>(logits[target]) - max);
}

int PerplexityMain(PerplexityFlags& f) {
  auto text = ReadFileToString(f.file, kMaxTextBytes);
  if (!text.ok()) return ReportError(text.status());
  const size_t ctx = f.load.context_tokens;
  if (ctx < 4) return ReportError(InvalidArgumentError("--ctx-size must be at least 4 for perplexity"));
  f.load.batch_tokens = std::min(f.load.batch_tokens, ctx);
  std::unique_ptr<Session> s = LoadSessionOrReport(f.load);
  if (!s) return 1;
  if (s->context().max_tokens() < ctx) {
    return ReportError(InvalidArgumentError("--ctx-size " + std::to_string(ctx) +
                                            " exceeds the model's context of " +
                                            std::to_string(s->context().max_tokens())));
  }
  const tokenizer::Vocab& v = s->tokenizer().vocab();
  // As llama-perplexity tokenizes: with BOS (and EOS) where the vocabulary asks for them, so a
  // model that adds BOS scores the same token positions in both programs.
  std::vector<TokenId> tokens = s->tokenizer().Encode(*text, /*add_special=*/true, false);
  const size_t num_chunks_all = tokens.size() / ctx;
  if (num_chunks_all == 0) {
    return ReportError(InvalidArgumentError("'" + f.file + "' has " + std::to_string(tokens.size()) +
                                            " tokens; at least --ctx-size " + std::to_string(ctx) +
                                            " are needed"));
  }
  const size_t num_chunks = f.max_chunks ? std::min(f.max_chunks, num_chunks_all) : num_chunks_all;
  const size_t vocab = s->model().config().vocab_size;
  std::vector<float> logits(ctx * vocab);
  std::fprintf(stderr, "perplexity: %zu tokens, %zu chunks of %zu, scoring the second half of each\n",
               tokens.size(), num_chunks, ctx);
  double nll_sum = 0, nll_sq_sum = 0;
  size_t count = 0;
  for (size_t chunk = 0; chunk < num_chunks; ++chunk) {
    std::vector<TokenId> window(tokens.begin() + chunk * ctx, tokens.begin() + (chunk + 1) * ctx);
    if (v.add_bos && v.bos >= 0) window[0] = v.bos;
    s->context().Truncate(0);
    Status st = s->context().Forward(window, /*all_logits=*/true, logits.data());
    if (!st.ok()) return ReportError(st);
    for (size_t j = ctx / 2; j + 1 < ctx; ++j) {
      double nll = NegLogProb(&logits[j * vocab], vocab, window[j + 1]);
      nll_sum += nll;
      nll_sq_sum += nll * nll;
      ++count;
    }
    std::printf("[%zu]%.4f ", chunk + 1, std::exp(nll_sum / count));
    std::fflush(stdout);
  }
  const double mean = nll_sum / count;
  const double var = std::max(0.0, nll_sq_sum / count - mean * mean);
  const double ppl = std::exp(mean);
  // Standard error of the mean NLL, carried through exp() to first order.
  const double ppl_err = ppl * std::sqrt(var / std::max<size_t>(count - 1, 1));
  std::printf("\nFinal estimate: PPL = %.4f +/- %.5f  (%zu tokens scored)\n", ppl, ppl_err, count);
  return 0;
}

}  // namespace

void AddPerplexityCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<PerplexityFlags>();
  CLI::App* cmd = app.add_subcommand("perplexity", "perplexity of the model on a text file");
  AddLoadFlags(*cmd, &flags->load);
  cmd->add_option("-f,--file", flags->file, "text file to score")->required();
  flags->load.context_tokens = 512;  // the window; llama.cpp's perplexity default too
  cmd->add_option("--chunks", flags->max_chunks, "score at most this many windows (0: all)");
  cmd->callback([flags, exit_code] { *exit_code = PerplexityMain(*flags); });
}

}  // namespace llmasos::shell
