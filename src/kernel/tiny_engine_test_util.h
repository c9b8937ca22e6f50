// A test fixture for the engine tests: a tiny F32 model (llama, or another tiny architecture
// such as phi3, whose every layer slides within sliding_window, or gemma3 with num_layers and
// swa_pattern set by a derived fixture's constructor) with its tokenizer, random prompts of
// byte tokens, and the oracle every engine test compares with: a prompt's greedy continuation
// run alone through arch::Context.
#ifndef LLMASOS_KERNEL_TINY_ENGINE_TEST_UTIL_H_
#define LLMASOS_KERNEL_TINY_ENGINE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/process.h"
#include "model/arch/llama_context.h"
#include "model/arch/tiny_model.h"
#include "model/tokenizer/tokenizer.h"
#include "util/thread_pool.h"

namespace llmasos::kernel {

class TinyEngineTest : public testing::Test {
 protected:
  explicit TinyEngineTest(uint32_t context = 256, std::string arch = "llama", uint32_t sliding_window = 5)
      : context_(context), arch_(std::move(arch)), sliding_window_(sliding_window) {}

  void SetUp() override {
    arch::TinyModelSpec spec;
    spec.type = cpu::TensorType::kF32;  // batched and alone differ only in summation order
    spec.context = context_;
    spec.arch = arch_;
    spec.sliding_window = sliding_window_;
    spec.layers = num_layers_;
    spec.swa_pattern = swa_pattern_;
    auto loaded = arch::LoadTinyModel(spec);
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    bytes_ = std::move(loaded->bytes);  // the model reads from this buffer; moving keeps it
    model_ = std::move(loaded->model);
    auto vocab = tokenizer::VocabFromGguf(model_->file());
    ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
    tokenizer_ = *tokenizer::Tokenizer::Create(*std::move(vocab));
  }

  std::vector<TokenId> Prompt(size_t n, uint32_t seed) const {
    std::mt19937 rng(seed);
    std::vector<TokenId> t(n);
    for (auto& v : t) v = static_cast<TokenId>(rng() % 250);  // byte tokens: never EOG
    return t;
  }

  // Greedy continuation of `prompt` alone, ending after max_tokens or an EOG token (kept).
  // Uses pool_: not while an engine thread runs on it.
  std::vector<TokenId> Alone(const std::vector<TokenId>& prompt, size_t max_tokens) {
    arch::ContextOptions o;
    o.max_tokens = context_;
    auto ctx = *arch::Context::Create(*model_, pool_, o);
    std::vector<float> logits(model_->config().vocab_size);
    EXPECT_TRUE(ctx->Forward(prompt, false, logits.data()).ok());
    std::vector<TokenId> out;
    while (out.size() < max_tokens) {
      const TokenId t = static_cast<TokenId>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      out.push_back(t);
      if (tokenizer_->IsEog(t)) break;
      EXPECT_TRUE(ctx->Forward(std::span<const TokenId>(&t, 1), false, logits.data()).ok());
    }
    return out;
  }

  ProcessSpec Greedy(std::vector<TokenId> prompt, int32_t max_tokens, int32_t priority = 0,
                     std::string tenant = "default") {
    ProcessSpec s;
    s.prompt = std::move(prompt);
    s.sampling.temperature = 0;
    s.limits.max_tokens = max_tokens;
    s.priority = priority;
    s.tenant = std::move(tenant);
    return s;
  }

  const uint32_t context_;
  const std::string arch_;
  const uint32_t sliding_window_;
  uint32_t num_layers_ = 2;
  uint32_t swa_pattern_ = 2;  // gemma3: every 2nd layer global
  std::vector<uint8_t> bytes_;
  std::unique_ptr<arch::Model> model_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  ThreadPool pool_{2};
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_TINY_ENGINE_TEST_UTIL_H_
