// BatchForward over a paged cache: several sequences at different positions in one pass,
// prefill chunks mixed with decode tokens, K/V reached through shuffled block tables, give
// the same logits as each sequence run alone through Context (contiguous cache).
#include "model/arch/batch_forward.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <tuple>

#include "model/arch/llama_context.h"
#include "model/arch/paged_pool_test_util.h"
#include "model/arch/tiny_model.h"

namespace llmasos::arch {
namespace {

// qwen2: NeoX RoPE and QKV biases. gemma3: sliding-window layers (window 5, every 2nd layer)
// whose windows start inside a block and cross block boundaries of the paged pool. phi3:
// fused QKV and gate/up read through row views (repacked when the type allows), every layer
// sliding, LongRoPE's long factors and attention factor (context 64 > original 32).
LoadedTinyModel LoadTiny(cpu::TensorType type, const std::string& arch = "qwen2") {
  TinyModelSpec spec;
  spec.type = type;
  spec.arch = arch;
  auto l = LoadTinyModel(spec);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return *std::move(l);
}

std::vector<TokenId> Tokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<TokenId> t(n);
  for (auto& v : t) v = static_cast<TokenId>(rng() % 300);
  return t;
}

// Each sequence alone: logits of every prompt position, then of each decode token.
std::vector<std::vector<float>> Alone(const Model& model, ThreadPool& pool,
                                      const std::vector<TokenId>& tokens, cpu::KvType k_type,
                                      cpu::KvType v_type) {
  ContextOptions o;
  o.max_tokens = 64;
  o.cache_type_k = k_type;
  o.cache_type_v = v_type;
  auto ctx = Context::Create(model, pool, o);
  EXPECT_TRUE(ctx.ok());
  std::vector<std::vector<float>> out;
  for (TokenId t : tokens) {
    out.emplace_back(model.config().vocab_size);
    EXPECT_TRUE((*ctx)->Forward(std::span<const TokenId>(&t, 1), false, out.back().data()).ok());
  }
  return out;
}

float RelDiff(const std::vector<float>& a, const float* b) {
  float m = 0, scale = 1e-6f;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(a[i]));
  }
  return m / scale;
}

// Three sequences run in mixed batches through a shuffled paged pool of the given K/V types
// against each run alone in a Context with the same types; `tol` bounds the difference
// relative to the largest logit.
void ExpectMixedBatchesEqualEachSequenceAlone(const Model& model, cpu::KvType k_type,
                                              cpu::KvType v_type, float tol) {
  const ModelConfig& c = model.config();
  ThreadPool pool(2);
  const size_t block_tokens = 4;
  PagedPool kv(c, 40, block_tokens, k_type, v_type);
  // Three sequences; their blocks interleaved in a shuffled order.
  std::vector<BlockId> ids(kv.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(5));
  std::vector<std::vector<BlockId>> tables = {{ids.begin(), ids.begin() + 10},
                                              {ids.begin() + 10, ids.begin() + 20},
                                              {ids.begin() + 20, ids.begin() + 30}};
  const std::vector<size_t> prompt_len = {9, 2, 13};
  const size_t decode_steps = 6;
  std::vector<std::vector<TokenId>> seqs;
  for (size_t s = 0; s < 3; ++s) seqs.push_back(Tokens(prompt_len[s] + decode_steps, 100 + s));

  BatchForward batch(model, pool, 32, 64, /*float_activations=*/false);
  std::vector<std::vector<float>> got(3);  // per sequence: logits of every position, flattened
  std::vector<size_t> done(3, 0);
  // Step 1: sequence 0's prompt in two chunks while 1 and 2 prefill whole; then decode all.
  auto step = [&](std::vector<std::pair<size_t, size_t>> plan) {  // (sequence, tokens)
    std::vector<BatchSegment> segs;
    std::vector<std::vector<float>> outs;
    outs.reserve(plan.size());
    for (auto [s, n] : plan) {
      outs.emplace_back(n * c.vocab_size);
      BatchSegment seg;
      seg.tokens = std::span<const TokenId>(seqs[s]).subspan(done[s], n);
      seg.pos0 = done[s];
      seg.block_table = tables[s];
      seg.logits = LogitsMode::kAll;
      seg.logits_out = outs.back().data();
      segs.push_back(seg);
    }
    Status st = batch.Run(segs, kv.layout, kv.num_blocks);
    ASSERT_TRUE(st.ok()) << st.ToString();
    for (size_t i = 0; i < plan.size(); ++i) {
      auto [s, n] = plan[i];
      got[s].insert(got[s].end(), outs[i].begin(), outs[i].end());
      done[s] += n;
    }
  };
  step({{0, 5}, {1, 2}});
  step({{2, 13}, {0, 4}, {1, 1}});
  for (size_t k = 0; k < decode_steps; ++k) {
    std::vector<std::pair<size_t, size_t>> plan;
    for (size_t s = 0; s < 3; ++s) {
      if (done[s] < seqs[s].size()) plan.push_back({s, 1});
    }
    if (!plan.empty()) step(plan);
  }
  for (size_t s = 0; s < 3; ++s) {
    std::vector<std::vector<float>> want = Alone(model, pool, seqs[s], k_type, v_type);
    ASSERT_EQ(got[s].size(), done[s] * c.vocab_size);
    for (size_t p = 0; p < done[s]; ++p) {
      EXPECT_LE(RelDiff(want[p], &got[s][p * c.vocab_size]), tol)
          << cpu::KvTypeName(k_type) << "/" << cpu::KvTypeName(v_type) << " sequence " << s
          << " position " << p;
    }
  }
}

