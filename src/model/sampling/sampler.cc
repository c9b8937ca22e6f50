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
  return OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  CHECK(ValidateSamplingParams(params).ok()) << ValidateSamplingParams(params).ToString();
}

void Sampler::Accept(TokenId token) {
  if (params_.penalty_last_n == 0) return;
  recent_.push_back(token);
  while (recent_.size() > static_cast<size_t>(params_.penalty_last_n)) recent_.pop_front();
}

TokenId Sampler::Sample(std::span<float> logits) {
  CHECK(!logits.empty()) << "Sample needs at least one logit";
  const size_t vocab = logits.size();

  // Penalties over the window, one adjustment per distinct token (llama.cpp's rule):
  // repetition divides a positive logit and multiplies a negative one, so it always lowers it;
  // presence subtracts once; frequency subtracts once per occurrence.
  const bool penalize = params_.repeat_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                        params_.frequency_penalty != 0.0f;
  if (penalize && !recent_.empty()) {
    std::vector<TokenId> window(recent_.begin(), recent_.end());
    std::sort(window.begin(), window.end());
    for (size_t i = 0; i < window.size();) {
      size_t j = i;
      while (j < window.size() && window[j] == window[i]) ++j;
      const TokenId token = window[i];
      const float count = static_cast<float>(j - i);
      i = j;
      if (token < 0 || static_cast<size_t>(token) >= vocab) continue;
      float& l = logits[token];
      if (l > 0.0f) {
        l /= params_.repeat_penalty;
      } else {
        l *= params_.repeat_penalty;
      }
      l -= count * params_.frequency_penalty + params_.presence_penalty;
    }
  }

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
