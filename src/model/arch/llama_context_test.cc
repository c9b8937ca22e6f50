#include "model/arch/llama_context.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "model/arch/batch_forward.h"
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

// These tests compare paths that compute the same K/V in different batch shapes, so they
// differ by float summation order; an F32 cache keeps that difference unrounded (a rounded
// cache type could turn it into one rounding step). The cache types have tests of their own.
ContextOptions F32Cache() {
  ContextOptions o;
  o.cache_type_k = o.cache_type_v = cpu::KvType::kF32;
  return o;
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

TEST(ModelTest, Phi3ReadsFusedMatricesAsRowViewsAndLongRopeMetadata) {
  TinyModelSpec spec;
  spec.arch = "phi3";
  spec.type = cpu::TensorType::kF32;
  // Without repacking the views point into the file: Q, K, V and gate, up are consecutive
  // rows of the fused tensors.
  std::vector<uint8_t> bytes = *MakeTinyModel(spec);
  auto parsed = gguf::GgufFile::Parse(bytes);
  ASSERT_TRUE(parsed.ok());
  const gguf::TensorInfo* qkv = (*parsed)->FindTensor("blk.1.attn_qkv.weight");
  const gguf::TensorInfo* gate_up = (*parsed)->FindTensor("blk.1.ffn_up.weight");
  ASSERT_NE(qkv, nullptr);
  ASSERT_NE(gate_up, nullptr);
  auto model = Model::FromGguf(std::move(parsed).value(), /*repack=*/false);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const ModelConfig& c = (*model)->config();
  const LayerWeights& l = (*model)->layer(1);
  const size_t row_bytes = c.embd * sizeof(float);
  const uint8_t* base = qkv->data;
  EXPECT_EQ(l.wq.data, static_cast<const void*>(base));
  EXPECT_EQ(l.wk.data, static_cast<const void*>(base + c.q_dim() * row_bytes));
  EXPECT_EQ(l.wv.data, static_cast<const void*>(base + (c.q_dim() + c.kv_dim()) * row_bytes));
  EXPECT_EQ(l.wq.rows, c.q_dim());
  EXPECT_EQ(l.wv.rows, c.kv_dim());
  EXPECT_EQ(l.gate.data, static_cast<const void*>(gate_up->data));
  EXPECT_EQ(l.up.data, static_cast<const void*>(gate_up->data + c.ffn * row_bytes));
  EXPECT_EQ(l.up.rows, c.ffn);
  // Every layer slides (window 5); LongRoPE with the converter's attention factor.
  EXPECT_EQ(c.rope_mode, RopeMode::kNeox);
  EXPECT_EQ(c.sliding_window, 5u);
  EXPECT_TRUE(c.IsSlidingLayer(0) && c.IsSlidingLayer(1));
  EXPECT_TRUE(c.longrope);
  EXPECT_EQ(c.rope_orig_context, 32u);
  EXPECT_NEAR(c.rope_attn_factor, std::sqrt(1 + std::log(256.0 / 32) / std::log(32.0)), 1e-6);
  // Short factors (1 .. 1.5) up to the original context, long ones (1 .. 40) beyond.
  EXPECT_FLOAT_EQ((*model)->RopeFreqFactors(32).back(), 1.5f);
  EXPECT_FLOAT_EQ((*model)->RopeFreqFactors(33).back(), 40.0f);
  EXPECT_FLOAT_EQ((*model)->RopeFreqFactors(1).back(), 1.5f);
  // weight_bytes counts each fused tensor once: every matrix (the output one included), the
  // norms and the two factor vectors, all F32 here.
  size_t expected = c.vocab_size * row_bytes + (2 * c.num_layers + 1) * c.embd * sizeof(float) +
                 2 * (c.rope_dims / 2) * sizeof(float);
  for (size_t i = 0; i < c.num_layers; ++i) {
    const LayerWeights& li = (*model)->layer(i);
    for (const cpu::MatView* v : li.Matrices()) {
      expected += v->rows * v->row_bytes;
    }
  }
  EXPECT_EQ((*model)->weight_bytes(), expected);
}

// The same prompt in a context at the original length and in a longer one: the short and the
// long factors rotate differently, so the logits differ; each context is self-consistent.
TEST(ContextTest, Phi3ContextLongerThanTheOriginalUsesTheLongFactors) {
  TinyModelSpec spec;
  spec.arch = "phi3";
  spec.type = cpu::TensorType::kF32;
  LoadedTinyModel l = LoadTiny(spec);
  ThreadPool pool(1);
  const size_t vocab = l.model->config().vocab_size;
  std::vector<TokenId> tokens = SomeTokens(20);
  std::vector<std::vector<float>> logits;
  for (size_t ctx_tokens : {size_t{32}, size_t{33}, size_t{32}}) {
    ContextOptions o;
    o.max_tokens = ctx_tokens;
    auto ctx = Context::Create(*l.model, pool, o);
    ASSERT_TRUE(ctx.ok());
    logits.emplace_back(tokens.size() * vocab);
    ASSERT_TRUE((*ctx)->Forward(tokens, true, logits.back().data()).ok());
  }
  EXPECT_EQ(MaxAbsDiff(logits[0], logits[2]), 0.0f);
  EXPECT_GT(MaxAbsDiff(logits[0], logits[1]), 0.1f);
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
  for (const char* arch : {"llama", "qwen2", "phi3"}) {
    TinyModelSpec spec;
    spec.arch = arch;
    spec.type = cpu::TensorType::kF32;
    LoadedTinyModel l = LoadTiny(spec);
    ThreadPool pool(2);
    const size_t vocab = l.model->config().vocab_size;
    std::vector<TokenId> tokens = SomeTokens(21);

    auto whole = Context::Create(*l.model, pool, F32Cache());
    ASSERT_TRUE(whole.ok());
    std::vector<float> all(tokens.size() * vocab);
    ASSERT_TRUE((*whole)->Forward(tokens, true, all.data()).ok());

    ContextOptions small_batches = F32Cache();
    small_batches.max_batch_tokens = 4;
    auto chunked = Context::Create(*l.model, pool, small_batches);
    ASSERT_TRUE(chunked.ok());
    std::vector<float> chunked_all(tokens.size() * vocab);
    ASSERT_TRUE((*chunked)->Forward(tokens, true, chunked_all.data()).ok());
    EXPECT_LT(MaxAbsDiff(all, chunked_all), 1e-4f) << arch;

    auto seq = Context::Create(*l.model, pool, F32Cache());
    ASSERT_TRUE(seq.ok());
    std::vector<float> one(vocab), seq_all;
    for (TokenId t : tokens) {
      ASSERT_TRUE((*seq)->Forward(std::span<const TokenId>(&t, 1), false, one.data()).ok());
      seq_all.insert(seq_all.end(), one.begin(), one.end());
    }
    EXPECT_LT(MaxAbsDiff(all, seq_all), 1e-4f) << arch;
  }
}

// Attention cuts a long context into parts (BatchForward::kAttentionPart positions). A decode
// of two (token, KV head) pairs runs its parts as tasks of their own on a pool of three
// threads and one task per pair on a pool of one; the parts and the order they fold in depend
// on positions only, so the logits are the same, bit for bit, past several parts (and across
// a sliding window's first position inside a part).
TEST(ContextTest, LongContextDecodeIsTheSameOnAnyNumberOfThreads) {
  for (const char* arch : {"qwen2", "gemma3"}) {
    TinyModelSpec spec;
    spec.arch = arch;
    spec.type = cpu::TensorType::kF32;
    spec.context = 1024;
    spec.sliding_window = 300;  // gemma3's sliding layers: parts from inside one
    LoadedTinyModel l = LoadTiny(spec);
    ASSERT_EQ(l.model->config().num_kv_heads, 2u);
    const std::vector<TokenId> tokens = SomeTokens(BatchForward::kAttentionPart * 2 + 120);
    const size_t prompt = tokens.size() - 8;
    auto decode = [&](size_t threads) {
      ThreadPool pool(threads);
      ContextOptions o = F32Cache();
      o.max_tokens = tokens.size();
      auto ctx = Context::Create(*l.model, pool, o);
      EXPECT_TRUE(ctx.ok());
      EXPECT_TRUE((*ctx)->Forward(std::span<const TokenId>(tokens).first(prompt), false, nullptr).ok());
      std::vector<float> logits, one(l.model->config().vocab_size);
      for (size_t i = prompt; i < tokens.size(); ++i) {
        EXPECT_TRUE((*ctx)->Forward(std::span<const TokenId>(&tokens[i], 1), false, one.data()).ok());
        logits.insert(logits.end(), one.begin(), one.end());
      }
      return logits;
    };
    const std::vector<float> one_thread = decode(1);
    ASSERT_TRUE(std::all_of(one_thread.begin(), one_thread.end(), [](float v) { return std::isfinite(v); }));
    EXPECT_EQ(decode(3), one_thread) << arch;
  }
}

TEST(ContextTest, RefusesAQ8CacheForAHeadDimensionItsBlocksDoNotTile) {
  LoadedTinyModel l = LoadTiny({});  // head_dim 16
  ThreadPool pool(1);
  for (bool keys : {true, false}) {
    ContextOptions o;
    (keys ? o.cache_type_k : o.cache_type_v) = cpu::KvType::kQ8_0;
    auto ctx = Context::Create(*l.model, pool, o);
    ASSERT_FALSE(ctx.ok());
    EXPECT_EQ(ctx.status().code(), StatusCode::kInvalidArgument);
    const std::string& m = ctx.status().message();
    EXPECT_NE(m.find(keys ? "--cache-type-k" : "--cache-type-v"), std::string::npos) << m;
    EXPECT_NE(m.find("multiple of 32"), std::string::npos) << m;
    EXPECT_NE(m.find("16"), std::string::npos) << m;
  }
  // F16 fits any head dimension, and its cache takes half the bytes of F32's.
  auto f16 = Context::Create(*l.model, pool, ContextOptions{});
  auto f32 = Context::Create(*l.model, pool, F32Cache());
  ASSERT_TRUE(f16.ok() && f32.ok());
  EXPECT_EQ(2 * (*f16)->kv_cache_bytes(), (*f32)->kv_cache_bytes());
}

TEST(ContextTest, TruncateThenReplayGivesTheSameLogits) {
  LoadedTinyModel l = LoadTiny({});
  ThreadPool pool(1);
  auto ctx = Context::Create(*l.model, pool, F32Cache());
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
  auto ctx = Context::Create(*l.model, pool, F32Cache());
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