class BatchForwardTest : public testing::TestWithParam<std::tuple<cpu::TensorType, std::string>> {};

TEST_P(BatchForwardTest, MixedBatchesEqualEachSequenceAlone) {
  const cpu::TensorType type = std::get<0>(GetParam());
  LoadedTinyModel l = LoadTiny(type, std::get<1>(GetParam()));
  // Float weights: only summation order differs. 8-bit activations: the batched product
  // runs other kernels (panels for >= 8 tokens) whose float rounding may flip an 8-bit
  // rounding of a later activation; 2e-2 of the largest logit bounds that, and a wrong
  // position, block or sequence gives errors of order 1. An F32 cache stores K/V unrounded.
  ExpectMixedBatchesEqualEachSequenceAlone(*l.model, cpu::KvType::kF32, cpu::KvType::kF32,
                                           type == cpu::TensorType::kF32 ? 1e-4f : 2e-2f);
}

// The same in the rounded cache types, keys and values chosen independently, on a model whose
// head dimension (32) Q8_0 blocks tile. Float weights, so the K/V rows the batch and the
// single run round differ only by summation order; a rounding step of F16 (2^-11 relative)
// or Q8_0 (1/254 of a block's largest) that falls the other way in one of them moves logits
// by far less than TOL, while a row read from the wrong place, type or scale moves them by
// order 1.
TEST(BatchForwardCacheTypesTest, MixedBatchesEqualEachSequenceAloneInEachCacheType) {
  constexpr float kTol = 2e-3f;
  for (const std::string arch : {"qwen2", "gemma3"}) {
    TinyModelSpec spec;
    spec.type = cpu::TensorType::kF32;
    spec.arch = arch;
    spec.embd = 128;  // 4 heads of 32
    auto l = LoadTinyModel(spec);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    using cpu::KvType;
    for (auto [k, v] : {std::pair{KvType::kF16, KvType::kF16}, std::pair{KvType::kQ8_0, KvType::kQ8_0},
                        std::pair{KvType::kF16, KvType::kQ8_0}, std::pair{KvType::kQ8_0, KvType::kF32}}) {
      SCOPED_TRACE(arch);
      ExpectMixedBatchesEqualEachSequenceAlone(*l->model, k, v, kTol);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, BatchForwardTest,
                         testing::Combine(testing::Values(cpu::TensorType::kF32, cpu::TensorType::kQ4_1),
                                          testing::Values("qwen2", "gemma3", "phi3")),
                         [](const auto& info) {
                           return std::string(cpu::Traits(std::get<0>(info.param)).name) + "_" +
                                  std::get<1>(info.param);
                         });

TEST(BatchForwardErrorTest, RefusesBadSegmentsBeforeWriting) {
  LoadedTinyModel l = LoadTiny(cpu::TensorType::kF32);
  const ModelConfig& c = l.model->config();
  ThreadPool pool(1);
  PagedPool kv(c, 4, 4);
  BatchForward batch(*l.model, pool, 8, 16, false);
  std::vector<TokenId> tokens = Tokens(6, 1);
  std::vector<BlockId> table = {0, 1};
  std::vector<float> logits(c.vocab_size);
  auto run = [&](BatchSegment seg) { return batch.Run(std::span<const BatchSegment>(&seg, 1), kv.layout, kv.num_blocks); };
  BatchSegment ok{tokens, 0, table, LogitsMode::kLast, logits.data()};
  BatchSegment short_table = ok;
  short_table.block_table = std::span<const BlockId>(table).first(1);  // covers 4, needs 6
  EXPECT_FALSE(run(short_table).ok());
  std::vector<BlockId> bad_block = {0, 9};
  BatchSegment bad = ok;
  bad.block_table = bad_block;
  EXPECT_FALSE(run(bad).ok());
  BatchSegment beyond = ok;
  beyond.pos0 = 12;  // 12 + 6 > max_context 16
  EXPECT_FALSE(run(beyond).ok());
  std::vector<TokenId> oov = {1, 999999};
  BatchSegment oov_seg = ok;
  oov_seg.tokens = oov;
  EXPECT_FALSE(run(oov_seg).ok());
  BatchSegment no_out = ok;
  no_out.logits_out = nullptr;
  EXPECT_FALSE(run(no_out).ok());
  // Nothing was written by the refused runs: the pool still holds its NaN fill.
  EXPECT_TRUE(std::all_of(kv.data.begin(), kv.data.end(), [](float v) { return std::isnan(v); }));
  EXPECT_TRUE(run(ok).ok());
  EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); }));
}

