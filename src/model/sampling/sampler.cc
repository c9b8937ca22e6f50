#include "model/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>

namespace llmasos::sampling {
namespace {

std::string Num(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// Candidates sort by logit, highest first; equal logits by token id so the order (and so
// every cut and draw) never depends on the sort algorithm.
bool Before(const std::pair<float, TokenId>& a, const std::pair<float, TokenId>& b) {
  if (a.first != b.first) return a.first > b.first;
  return a.second < b.second;
}

// A uniform double in [0, 1) from the top 53 bits of one draw. std::uniform_real_distribution
// is implementation-defined; this is the same on every standard library, so a seed reproduces
// the same tokens everywhere.
double UniformDouble(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

}  // namespace

Status ValidateSamplingParams(const SamplingParams& p) {
  if (std::isnan(p.temperature) || std::isinf(p.temperature)) {
    return InvalidArgumentError("temperature must be a finite number, got " + Num(p.temperature));
  }
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return InvalidArgumentError("top_p must be in (0, 1], got " + Num(p.top_p));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return InvalidArgumentError("min_p must be in [0, 1], got " + Num(p.min_p));
  }
  if (!(p.repeat_penalty > 0.0f) || std::isinf(p.repeat_penalty)) {
    return InvalidArgumentError("repeat_penalty must be a finite number > 0 (1 disables), got " +
                                Num(p.repeat_penalty));
  }
  if (!std::isfinite(p.presence_penalty)) {
    return InvalidArgumentError("presence_penalty must be a finite number, got " +
                                Num(p.presence_penalty));
  }
  if (!std::isfinite(p.frequency_penalty)) {
    return InvalidArgumentError("frequency_penalty must be a finite number, got " +
                                Num(p.frequency_penalty));
  }
  if (p.penalty_last_n < 0) {
    return InvalidArgumentError("penalty_last_n must be >= 0, got " + std::to_string(p.penalty_last_n));
  }
  if (p.logit_bias.size() > kMaxLogitBias) {
    return InvalidArgumentError("logit_bias has " + std::to_string(p.logit_bias.size()) + " entries; at most " +
                                std::to_string(kMaxLogitBias) + " are allowed");
  }
  for (const auto& [token, bias] : p.logit_bias) {
    if (token < 0) return InvalidArgumentError("logit_bias token id " + std::to_string(token) + " is negative");
    if (!(bias >= -kMaxAbsLogitBias && bias <= kMaxAbsLogitBias)) {
      return InvalidArgumentError("logit_bias for token " + std::to_string(token) + " must be in [-100, 100], got " +
                                  Num(bias));
    }
  }
  if (p.top_logprobs < 0 || p.top_logprobs > kMaxTopLogprobs) {
    return InvalidArgumentError("top_logprobs must be in [0, " + std::to_string(kMaxTopLogprobs) + "], got " +
                                std::to_string(p.top_logprobs));
  }
  if (p.top_logprobs > 0 && !p.logprobs) {
    return InvalidArgumentError("top_logprobs needs logprobs");
  }
  return OkStatus();
}

uint64_t RandomSeed() {
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ static_cast<uint64_t>(device());
}

Sampler::Sampler(const SamplingParams& params)
    : params_(params), seed_(params.seed ? *params.seed : RandomSeed()), rng_(seed_) {
  CHECK(ValidateSamplingParams(params).ok()) << ValidateSamplingParams(params).ToString();
}

void Sampler::AcceptPrompt(TokenId token) {
  if (params_.penalty_mode == PenaltyMode::kLlamaCpp) Accept(token);
}

void Sampler::Accept(TokenId token) {
  if (params_.penalty_mode == PenaltyMode::kOpenAi) {
    ++counts_[token];
    return;
  }
  if (params_.penalty_last_n == 0) return;
  recent_.push_back(token);
  while (recent_.size() > static_cast<size_t>(params_.penalty_last_n)) recent_.pop_front();
}

void Sampler::ApplyPenalties(std::span<float> logits) {
  const bool penalize = params_.repeat_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                        params_.frequency_penalty != 0.0f;
  if (!penalize) return;
  // One adjustment per distinct token: repetition divides a positive logit and multiplies a
  // negative one, so it always lowers it; presence subtracts once; frequency subtracts once
  // per occurrence.
  auto adjust = [&](TokenId token, float count) {
    if (token < 0 || static_cast<size_t>(token) >= logits.size()) return;
    float& l = logits[token];
    if (l > 0.0f) {
      l /= params_.repeat_penalty;
    } else {
      l *= params_.repeat_penalty;
    }
    l -= count * params_.frequency_penalty + params_.presence_penalty;
  };
  if (params_.penalty_mode == PenaltyMode::kOpenAi) {
    for (const auto& [token, count] : counts_) adjust(token, static_cast<float>(count));
    return;
  }
  if (recent_.empty()) return;
  std::vector<TokenId> window(recent_.begin(), recent_.end());
  std::sort(window.begin(), window.end());
  for (size_t i = 0; i < window.size();) {
    size_t j = i;
    while (j < window.size() && window[j] == window[i]) ++j;
    adjust(window[i], static_cast<float>(j - i));
    i = j;
  }
}

void Sampler::FillLogprobs(std::span<const float> raw, TokenId chosen, TokenLogprobs* out) {
  // log p_i = l_i - (max + log sum_j exp(l_j - max)); NaN logits carry no mass.
  float max_logit = -std::numeric_limits<float>::infinity();
  for (float l : raw) {
    if (l > max_logit) max_logit = l;
  }
  double sum = 0.0;
  if (std::isfinite(max_logit)) {
    for (float l : raw) {
      if (!std::isnan(l)) sum += std::exp(static_cast<double>(l) - max_logit);
    }
  }
  const double log_z = std::isfinite(max_logit) ? max_logit + std::log(sum) : max_logit;
  auto logprob = [&](TokenId t) {
    const float l = raw[static_cast<size_t>(t)];
    if (std::isnan(l) || !std::isfinite(log_z)) return -std::numeric_limits<float>::infinity();
    return static_cast<float>(static_cast<double>(l) - log_z);
  };
  out->chosen = TokenLogprob{chosen, logprob(chosen)};
  out->top.clear();
  const size_t n = std::min(static_cast<size_t>(params_.top_logprobs), raw.size());
  if (n == 0) return;
  std::vector<std::pair<float, TokenId>> all;
  all.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    all.emplace_back(std::isnan(raw[i]) ? -std::numeric_limits<float>::infinity() : raw[i], static_cast<TokenId>(i));
  }
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), Before);
  for (size_t i = 0; i < n; ++i) out->top.push_back(TokenLogprob{all[i].second, logprob(all[i].second)});
}

