// Sampling: turns a logits vector into the next token.
//
// Order of operations (as llama.cpp's default chain): logit_bias (added) -> penalties
// (repetition, presence, frequency; see PenaltyMode) -> if temperature <= 0: argmax ->
// top-k -> top-p -> min-p -> temperature -> softmax -> draw with the seeded generator.
//
// Log-probabilities (SamplingParams::logprobs) describe the model's own distribution: the
// log-softmax of the logits as the forward pass produced them, before logit_bias, penalties,
// temperature and every cut. They are what the model thinks of each token, so a biased or
// penalised choice shows its unmodified probability (what OpenAI's API reports too).
//
// Thread safety: a Sampler holds per-stream state (RNG, recent tokens); one per process.
#ifndef LLMASOS_MODEL_SAMPLING_SAMPLER_H_
#define LLMASOS_MODEL_SAMPLING_SAMPLER_H_

#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "util/status.h"

namespace llmasos::sampling {

using TokenId = int32_t;

// Which tokens the presence and frequency penalties count, and how.
enum class PenaltyMode {
  // llama.cpp's: the last penalty_last_n tokens, prompt included; repetition divides a
  // positive logit (multiplies a negative one); presence and frequency are subtracted.
  kLlamaCpp,
  // OpenAI's: the generated tokens only, all of them (penalty_last_n is ignored);
  // logit -= count * frequency_penalty + (count > 0) * presence_penalty. repeat_penalty, if
  // not 1, applies by llama.cpp's rule to the same tokens.
  kOpenAi,
};

inline constexpr int32_t kMaxTopLogprobs = 20;
inline constexpr size_t kMaxLogitBias = 1024;
inline constexpr float kMaxAbsLogitBias = 100.0f;

struct SamplingParams {
  float temperature = 0.8f;  // <= 0 means greedy
  int32_t top_k = 40;        // <= 0 disables
  float top_p = 0.95f;       // >= 1 disables
  float min_p = 0.05f;       // <= 0 disables
  float repeat_penalty = 1.0f;     // 1 disables; > 1 discourages repeats
  float presence_penalty = 0.0f;   // subtracted once if a token appeared
  float frequency_penalty = 0.0f;  // subtracted per occurrence
  int32_t penalty_last_n = 64;     // window of recent tokens the penalties look at (kLlamaCpp)
  PenaltyMode penalty_mode = PenaltyMode::kLlamaCpp;
  // Same seed + same inputs -> same tokens. None: a fresh random seed (Sampler::seed() tells
  // which; the engine records it in the process's parameters).
  std::optional<uint64_t> seed;
  // Added to a token's logit before everything else: token id -> bias in [-100, 100] (-100
  // all but bans a token, +100 all but forces it). At most kMaxLogitBias entries; the engine
  // checks the ids against the vocabulary.
  std::vector<std::pair<TokenId, float>> logit_bias;
  // Report the chosen token's log-probability and the top_logprobs most likely tokens'
  // (0..kMaxTopLogprobs) with each token; see the header comment for which distribution.
  bool logprobs = false;
  int32_t top_logprobs = 0;
};

// InvalidArgument naming the field for out-of-range values (negative temperature is allowed
// and means greedy; top_p outside (0, 1], min_p outside [0, 1], penalty_last_n < 0, ...).
Status ValidateSamplingParams(const SamplingParams& params);

// The seed of the command line and of batch jobs when none is given, so that the same
// command, or the same batch file, gives the same output.
inline constexpr uint64_t kDefaultSeed = 0xC0FFEE;

// A seed from the operating system's entropy source, for requests that gave none.
uint64_t RandomSeed();

struct TokenLogprob {
  TokenId token = -1;
  float logprob = 0;  // natural log; -inf for a token the model gives no mass
};
struct TokenLogprobs {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;  // top_logprobs entries, most likely first (ties: lower id)
};

class Sampler {
 public:
  // REQUIRES: ValidateSamplingParams(params).ok(). Without a seed, draws one (RandomSeed).
  explicit Sampler(const SamplingParams& params);

  // Picks the next token. `logits` is [vocab_size] and is modified (scratch): the bias and
  // the penalties are applied to it in place; later stages work on a copy. NaN logits are
  // never chosen. With params.logprobs and a non-null `logprobs`, fills it in (costs a copy
  // of the logits and a pass over them).
  TokenId Sample(std::span<float> logits, TokenLogprobs* logprobs = nullptr);
  // Records a prompt token: it enters the penalty window under kLlamaCpp (as llama.cpp
  // does), and is not counted under kOpenAi.
  void AcceptPrompt(TokenId token);
  // Records a generated token for the penalties.
  void Accept(TokenId token);
  bool wants_logprobs() const { return params_.logprobs; }
  // The seed in use (the one given, or the one drawn).
  uint64_t seed() const { return seed_; }

 private:
  TokenId Choose(std::span<float> logits);  // bias, penalties, cuts, draw
  void ApplyPenalties(std::span<float> logits);
  void FillLogprobs(std::span<const float> raw, TokenId chosen, TokenLogprobs* out);

  SamplingParams params_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::deque<TokenId> recent_;                   // kLlamaCpp: the window
  std::unordered_map<TokenId, int32_t> counts_;  // kOpenAi: generated tokens -> occurrences
  std::vector<std::pair<float, TokenId>> candidates_;  // scratch, reused across calls
  std::vector<float> raw_;                             // scratch: logits before any change
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
