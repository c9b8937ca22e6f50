// OutputPipeline: everything that turns one process's logits into its output, in one place:
// the sampler (with its penalty window and seeded generator), the incremental detokenizer
// (never splits a UTF-8 character), the stop strings (held back until certain, never shown)
// and the end-of-generation check. The Engine owns one per live process; EngineThread, the
// shell's run and chat, and the daemon all see the same tokens, text and end reasons.
//
// Thread safety: none; the engine thread owns it.
#ifndef LLMASOS_KERNEL_OUTPUT_PIPELINE_H_
#define LLMASOS_KERNEL_OUTPUT_PIPELINE_H_

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernel/process.h"
#include "model/sampling/sampler.h"
#include "model/tokenizer/tokenizer.h"

namespace llmasos::kernel {

// One generated token as the submitter sees it.
struct TokenOutput {
  TokenId token = -1;
  // The text that became final with this token: empty while a UTF-8 character or a possible
  // stop string is incomplete, after a stop string matched, and for end-of-generation tokens.
  std::string text;
  // kEndOfGeneration or kStopString when this token ends the process; kNone otherwise.
  EndReason ends = EndReason::kNone;
  // With SamplingParams::logprobs: the token's log-probability and the top alternatives',
  // from the model's distribution before bias, penalties and sampling (sampler.h).
  std::optional<sampling::TokenLogprobs> logprobs;
};

class OutputPipeline {
 public:
  // `tokenizer` must outlive the pipeline. `params` must be valid (ValidateSamplingParams).
  // The prompt's tokens enter the sampler's penalty window. With `ignore_eog`,
  // end-of-generation tokens are decoded as text and end nothing (benchmarks only).
  OutputPipeline(const tokenizer::Tokenizer& tokenizer, const sampling::SamplingParams& params,
                 std::span<const TokenId> prompt, std::vector<std::string> stop, bool ignore_eog);

  // Samples the next token from `logits` ([vocab], modified as scratch), records it, and
  // returns it with its text and whether it ends the process.
  TokenOutput Next(std::span<float> logits);
  // The text held back at the end: an incomplete UTF-8 tail (as U+FFFD), a prefix of a stop
  // string that never completed. Empty after a stop string matched.
  std::string Flush();
  bool stopped() const { return stops_.stopped(); }

 private:
  const tokenizer::Tokenizer& tokenizer_;
  sampling::Sampler sampler_;
  tokenizer::IncrementalDecoder decoder_;
  sampling::StopMatcher stops_;
  bool ignore_eog_;
  bool ended_ = false;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_OUTPUT_PIPELINE_H_