TokenId Sampler::Sample(std::span<float> logits, TokenLogprobs* logprobs) {
  CHECK(!logits.empty()) << "Sample needs at least one logit";
  const bool want_logprobs = params_.logprobs && logprobs != nullptr;
  if (want_logprobs) raw_.assign(logits.begin(), logits.end());
  const TokenId token = Choose(logits);
  if (want_logprobs) FillLogprobs(raw_, token, logprobs);
  return token;
}

TokenId Sampler::Choose(std::span<float> logits) {
  const size_t vocab = logits.size();
  for (const auto& [token, bias] : params_.logit_bias) {
    if (static_cast<size_t>(token) < vocab) logits[token] += bias;
  }
  ApplyPenalties(logits);

  if (params_.temperature <= 0.0f) {
    // Argmax; NaN never wins, and the lowest id wins a tie.
    TokenId best = 0;
    float best_logit = -std::numeric_limits<float>::infinity();
    for (size_t i = 0; i < vocab; ++i) {
      if (logits[i] > best_logit) {
        best_logit = logits[i];
        best = static_cast<TokenId>(i);
      }
    }
    return best;
  }

  candidates_.clear();
  candidates_.reserve(vocab);
  for (size_t i = 0; i < vocab; ++i) {
    // A NaN logit is dropped here rather than poisoning the softmax.
    if (!std::isnan(logits[i])) candidates_.emplace_back(logits[i], static_cast<TokenId>(i));
  }
  if (candidates_.empty()) return 0;

  // Only as much of the descending order is built as the filters need: top-k sorts k
  // entries (O(V log k)), top-p grows a sorted prefix until its mass reaches p, min-p alone
  // partitions. Sorting all 49152 logits would cost milliseconds per token.
  size_t keep = candidates_.size();
  size_t sorted = 0;  // candidates_[0, sorted) is the top of the descending order
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), Before);
    candidates_.resize(keep);
    sorted = keep;
  }

  // An infinite top logit (or all -inf) leaves no meaningful distribution: take the top.
  const auto top = sorted > 0 ? candidates_.begin()
                              : std::min_element(candidates_.begin(), candidates_.end(), Before);
  const float max_logit = top->first;
  if (!std::isfinite(max_logit)) return top->second;

  // Top-p: the shortest prefix (by descending probability, temperature not yet applied) whose
  // probability mass reaches top_p; the token that crosses the threshold is kept.
  if (params_.top_p < 1.0f && keep > 1) {
    double total = 0.0;
    for (const auto& c : candidates_) total += std::exp(static_cast<double>(c.first - max_logit));
    double cumulative = 0.0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      if (i == sorted) {
        // Extend the sorted prefix: everything past it is below everything in it.
        const size_t next = std::min(keep, std::max<size_t>(2 * sorted, 256));
        std::partial_sort(candidates_.begin() + sorted, candidates_.begin() + next,
                          candidates_.end(), Before);
        sorted = next;
      }
      cumulative += std::exp(static_cast<double>(candidates_[i].first - max_logit)) / total;
      if (cumulative >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    candidates_.resize(keep);
  }

  // Min-p: keep tokens whose probability is at least min_p times the top token's, i.e.
  // p_i / p_max = exp(l_i - l_max) >= min_p  <=>  l_i >= l_max + log(min_p).
  if (params_.min_p > 0.0f && keep > 1) {
    const float threshold = max_logit + std::log(params_.min_p);
    if (sorted >= keep) {
      size_t cut = 1;
      while (cut < keep && candidates_[cut].first >= threshold) ++cut;
      keep = cut;
    } else {
      // Unsorted: a stable partition keeps the id order, so the draw stays reproducible.
      auto end = std::stable_partition(candidates_.begin(), candidates_.end(),
                                        [&](const auto& c) { return c.first >= threshold; });
      keep = static_cast<size_t>(end - candidates_.begin());
    }
    candidates_.resize(keep);
  }

  // Temperature, softmax, draw (in whatever order the candidates are: sorted after top-k or
  // top-p, id order otherwise; either is fixed for the same inputs). The top weight is exp(0) = 1, so the total is >= 1 and the draw below is well defined.
  const double t = params_.temperature;
  double total = 0.0;
  for (auto& c : candidates_) {
    const double w = std::exp((static_cast<double>(c.first) - max_logit) / t);
    c.first = static_cast<float>(w);
    total += w;
  }
  const double target = UniformDouble(rng_) * total;
  double cumulative = 0.0;
  TokenId last_positive = candidates_.front().second;
  for (const auto& c : candidates_) {
    if (c.first <= 0.0f) continue;  // weight underflowed to 0: never drawn
    cumulative += c.first;
    last_positive = c.second;
    if (target < cumulative) return c.second;
  }
  return last_positive;  // rounding left target at the very top
}

