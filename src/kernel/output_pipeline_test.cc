// The output pipeline on the tiny model's tokenizer, fed one-hot logits so each step's token
// is chosen by the test: text, stop strings, end of generation and the penalty window.
#include "kernel/output_pipeline.h"

#include <gtest/gtest.h>

#include "kernel/tiny_engine_test_util.h"

namespace llmasos::kernel {
namespace {

class OutputPipelineTest : public TinyEngineTest {
 protected:
  std::vector<float> OneHot(TokenId t) const {
    std::vector<float> logits(model_->config().vocab_size, 0.0f);
    logits[static_cast<size_t>(t)] = 10.0f;
    return logits;
  }
  TokenId Eog() const {
    for (TokenId t = 0; t < static_cast<TokenId>(model_->config().vocab_size); ++t) {
      if (tokenizer_->IsEog(t)) return t;
    }
    ADD_FAILURE() << "the tiny model has no end-of-generation token";
    return 0;
  }
  static sampling::SamplingParams Greedy() {
    sampling::SamplingParams p;
    p.temperature = 0;
    return p;
  }
  // Feeds `text`'s tokens one by one; returns the outputs.
  std::vector<TokenOutput> Feed(OutputPipeline& pipeline, const std::string& text) const {
    std::vector<TokenOutput> outs;
    for (TokenId t : tokenizer_->Encode(text, false, false)) {
      std::vector<float> logits = OneHot(t);
      outs.push_back(pipeline.Next(logits));
      EXPECT_EQ(outs.back().token, t);
    }
    return outs;
  }
};

TEST_F(OutputPipelineTest, TextStopsBeforeTheStopStringAndTheMatchingTokenEndsIt) {
  const std::vector<TokenId> prompt = {1, 2};
  OutputPipeline pipeline(*tokenizer_, Greedy(), prompt, {"STOP"}, false);
  std::vector<TokenOutput> outs = Feed(pipeline, "abc STOP def");
  std::string text;
  size_t num_ends = 0;
  for (const TokenOutput& o : outs) {
    text += o.text;
    if (o.ends != EndReason::kNone) {
      EXPECT_EQ(o.ends, EndReason::kStopString);
      ++num_ends;
    }
  }
  EXPECT_EQ(text, "abc ");
  EXPECT_EQ(num_ends, 1u);  // only the token that completed the match ends the process
  EXPECT_TRUE(pipeline.stopped());
  EXPECT_EQ(pipeline.Flush(), "");
}

TEST_F(OutputPipelineTest, APossibleStopPrefixIsHeldUntilFlush) {
  const std::vector<TokenId> prompt = {1};
  OutputPipeline pipeline(*tokenizer_, Greedy(), prompt, {"xyz"}, false);
  std::string text;
  for (const TokenOutput& o : Feed(pipeline, "hello xy")) {
    EXPECT_EQ(o.ends, EndReason::kNone);
    text += o.text;
  }
  EXPECT_EQ(text, "hello ");
  EXPECT_EQ(pipeline.Flush(), "xy");
}

TEST_F(OutputPipelineTest, AnEndOfGenerationTokenEndsWithoutTextUnlessIgnored) {
  const std::vector<TokenId> prompt = {1};
  OutputPipeline pipeline(*tokenizer_, Greedy(), prompt, {}, false);
  std::vector<float> logits = OneHot(Eog());
  TokenOutput o = pipeline.Next(logits);
  EXPECT_EQ(o.token, Eog());
  EXPECT_EQ(o.ends, EndReason::kEndOfGeneration);
  EXPECT_EQ(o.text, "");

  OutputPipeline ignoring(*tokenizer_, Greedy(), prompt, {}, /*ignore_eog=*/true);
  logits = OneHot(Eog());
  EXPECT_EQ(ignoring.Next(logits).ends, EndReason::kNone);
}

TEST_F(OutputPipelineTest, PromptTokensEnterThePenaltyWindow) {
  sampling::SamplingParams p = Greedy();
  p.repeat_penalty = 100.0f;
  std::vector<float> logits(model_->config().vocab_size, 0.0f);
  logits[5] = 2.0f;  // the favourite, but in the prompt
  logits[6] = 1.0f;
  const std::vector<TokenId> with_5 = {5, 7};
  OutputPipeline penalised(*tokenizer_, p, with_5, {}, false);
  std::vector<float> scratch = logits;
  EXPECT_EQ(penalised.Next(scratch).token, 6);
  const std::vector<TokenId> without_5 = {7};
  OutputPipeline free(*tokenizer_, p, without_5, {}, false);
  scratch = logits;
  EXPECT_EQ(free.Next(scratch).token, 5);
}

}  // namespace
}  // namespace llmasos::kernel
