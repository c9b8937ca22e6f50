#include "model/arch/llama_context.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/arch/tiny_model.h"
#include "model/gguf/gguf_writer.h"

namespace llmasos::arch {
namespace {

LoadedTinyModel LoadTiny(const TinyModelSpec& spec) {
  auto l = LoadTinyModel(spec);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return *std::move(l);
}

std::vector<TokenId> SomeTokens(size_t n) {
  std::vector<TokenId> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<TokenId>((i * 37 + 11) % 300);
  return t;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

TEST(ModelTest, ReadsConfigOfTinyModel) {
  TinyModelSpec spec;
  spec.arch = "qwen2";
  LoadedTinyModel l = LoadTiny(spec);
  const ModelConfig& c = l.model->config();
  EXPECT_EQ(c.num_layers, 2u);
  EXPECT_EQ(c.embd, 64u);
  EXPECT_EQ(c.head_dim, 16u);
  EXPECT_EQ(c.kv_dim(), 32u);
  EXPECT_EQ(c.vocab_size, 320u);
  EXPECT_EQ(c.rope_mode, RopeMode::kNeox);
  EXPECT_EQ(l.model->layer(0).bq.size(), 64u);
}

gguf::GgufWriter OneLayerHeader() {
  gguf::GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetUint32("llama.block_count", 1);
  w.SetUint32("llama.context_length", 64);
  w.SetUint32("llama.embedding_length", 64);
  w.SetUint32("llama.feed_forward_length", 128);
  w.SetUint32("llama.attention.head_count", 4);
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  return w;
}

StatusOr<std::unique_ptr<Model>> ModelFrom(const gguf::GgufWriter& w, std::vector<uint8_t>* bytes) {
  ASSIGN_OR_RETURN(*bytes, w.Serialize());
  ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Parse(*bytes));
  return Model::FromGguf(std::move(file));
}

TEST(ModelTest, NamesAMissingTensor) {
  gguf::GgufWriter w = OneLayerHeader();
  std::vector<float> small(64 * 320, 0.01f);
  ASSERT_TRUE(w.AddTensorFromFloats("token_embd.weight", cpu::TensorType::kF32, {64, 320}, small).ok());
  std::vector<uint8_t> bytes;
  auto model = ModelFrom(w, &bytes);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), StatusCode::kNotFound);
  EXPECT_NE(model.status().message().find("output_norm.weight"), std::string::npos)
      << model.status().ToString();
}

TEST(ModelTest, NamesATensorOfTheWrongShape) {
  gguf::GgufWriter w = OneLayerHeader();
  std::vector<float> small(64 * 320, 0.01f);
  // [63, 320] where [64, vocab] is expected.
  ASSERT_TRUE(w.AddTensorFromFloats("token_embd.weight", cpu::TensorType::kF32, {63, 320},
                                    std::span<const float>(small).first(63 * 320)).ok());
  std::vector<uint8_t> bytes;
  auto model = ModelFrom(w, &bytes);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(model.status().message().find("token_embd.weight"), std::string::npos);
}

TEST(ModelTest, RejectsHeadsThatDoNotDivideIntoKvHeads) {
  gguf::GgufWriter w = OneLayerHeader();
  w.SetUint32("llama.attention.head_count_kv", 3);
  std::vector<uint8_t> bytes;
  auto model = ModelFrom(w, &bytes);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("head_count_kv"), std::string::npos);
}

TEST(ModelTest, RejectsUnknownArchitecture) {
  gguf::GgufWriter w;
  w.SetString("general.architecture", "mamba");
  auto out = w.Serialize();
  ASSERT_TRUE(out.ok());
  auto parsed = gguf::GgufFile::Parse(*out);
  ASSERT_TRUE(parsed.ok());
  auto model = Model::FromGguf(std::move(parsed).value());
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(model.status().message().find("mamba"), std::string::npos);
}

// One forward pass over n tokens must give the same logits as n passes of one token, and as
// chunked passes: the KV cache and positions are handled identically on every path.
TEST(ContextTest, BatchedChunkedAndSequentialForwardAgree) {
  for (const char* arch : {"llama", "qwen2"}) {
    TinyModelSpec spec;
    spec.arch = arch;
    spec.type = cpu::TensorType::kF32;
    LoadedTinyModel l = LoadTiny(spec);
    ThreadPool pool(2);
    const size_t vocab = l.model->config().vocab_size;
    std::vector<TokenId> tokens = SomeTokens(21);

    auto whole = Context::Create(*l.model, pool, {});
    ASSERT_TRUE(whole.ok());
    std::vector<float> all(tokens.size() * vocab);
    ASSERT_TRUE((*whole)->Forward(tokens, true, all.data()).ok());

    ContextOptions small_batches;
    small_batches.max_batch_tokens = 4;
    auto chunked = Context::Create(*l.model, pool, small_batches);
    ASSERT_TRUE(chunked.ok());
    std::vector<float> chunked_all(tokens.size() * vocab);
    ASSERT_TRUE((*chunked)->Forward(tokens, true, chunked_all.data()).ok());
    EXPECT_LT(MaxAbsDiff(all, chunked_all), 1e-4f) << arch;

    auto seq = Context::Create(*l.model, pool, {});
    ASSERT_TRUE(seq.ok());
    std::vector<float> one(vocab), seq_all;
    for (TokenId t : tokens) {
      ASSERT_TRUE((*seq)->Forward(std::span<const TokenId>(&t, 1), false, one.data()).ok());
      seq_all.insert(seq_all.end(), one.begin(), one.end());
    }
    EXPECT_LT(MaxAbsDiff(all, seq_all), 1e-4f) << arch;
  }
}

TEST(ContextTest, TruncateThenReplayGivesTheSameLogits) {
  LoadedTinyModel l = LoadTiny({});
  ThreadPool pool(1);
  auto ctx = Context::Create(*l.model, pool, {});
  ASSERT_TRUE(ctx.ok());
  const size_t vocab = l.model->config().vocab_size;
  std::vector<TokenId> tokens = SomeTokens(10);
  std::vector<float> first(vocab), second(vocab);
  ASSERT_TRUE((*ctx)->Forward(tokens, false, first.data()).ok());
  (*ctx)->Truncate(6);
  EXPECT_EQ((*ctx)->num_tokens(), 6u);
  ASSERT_TRUE((*ctx)->Forward(std::span<const TokenId>(tokens).subspan(6), false, second.data()).ok());
  EXPECT_LT(MaxAbsDiff(first, second), 1e-5f);
}

TEST(ContextTest, RejectsOutOfVocabularyTokenAndFullContextWithoutChangingState) {
  TinyModelSpec spec;
  spec.context = 8;
  LoadedTinyModel l = LoadTiny(spec);
  ThreadPool pool(1);
  auto ctx = Context::Create(*l.model, pool, {});
  ASSERT_TRUE(ctx.ok());
  EXPECT_EQ((*ctx)->max_tokens(), 8u);  // clamped to the model's context
  std::vector<TokenId> bad = {1, 320};
  Status s = (*ctx)->Forward(bad, false, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("320"), std::string::npos);
  EXPECT_EQ((*ctx)->num_tokens(), 0u);
  std::vector<TokenId> nine = SomeTokens(9);
  s = (*ctx)->Forward(nine, false, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_EQ((*ctx)->num_tokens(), 0u);
  EXPECT_TRUE((*ctx)->Forward(std::span<const TokenId>(nine).first(8), false, nullptr).ok());
  EXPECT_EQ((*ctx)->num_tokens(), 8u);
}

}  // namespace
}  // namespace llmasos::arch
