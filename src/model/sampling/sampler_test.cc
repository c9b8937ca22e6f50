#include "model/sampling/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

namespace llmasos::sampling {
namespace {

SamplingParams Plain(float temperature) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  return p;
}

// Deterministic pseudo-random logits over a SmolLM2-sized vocabulary.
std::vector<float> RandomLogits(size_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(vocab);
  for (float& l : logits) l = normal(rng);
  return logits;
}

TokenId Argmax(const std::vector<float>& v) {
  return static_cast<TokenId>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Draws `n` tokens, each from a fresh copy of `logits` (Sample uses it as scratch).
std::vector<TokenId> Draw(Sampler& s, const std::vector<float>& logits, int n) {
  std::vector<TokenId> out;
  for (int i = 0; i < n; ++i) {
    std::vector<float> scratch = logits;
    out.push_back(s.Sample(scratch));
  }
  return out;
}

// log of probabilities, so softmax(logits) gives back exactly these (up to rounding).
std::vector<float> LogitsOf(std::vector<double> probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

TEST(SamplerTest, GreedyIsArgmax) {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    std::vector<float> logits = RandomLogits(49152, seed);
    for (float t : {0.0f, -1.0f}) {
      Sampler s(Plain(t));
      std::vector<float> scratch = logits;
      EXPECT_EQ(s.Sample(scratch), Argmax(logits)) << "seed " << seed << " temperature " << t;
    }
  }
}

TEST(SamplerTest, TopKOneIsGreedyAtAnyTemperature) {
  std::vector<float> logits = RandomLogits(49152, 7);
  for (float t : {0.1f, 1.0f, 5.0f, 100.0f}) {
    SamplingParams p = Plain(t);
    p.top_k = 1;
    Sampler s(p);
    for (TokenId tok : Draw(s, logits, 20)) EXPECT_EQ(tok, Argmax(logits)) << "temperature " << t;
  }
}

TEST(SamplerTest, SameSeedReproducesDifferentSeedDiffers) {
  std::vector<float> logits = RandomLogits(49152, 3);
  SamplingParams p;  // defaults: top-k 40, top-p 0.95, min-p 0.05, temperature 0.8
  p.temperature = 1.5f;
  p.min_p = 0.0f;
  p.seed = 42;
  Sampler a(p), b(p);
  std::vector<TokenId> seq_a = Draw(a, logits, 200);
  std::vector<TokenId> seq_b = Draw(b, logits, 200);
  EXPECT_EQ(seq_a, seq_b);
  p.seed = 43;
  Sampler c(p);
  EXPECT_NE(Draw(c, logits, 200), seq_a);
  // The draws are not all one token, or the comparison above would prove nothing.
  EXPECT_GT(std::set<TokenId>(seq_a.begin(), seq_a.end()).size(), 5u);
}

TEST(SamplerTest, EmpiricalDistributionMatchesSoftmaxOverTemperature) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f};
  const float t = 0.7f;
  const int n = 20000;
  std::vector<double> expected(logits.size());
  double total = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) total += expected[i] = std::exp(logits[i] / t);
  for (double& e : expected) e /= total;

  Sampler s(Plain(t));
  std::vector<int> counts(logits.size(), 0);
  for (TokenId tok : Draw(s, logits, n)) counts[tok]++;
  // Tolerance 0.015 absolute: the standard error of a frequency over 20000 draws is at most
  // sqrt(0.25 / 20000) = 0.0035, so this is over 4 sigma for every token.
  for (size_t i = 0; i < logits.size(); ++i) {
    EXPECT_NEAR(static_cast<double>(counts[i]) / n, expected[i], 0.015) << "token " << i;
  }
}

std::set<TokenId> DrawnSet(const SamplingParams& p, const std::vector<float>& logits) {
  Sampler s(p);
  std::vector<TokenId> drawn = Draw(s, logits, 3000);
  return {drawn.begin(), drawn.end()};
}