StopMatcher::StopMatcher(std::vector<std::string> stop_strings) {
  // An empty stop string would match before any text; it means nothing, so it is dropped.
  for (std::string& s : stop_strings) {
    if (!s.empty()) stops_.push_back(std::move(s));
  }
}

std::string StopMatcher::Push(std::string_view text) {
  if (stopped_) return "";
  held_.append(text);

  // The stop that completes first (earliest end; on a tie the longer one), so the result does
  // not depend on how the text was split into pushes. Everything emitted before was proven
  // not to start a stop string, so any match lies inside held_.
  size_t match = std::string::npos;
  size_t match_end = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t pos = held_.find(s);
    if (pos == std::string::npos) continue;
    const size_t end = pos + s.size();
    if (end < match_end || (end == match_end && pos < match)) {
      match = pos;
      match_end = end;
    }
  }
  if (match != std::string::npos) {
    std::string out = held_.substr(0, match);
    held_.clear();
    stopped_ = true;
    return out;
  }

  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    const size_t longest = std::min(s.size() - 1, held_.size());
    for (size_t len = longest; len > hold; --len) {
      if (std::string_view(held_).substr(held_.size() - len) == std::string_view(s).substr(0, len)) {
        hold = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopMatcher::Flush() {
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace llmasos::sampling