// A paged cache may release the blocks before every layer's window (kernel::KvMemory's
// DropBefore): their table entries then name no block. The pass accepts such an entry only
// where no layer reads it, and reads the same logits as with the block still there.
TEST(BatchForwardErrorTest, AcceptsAReleasedBlockOnlyBeforeEveryLayersWindow) {
  constexpr BlockId kReleased = UINT32_MAX;
  for (const std::string arch : {"phi3", "gemma3"}) {  // window 5 on every layer / on layer 0 only
    SCOPED_TRACE(arch);
    LoadedTinyModel l = LoadTiny(cpu::TensorType::kF32, arch);
    const ModelConfig& c = l.model->config();
    const bool all_slide = arch == "phi3";
    EXPECT_EQ(c.AllLayersWindow(), all_slide ? c.sliding_window : 0);
    ThreadPool pool(1);
    PagedPool kv(c, 4, 4);
    BatchForward batch(*l.model, pool, 16, 16, false);
    const std::vector<TokenId> tokens = Tokens(9, 3);
    std::vector<float> prefill_logits(c.vocab_size), want(c.vocab_size), got(c.vocab_size);
    auto run = [&](size_t pos0, size_t n, const std::vector<BlockId>& table, float* out) {
      BatchSegment seg{std::span<const TokenId>(tokens).subspan(pos0, n), pos0, table, LogitsMode::kLast, out};
      return batch.Run(std::span<const BatchSegment>(&seg, 1), kv.layout, kv.num_blocks);
    };
    ASSERT_TRUE(run(0, 8, {0, 1}, prefill_logits.data()).ok());
    ASSERT_TRUE(run(8, 1, {0, 1, 2}, want.data()).ok());
    // Position 8 reads positions 4..8 on a sliding layer: block 0 is outside the window.
    const Status released = run(8, 1, {kReleased, 1, 2}, got.data());
    if (all_slide) {
      ASSERT_TRUE(released.ok()) << released.ToString();
      EXPECT_EQ(got, want);
    } else {
      EXPECT_EQ(released.code(), StatusCode::kInvalidArgument) << "a global layer reads block 0";
    }
    // Position 7 reads positions 3..7: block 0 is inside the window.
    EXPECT_EQ(run(7, 1, {kReleased, 1}, got.data()).code(), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace llmasos::arch