TEST(SamplerTest, TopPKeepsShortestPrefixReachingP) {
  // probabilities 0.5, 0.3, 0.15, 0.05 in a shuffled order of ids
  const std::vector<float> logits = LogitsOf({0.15, 0.5, 0.05, 0.3});
  SamplingParams p = Plain(1.0f);
  p.top_p = 0.45f;  // the top token alone reaches it
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1}));
  p.top_p = 0.75f;  // 0.5 < 0.75 <= 0.8
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1, 3}));
  p.top_p = 0.85f;  // 0.8 < 0.85 <= 0.95
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1, 3, 0}));
  p.top_p = 0.97f;  // needs all four
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{0, 1, 2, 3}));
}

TEST(SamplerTest, MinPKeepsTokensAtLeastMinPTimesTheTop) {
  const std::vector<float> logits = LogitsOf({0.15, 0.5, 0.05, 0.3});
  SamplingParams p = Plain(1.0f);
  p.min_p = 0.61f;  // needs p >= 0.305: only the top
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1}));
  p.min_p = 0.59f;  // p >= 0.295
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1, 3}));
  p.min_p = 0.29f;  // p >= 0.145
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1, 3, 0}));
  p.min_p = 0.09f;  // p >= 0.045
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{0, 1, 2, 3}));
}

TEST(SamplerTest, TopKKeepsTheKHighest) {
  const std::vector<float> logits = LogitsOf({0.15, 0.5, 0.05, 0.3});
  SamplingParams p = Plain(2.0f);
  p.top_k = 2;
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1, 3}));
  p.top_k = 3;
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1, 3, 0}));
}

TEST(SamplerTest, TopPIsMeasuredAfterTopKBeforeTemperature) {
  // Renormalised over the top 2 (0.5, 0.3): 0.625, 0.375. top_p 0.6 keeps only the first,
  // whatever the temperature (temperature comes after the cut).
  const std::vector<float> logits = LogitsOf({0.15, 0.5, 0.05, 0.3});
  SamplingParams p = Plain(50.0f);
  p.top_k = 2;
  p.top_p = 0.6f;
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1}));
  p.top_p = 0.65f;
  EXPECT_EQ(DrawnSet(p, logits), (std::set<TokenId>{1, 3}));
}

