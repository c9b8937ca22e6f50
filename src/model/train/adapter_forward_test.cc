// Unmerged LoRA in the batched forward pass: one batch mixing rows without an adapter and rows
// of two different adapters gives, per row, the logits of the base model with that adapter
// merged into its weights (MergeLoraAdapter), the oracle.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>

#include "model/arch/batch_forward.h"
#include "model/arch/llama_context.h"
#include "model/arch/paged_pool_test_util.h"
#include "model/arch/tiny_model.h"
#include "model/gguf/gguf.h"
#include "model/train/adapter.h"

namespace llmasos::train {
namespace {

arch::TinyModelSpec Spec(cpu::TensorType type) {
  return arch::TinyModelSpec{.arch = "qwen2", .type = type, .embd = 32, .ff = 64, .vocab = 272};
}

// An adapter file on `model` with random A and B (B non-zero, so it changes the logits).
std::vector<uint8_t> RandomAdapterFile(const arch::ModelConfig& model, const std::string& targets,
                                       size_t rank, float alpha, uint32_t seed) {
  LoraConfig config;
  config.rank = rank;
  config.alpha = alpha;
  EXPECT_TRUE(ParseLoraTargets(targets, &config).ok());
  LoraLayout layout(config, model);
  std::vector<float> params(layout.num_params());
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.3f, 0.3f);
  for (float& v : params) v = u(rng);
  auto bytes = SerializeLoraAdapter(model, layout, params, {"test-adapter", {}});
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  return *std::move(bytes);
}

LoadedAdapter Read(const std::vector<uint8_t>& bytes, const arch::ModelConfig& model) {
  auto file = gguf::GgufFile::Parse(bytes);
  EXPECT_TRUE(file.ok());
  auto adapter = ReadLoraAdapter(**file, model);
  EXPECT_TRUE(adapter.ok()) << adapter.status().ToString();
  return *std::move(adapter);
}

std::vector<arch::TokenId> Tokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<arch::TokenId> t(n);
  for (auto& v : t) v = static_cast<arch::TokenId>(rng() % 260);
  return t;
}

// Every position's logits of `tokens` through `model` alone (contiguous cache).
std::vector<float> Alone(const arch::Model& model, ThreadPool& pool, const std::vector<arch::TokenId>& tokens) {
  arch::ContextOptions o;
  o.max_tokens = 64;
  o.float_activations = true;
  o.cache_type_k = o.cache_type_v = cpu::KvType::kF32;  // as the paged pool below
  auto ctx = arch::Context::Create(model, pool, o);
  EXPECT_TRUE(ctx.ok());
  std::vector<float> out(tokens.size() * model.config().vocab_size);
  EXPECT_TRUE((*ctx)->Forward(tokens, true, out.data()).ok());
  return out;
}

float MaxRelDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0, scale = 1e-6f;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(a[i]));
  }
  return m / scale;
}

class AdapterForwardTest : public testing::TestWithParam<cpu::TensorType> {};

