// Sampling: turns a logits vector into the next token.
//
// Order of operations (as llama.cpp's default chain): penalties (repetition, presence,
// frequency over the last `penalty_last_n` tokens) -> if temperature <= 0: argmax ->
// top-k -> top-p -> min-p -> temperature -> softmax -> draw with the seeded generator.
//
// Thread safety: a Sampler holds per-stream state (RNG, recent tokens); one per process.
#ifndef LLMASOS_MODEL_SAMPLING_SAMPLER_H_
#define LLMASOS_MODEL_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <deque>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace llmasos::sampling {

using TokenId = int32_t;

struct SamplingParams {
  float temperature = 0.8f;  // <= 0 means greedy
  int32_t top_k = 40;        // <= 0 disables
  float top_p = 0.95f;       // >= 1 disables
  float min_p = 0.05f;       // <= 0 disables
  float repeat_penalty = 1.0f;     // 1 disables; > 1 discourages repeats
  float presence_penalty = 0.0f;   // subtracted once if a token appeared
  float frequency_penalty = 0.0f;  // subtracted per occurrence
  int32_t penalty_last_n = 64;     // window of recent tokens the penalties look at
  uint64_t seed = 0xC0FFEE;        // same seed + same inputs -> same tokens
};

// InvalidArgument naming the field for out-of-range values (negative temperature is allowed
// and means greedy; top_p outside (0, 1], min_p outside [0, 1], penalty_last_n < 0, ...).
Status ValidateSamplingParams(const SamplingParams& params);

class Sampler {
 public:
  // REQUIRES: ValidateSamplingParams(params).ok()
  explicit Sampler(const SamplingParams& params);

  // Picks the next token. `logits` is [vocab_size] and is modified (scratch): the penalties
  // are applied to it in place; later stages work on a copy. NaN logits are never chosen.
  TokenId Sample(std::span<float> logits);
  // Records a token in the penalty window (prompt tokens too, as llama.cpp does).
  void Accept(TokenId token);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::deque<TokenId> recent_;
  std::vector<std::pair<float, TokenId>> candidates_;  // scratch, reused across calls
};

// Watches generated text for stop strings. Text that might be the start of a stop string is
// held back until it is certain either way, so a stop string never reaches the user.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stop_strings);
  // Feeds newly decoded text; returns the text safe to emit now. After a match, stopped()
  // is true and the returned text ends just before the stop string. Where stops overlap, the
  // one that completes first wins (the longer on a tie), however the text was split.
  std::string Push(std::string_view text);
  // Returns the held-back text at the end of generation (when no stop string matched).
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace llmasos::sampling

#endif  // LLMASOS_MODEL_SAMPLING_SAMPLER_H_