TEST(SamplerTest, TopPOverTheWholeVocabularyMatchesAFullSort) {
  // Without top-k the sampler sorts only a growing prefix; the cut must be the one a full sort
  // gives. 800 high logits scattered over a 16384 vocabulary put the cut near rank 700.
  std::vector<float> logits(16384, 0.0f);
  std::mt19937_64 rng(5);
  for (int r = 0; r < 800; ++r) logits[rng() % logits.size()] = 10.0f - 0.0005f * r;
  SamplingParams p = Plain(1000.0f);  // near-uniform over what survives the cut
  p.top_p = 0.99f;

  std::vector<std::pair<float, TokenId>> order;
  for (size_t i = 0; i < logits.size(); ++i) order.emplace_back(logits[i], static_cast<TokenId>(i));
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  double total = 0.0;
  for (const auto& o : order) total += std::exp(static_cast<double>(o.first - order[0].first));
  std::set<TokenId> expected;
  double cumulative = 0.0;
  for (const auto& o : order) {
    expected.insert(o.second);
    cumulative += std::exp(static_cast<double>(o.first - order[0].first)) / total;
    if (cumulative >= p.top_p) break;
  }
  ASSERT_GT(expected.size(), 520u);  // past the first two prefix sizes the sampler tries
  ASSERT_LT(expected.size(), 790u);  // and a real cut, not the whole high group

  Sampler s(p);
  std::set<TokenId> drawn;
  for (TokenId t : Draw(s, logits, 3000)) drawn.insert(t);
  for (TokenId t : drawn) EXPECT_TRUE(expected.count(t)) << "token " << t << " is past the cut";
  // Near-uniform draws: each kept token is expected ~4 times, so about 98% of them show up; a
  // cut far too early would show far fewer.
  EXPECT_GT(drawn.size(), expected.size() * 9 / 10);
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  SamplingParams p = Plain(0.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  s.Accept(0);
  s.Accept(1);
  s.Accept(1);  // a repeat is penalised once, not twice
  std::vector<float> logits = {4.0f, -3.0f, 1.0f, 0.0f};
  s.Sample(logits);  // penalties are applied in place
  EXPECT_FLOAT_EQ(logits[0], 2.0f);
  EXPECT_FLOAT_EQ(logits[1], -6.0f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f);
  EXPECT_FLOAT_EQ(logits[3], 0.0f);
}

TEST(SamplerTest, PresenceAndFrequencyPenaltiesSubtract) {
  SamplingParams p = Plain(0.0f);
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  Sampler s(p);
  for (TokenId t : {2, 2, 2, 0}) s.Accept(t);
  std::vector<float> logits = {1.0f, 1.0f, 1.0f};
  s.Sample(logits);
  EXPECT_FLOAT_EQ(logits[0], 1.0f - 0.5f - 0.25f);
  EXPECT_FLOAT_EQ(logits[1], 1.0f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f - 0.5f - 3 * 0.25f);
}

TEST(SamplerTest, PenaltiesChangeTheGreedyChoice) {
  SamplingParams p = Plain(0.0f);
  p.repeat_penalty = 1.5f;
  Sampler s(p);
  s.Accept(0);
  std::vector<float> logits = {3.0f, 2.5f};
  EXPECT_EQ(s.Sample(logits), 1);  // 3 / 1.5 = 2 < 2.5
}

TEST(SamplerTest, PenaltyWindowForgetsOldTokens) {
  SamplingParams p = Plain(0.0f);
  p.presence_penalty = 1.0f;
  p.penalty_last_n = 2;
  Sampler s(p);
  for (TokenId t : {0, 1, 2}) s.Accept(t);  // token 0 has left the window
  std::vector<float> logits = {0.0f, 0.0f, 0.0f, 0.0f};
  s.Sample(logits);
  EXPECT_FLOAT_EQ(logits[0], 0.0f);
  EXPECT_FLOAT_EQ(logits[1], -1.0f);
  EXPECT_FLOAT_EQ(logits[2], -1.0f);
  EXPECT_FLOAT_EQ(logits[3], 0.0f);
}

TEST(SamplerTest, PenaltyIgnoresTokensOutsideTheVocabulary) {
  SamplingParams p = Plain(0.0f);
  p.presence_penalty = 1.0f;
  Sampler s(p);
  s.Accept(100);
  s.Accept(-5);
  std::vector<float> logits = {0.0f, 1.0f};
  EXPECT_EQ(s.Sample(logits), 1);
  EXPECT_FLOAT_EQ(logits[0], 0.0f);
}

TEST(SamplerTest, NaNLogitIsNeverChosen) {
  const float nan = std::nanf("");
  std::vector<float> logits = {nan, 1.0f, nan};
  Sampler greedy(Plain(0.0f));
  EXPECT_EQ(greedy.Sample(logits), 1);
  Sampler s(Plain(1.0f));
  for (TokenId t : Draw(s, {nan, 1.0f, 0.5f, nan}, 200)) EXPECT_TRUE(t == 1 || t == 2);
}

TEST(SamplerTest, InfiniteLogitsPickTheTopWithoutNaN) {
  const float inf = INFINITY;
  Sampler s(Plain(1.0f));
  for (TokenId t : Draw(s, {0.0f, inf, 1.0f}, 50)) EXPECT_EQ(t, 1);
  for (TokenId t : Draw(s, {-inf, -inf, 2.0f, -inf}, 50)) EXPECT_EQ(t, 2);
  std::vector<float> all_minus_inf = {-inf, -inf, -inf};
  TokenId t = s.Sample(all_minus_inf);
  EXPECT_TRUE(t >= 0 && t < 3);
}

TEST(SamplerTest, TinyTemperatureActsAsGreedy) {
  // Down to the smallest float: the scaled gaps are -inf and their weights 0, never NaN.
  std::vector<float> logits = RandomLogits(1000, 11);
  for (float t : {1e-30f, 1e-45f}) {
    Sampler s(Plain(t));
    for (TokenId tok : Draw(s, logits, 20)) EXPECT_EQ(tok, Argmax(logits)) << "temperature " << t;
  }
}

TEST(SamplingParamsTest, DefaultsAreValid) { EXPECT_TRUE(ValidateSamplingParams({}).ok()); }

TEST(SamplingParamsTest, NegativeTemperatureIsAllowed) {
  SamplingParams p;
  p.temperature = -1.0f;
  EXPECT_TRUE(ValidateSamplingParams(p).ok());
}

void ExpectInvalid(const SamplingParams& p, const std::string& field) {
  Status s = ValidateSamplingParams(p);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << field;
  EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
}

TEST(SamplingParamsTest, ErrorsNameTheField) {
  const float nan = std::nanf("");
  const float inf = INFINITY;
  auto with = [](auto setter) {
    SamplingParams p;
    setter(p);
    return p;
  };
  ExpectInvalid(with([&](SamplingParams& p) { p.temperature = nan; }), "temperature");
  ExpectInvalid(with([&](SamplingParams& p) { p.temperature = inf; }), "temperature");
  ExpectInvalid(with([](SamplingParams& p) { p.top_p = 0.0f; }), "top_p");
  ExpectInvalid(with([](SamplingParams& p) { p.top_p = 1.5f; }), "top_p");
  ExpectInvalid(with([&](SamplingParams& p) { p.top_p = nan; }), "top_p");
  ExpectInvalid(with([](SamplingParams& p) { p.min_p = -0.1f; }), "min_p");
  ExpectInvalid(with([](SamplingParams& p) { p.min_p = 1.1f; }), "min_p");
  ExpectInvalid(with([](SamplingParams& p) { p.repeat_penalty = 0.0f; }), "repeat_penalty");
  ExpectInvalid(with([](SamplingParams& p) { p.repeat_penalty = -1.0f; }), "repeat_penalty");
  ExpectInvalid(with([&](SamplingParams& p) { p.presence_penalty = nan; }), "presence_penalty");
  ExpectInvalid(with([&](SamplingParams& p) { p.frequency_penalty = inf; }), "frequency_penalty");
  ExpectInvalid(with([](SamplingParams& p) { p.penalty_last_n = -1; }), "penalty_last_n");
  ExpectInvalid(with([](SamplingParams& p) { p.logit_bias = {{3, 100.5f}}; }), "logit_bias");
  ExpectInvalid(with([&](SamplingParams& p) { p.logit_bias = {{3, nan}}; }), "logit_bias");
  ExpectInvalid(with([](SamplingParams& p) { p.logit_bias = {{-1, 1.0f}}; }), "logit_bias");
  ExpectInvalid(with([](SamplingParams& p) { p.logit_bias.assign(kMaxLogitBias + 1, {1, 1.0f}); }), "logit_bias");
  ExpectInvalid(with([](SamplingParams& p) { p.logprobs = true, p.top_logprobs = 21; }), "top_logprobs");
  ExpectInvalid(with([](SamplingParams& p) { p.logprobs = true, p.top_logprobs = -1; }), "top_logprobs");
  ExpectInvalid(with([](SamplingParams& p) { p.top_logprobs = 2; }), "top_logprobs");
}

TEST(SamplerTest, LogitBiasIsAddedBeforeEverythingElse) {
  SamplingParams p = Plain(0.0f);
  p.logit_bias = {{2, 5.0f}, {0, -100.0f}, {99, 1.0f}};  // 99: outside this vocabulary, ignored
  Sampler s(p);
  std::vector<float> logits = {3.0f, 1.0f, -1.0f};
  EXPECT_EQ(s.Sample(logits), 2);
  EXPECT_FLOAT_EQ(logits[2], 4.0f);
  EXPECT_FLOAT_EQ(logits[0], -97.0f);
  // -100 bans a token even at temperature 1.
  p = Plain(1.0f);
  p.seed = 3;
  p.logit_bias = {{0, -100.0f}};
  Sampler banned(p);
  for (TokenId t : Draw(banned, {5.0f, 0.0f, 0.0f}, 200)) EXPECT_NE(t, 0);
}

TEST(SamplerTest, LogprobsAreTheModelsDistributionBeforeBiasAndPenalties) {
  SamplingParams p = Plain(0.7f);
  p.seed = 11;
  p.logprobs = true;
  p.top_logprobs = 3;
  p.repeat_penalty = 3.0f;
  p.frequency_penalty = 1.0f;
  p.logit_bias = {{4, 2.0f}};
  Sampler s(p);
  s.Accept(1);
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 1.5f, 0.0f};
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l));
  auto expected = [&](TokenId t) { return static_cast<float>(logits[t] - std::log(z)); };
  for (int i = 0; i < 20; ++i) {
    std::vector<float> scratch = logits;
    TokenLogprobs lp;
    const TokenId t = s.Sample(scratch, &lp);
    EXPECT_EQ(lp.chosen.token, t);
    EXPECT_NEAR(lp.chosen.logprob, expected(t), 1e-5);
    ASSERT_EQ(lp.top.size(), 3u);
    const TokenId order[] = {1, 3, 0};  // by the raw logits, not the penalised or biased ones
    for (size_t k = 0; k < 3; ++k) {
      EXPECT_EQ(lp.top[k].token, order[k]);
      EXPECT_NEAR(lp.top[k].logprob, expected(order[k]), 1e-5);
    }
  }
  // Without logprobs nothing is filled in.
  Sampler quiet(Plain(0.0f));
  std::vector<float> scratch = logits;
  TokenLogprobs lp;
  quiet.Sample(scratch, &lp);
  EXPECT_EQ(lp.chosen.token, -1);
}