TEST_P(AdapterForwardTest, MixedAdapterBatchEqualsEachAdapterMerged) {
  auto base = arch::LoadTinyModel(Spec(GetParam()));
  ASSERT_TRUE(base.ok());
  const arch::ModelConfig& c = base->model->config();
  ThreadPool pool(2);
  // Two adapters of different ranks and targets; one used at a user scale of 0.5.
  const std::vector<uint8_t> file1 = RandomAdapterFile(c, "all", 4, 8.0f, 1);
  const std::vector<uint8_t> file2 = RandomAdapterFile(c, "q,v,down", 2, 3.0f, 2);
  const arch::LoraWeights lora1 = UnmergedLoraWeights(Read(file1, c), 1.0f, c, "one", "one");
  const arch::LoraWeights lora2 = UnmergedLoraWeights(Read(file2, c), 0.5f, c, "two", "two");

  // Four sequences: base, adapter 1, adapter 2, adapter 1 again (one group of two).
  const std::vector<const arch::LoraWeights*> loras = {nullptr, &lora1, &lora2, &lora1};
  const std::vector<size_t> prompt_len = {7, 5, 9, 3};
  const size_t decode_steps = 4;
  std::vector<std::vector<arch::TokenId>> seqs;
  for (size_t s = 0; s < loras.size(); ++s) seqs.push_back(Tokens(prompt_len[s] + decode_steps, 10 + s));

  // A paged pool of 4-token blocks, one table of 5 blocks per sequence.
  const size_t block_tokens = 4, blocks_per_seq = 5;
  const size_t num_blocks = loras.size() * blocks_per_seq;
  arch::PagedPool kv_pool(c, num_blocks, block_tokens);
  const arch::KvLayout& kv = kv_pool.layout;
  std::vector<std::vector<arch::BlockId>> tables(loras.size());
  for (size_t s = 0; s < loras.size(); ++s) {
    tables[s].resize(blocks_per_seq);
    std::iota(tables[s].begin(), tables[s].end(), static_cast<arch::BlockId>(s * blocks_per_seq));
  }

  arch::BatchForward batch(*base->model, pool, 64, 32, /*float_activations=*/true);
  std::vector<std::vector<float>> got(loras.size());
  std::vector<size_t> done(loras.size(), 0);
  for (size_t step = 0; step <= decode_steps; ++step) {
    std::vector<arch::BatchSegment> segs;
    std::vector<std::vector<float>> outs;
    outs.reserve(loras.size());
    for (size_t s = 0; s < loras.size(); ++s) {
      const size_t n = step == 0 ? prompt_len[s] : 1;  // prefill all, then decode all
      outs.emplace_back(n * c.vocab_size);
      arch::BatchSegment seg;
      seg.tokens = std::span<const arch::TokenId>(seqs[s]).subspan(done[s], n);
      seg.pos0 = done[s];
      seg.block_table = tables[s];
      seg.logits = arch::LogitsMode::kAll;
      seg.logits_out = outs.back().data();
      seg.lora = loras[s];
      segs.push_back(seg);
    }
    Status st = batch.Run(segs, kv, num_blocks);
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (size_t s = 0; s < loras.size(); ++s) {
      got[s].insert(got[s].end(), outs[s].begin(), outs[s].end());
      done[s] += segs[s].tokens.size();
    }
  }

  // The oracles: the base alone, and the base with each adapter merged.
  auto merged1 = arch::LoadTinyModel(Spec(GetParam()));
  auto merged2 = arch::LoadTinyModel(Spec(GetParam()));
  ASSERT_TRUE(merged1.ok() && merged2.ok());
  MergeLoraAdapter(Read(file1, c), 1.0f, merged1->model.get());
  MergeLoraAdapter(Read(file2, c), 0.5f, merged2->model.get());
  const std::vector<const arch::Model*> oracle = {base->model.get(), merged1->model.get(),
                                                  merged2->model.get(), merged1->model.get()};
  for (size_t s = 0; s < loras.size(); ++s) {
    const std::vector<float> want = Alone(*oracle[s], pool, seqs[s]);
    ASSERT_EQ(got[s].size(), want.size());
    // Float activations: merged and unmerged differ only in summation order (the merged
    // matrices are float32 W + s B A). A wrong adapter or a missing group gives order 1.
    EXPECT_LE(MaxRelDiff(want, got[s]), 1e-4f) << "sequence " << s;
    if (loras[s] != nullptr) {  // the adapter did change the model
      EXPECT_GT(MaxRelDiff(Alone(*base->model, pool, seqs[s]), got[s]), 1e-2f) << "sequence " << s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, AdapterForwardTest,
                         testing::Values(cpu::TensorType::kF32, cpu::TensorType::kQ4_1),
                         [](const auto& info) { return std::string(cpu::Traits(info.param).name); });

TEST(AdapterForwardErrorTest, RefusesAnAdapterReadForAnotherModelShape) {
  auto base = arch::LoadTinyModel(Spec(cpu::TensorType::kF32));
  ASSERT_TRUE(base.ok());
  const arch::ModelConfig& c = base->model->config();
  arch::ModelConfig deeper = c;
  deeper.num_layers = 3;
  const arch::LoraWeights lora =
      UnmergedLoraWeights(Read(RandomAdapterFile(deeper, "q", 2, 2.0f, 3), deeper), 1.0f, deeper, "deep", "deep");
  ThreadPool pool(1);
  arch::PagedPool kv_pool(c, 2, 4);
  const arch::KvLayout& kv = kv_pool.layout;
  arch::BatchForward batch(*base->model, pool, 8, 8, false);
  std::vector<arch::TokenId> tokens = {1, 2, 3};
  std::vector<arch::BlockId> table = {0};
  std::vector<float> logits(c.vocab_size);
  arch::BatchSegment seg{tokens, 0, table, arch::LogitsMode::kLast, logits.data()};
  seg.lora = &lora;
  const Status st = batch.Run(std::span<const arch::BatchSegment>(&seg, 1), kv, 2);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'deep'"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace llmasos::train
