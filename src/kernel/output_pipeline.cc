#include "kernel/output_pipeline.h"

#include <utility>

namespace llmasos::kernel {

OutputPipeline::OutputPipeline(const tokenizer::Tokenizer& tokenizer, const sampling::SamplingParams& params,
                               std::span<const TokenId> prompt, std::vector<std::string> stop, bool ignore_eog)
    : tokenizer_(tokenizer),
      sampler_(params),
      decoder_(tokenizer),
      stops_(std::move(stop)),
      ignore_eog_(ignore_eog) {
  for (TokenId t : prompt) sampler_.AcceptPrompt(t);
}

TokenOutput OutputPipeline::Next(std::span<float> logits) {
  TokenOutput out;
  sampling::TokenLogprobs logprobs;
  out.token = sampler_.Sample(logits, &logprobs);
  if (sampler_.wants_logprobs()) out.logprobs = std::move(logprobs);
  sampler_.Accept(out.token);
  if (ended_) return out;  // nothing more to show once the process ended
  if (!ignore_eog_ && tokenizer_.IsEog(out.token)) {
    out.ends = EndReason::kEndOfGeneration;
    ended_ = true;
    return out;
  }
  out.text = stops_.Push(decoder_.Push(out.token));
  if (stops_.stopped()) {
    out.ends = EndReason::kStopString;
    ended_ = true;
  }
  return out;
}

std::string OutputPipeline::Flush() {
  if (stops_.stopped()) return "";
  return stops_.Push(decoder_.Flush()) + stops_.Flush();
}

}  // namespace llmasos::kernel