TEST(SamplerTest, AnUnseededSamplerDrawsItsOwnSeed) {
  SamplingParams p = Plain(1.0f);
  Sampler a(p), b(p);
  EXPECT_NE(a.seed(), b.seed());  // 64 random bits twice: equal only by a 2^-64 accident
  p.seed = a.seed();
  Sampler again(p);
  const std::vector<float> flat(1000, 0.0f);
  EXPECT_EQ(Draw(a, flat, 30), Draw(again, flat, 30));
}

TEST(SamplerTest, OpenAiPenaltiesCountGeneratedTokensOnlyAndSubtract) {
  SamplingParams p = Plain(0.0f);
  p.penalty_mode = PenaltyMode::kOpenAi;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.penalty_last_n = 1;  // ignored: every generated token counts
  Sampler s(p);
  for (TokenId t : {0, 0, 1}) s.AcceptPrompt(t);  // not counted
  for (TokenId t : {2, 2, 2, 3}) s.Accept(t);
  std::vector<float> logits = {1.0f, -1.0f, 1.0f, -2.0f};
  s.Sample(logits);
  EXPECT_FLOAT_EQ(logits[0], 1.0f);
  EXPECT_FLOAT_EQ(logits[1], -1.0f);
  EXPECT_FLOAT_EQ(logits[2], 1.0f - 0.5f - 3 * 0.25f);
  EXPECT_FLOAT_EQ(logits[3], -2.0f - 0.5f - 0.25f);  // additive for negative logits too
  // llama.cpp's mode counts the prompt's tokens in its window.
  p.penalty_mode = PenaltyMode::kLlamaCpp;
  p.penalty_last_n = 64;
  Sampler llama(p);
  for (TokenId t : {0, 0, 1}) llama.AcceptPrompt(t);
  logits = {1.0f, -1.0f, 1.0f, -2.0f};
  llama.Sample(logits);
  EXPECT_FLOAT_EQ(logits[0], 1.0f - 0.5f - 2 * 0.25f);
}

}  // namespace
}  // namespace llmasos::sampling
