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

// A tiny gemma3 of 6 layers, every 3rd global (layers 2 and 5): two global and four sliding
// layers make one global group {2, 5} and two sliding groups {0, 1} and {3, 4} of 2 layers.
LoadedTinyModel LoadGroupedGemma(uint32_t window) {
  TinyModelSpec spec;
  spec.type = cpu::TensorType::kF32;
  spec.arch = "gemma3";
  spec.layers = 6;
  spec.swa_pattern = 3;
  spec.sliding_window = window;
  auto l = LoadTinyModel(spec);
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return *std::move(l);
}

TEST(LayerGroupsTest, SplitGlobalAndSlidingLayersIntoGroupsOfOnePageSize) {
  LoadedTinyModel l = LoadGroupedGemma(5);
  const KvLayerGroups g = LayerGroupsOf(l.model->config());
  EXPECT_EQ(g.layers_per_group, 2u);
  EXPECT_EQ(g.group_window, (std::vector<size_t>{0, 5, 5}));
  EXPECT_EQ(g.layer_group, (std::vector<uint32_t>{1, 1, 0, 2, 2, 0}));
  EXPECT_EQ(g.layer_index, (std::vector<uint32_t>{0, 1, 0, 0, 1, 1}));
  // Gemma 3 270M's shape: 18 layers, every 6th global.
  ModelConfig c = l.model->config();
  c.num_layers = 18;
  c.swa_pattern = 6;
  c.sliding_window = 512;
  const KvLayerGroups gemma = LayerGroupsOf(c);
  EXPECT_EQ(gemma.layers_per_group, 3u);
  EXPECT_EQ(gemma.group_window, (std::vector<size_t>{0, 512, 512, 512, 512, 512}));
  EXPECT_EQ(gemma.layer_group[5], 0u);
  EXPECT_EQ(gemma.layer_group[17], 0u);
  EXPECT_EQ(gemma.layer_index[17], 2u);
  EXPECT_EQ(gemma.layer_group[16], 5u);
  // Models whose layers are all alike keep one group of every layer.
  for (const std::string arch : {"llama", "phi3"}) {
    LoadedTinyModel other = LoadTiny(cpu::TensorType::kF32, arch);
    const KvLayerGroups one = LayerGroupsOf(other.model->config());
    EXPECT_EQ(one.num_groups(), 1u) << arch;
    EXPECT_EQ(one.layers_per_group, other.model->config().num_layers) << arch;
    EXPECT_EQ(one.group_window[0], other.model->config().AllLayersWindow()) << arch;
  }
}

// The same batches through one group (a block holds every layer) and through layer groups
// (each group's pages in their own shuffled table) give bit-identical logits; a sliding
// group's pages before its window may be released, a global group's may not.
TEST(LayerGroupsTest, GroupedPagesGiveTheSameLogitsAsOneGroup) {
  LoadedTinyModel l = LoadGroupedGemma(5);
  const ModelConfig& c = l.model->config();
  const KvLayerGroups groups = LayerGroupsOf(c);
  ASSERT_EQ(groups.num_groups(), 3u);
  ThreadPool pool(2);
  const size_t bt = 4;
  const std::vector<TokenId> tokens = Tokens(20, 9);
  // Prefill 13 in two chunks, then decode 7: logits of every position.
  const std::vector<std::pair<size_t, size_t>> plan = {{0, 6}, {6, 7}, {13, 1}, {14, 1}, {15, 1},
                                                       {16, 1}, {17, 1}, {18, 1}, {19, 1}};
  auto run = [&](const KvLayout& layout, size_t num_blocks, const std::vector<std::vector<BlockId>>& tables) {
    BatchForward batch(*l.model, pool, 16, 32, false);
    std::vector<std::span<const BlockId>> spans(tables.begin(), tables.end());
    std::vector<float> all;
    for (auto [pos0, n] : plan) {
      std::vector<float> out(n * c.vocab_size);
      BatchSegment seg{std::span<const TokenId>(tokens).subspan(pos0, n), pos0, tables[0], LogitsMode::kAll,
                       out.data()};
      seg.group_tables = spans;
      const Status st = batch.Run(std::span<const BatchSegment>(&seg, 1), layout, num_blocks);
      EXPECT_TRUE(st.ok()) << st.ToString();
      all.insert(all.end(), out.begin(), out.end());
    }
    return all;
  };
  PagedPool one(c, 5, bt);
  const std::vector<float> want = run(one.layout, one.num_blocks, {{3, 0, 4, 1, 2}});
  ASSERT_TRUE(std::all_of(want.begin(), want.end(), [](float v) { return std::isfinite(v); }));

  PagedPool paged(c, 15, bt, cpu::KvType::kF32, cpu::KvType::kF32, groups.layers_per_group);
  std::vector<BlockId> ids(15);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
  const std::vector<std::vector<BlockId>> tables = {
      {ids.begin(), ids.begin() + 5}, {ids.begin() + 5, ids.begin() + 10}, {ids.begin() + 10, ids.end()}};
  const KvLayout grouped = WithLayerGroups(paged.layout, groups);
  EXPECT_EQ(run(grouped, paged.num_blocks, tables), want);

  // Position 19 reads positions 15..19 on sliding layers: block 0-2 of a sliding group may be
  // released (the NaN fill of a pool would show otherwise), block 0 of the global group not.
  constexpr BlockId kReleased = UINT32_MAX;
  std::vector<std::vector<BlockId>> released = tables;
  released[1][0] = released[1][1] = released[1][2] = kReleased;
  released[2][0] = kReleased;
  BatchForward batch(*l.model, pool, 16, 32, false);
  std::vector<float> got(c.vocab_size);
  auto decode = [&](const std::vector<std::vector<BlockId>>& t) {
    std::vector<std::span<const BlockId>> spans(t.begin(), t.end());
    BatchSegment seg{std::span<const TokenId>(tokens).subspan(19, 1), 19, t[0], LogitsMode::kLast, got.data()};
    seg.group_tables = spans;
    return batch.Run(std::span<const BatchSegment>(&seg, 1), grouped, paged.num_blocks);
  };
  ASSERT_TRUE(decode(released).ok());
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want.end() - c.vocab_size));
  std::vector<std::vector<BlockId>> global_released = tables;
  global_released[0][0] = kReleased;
  EXPECT_EQ(decode(global_released).code(), StatusCode::kInvalidArgument);
  std::vector<std::vector<BlockId>> too_early = tables;
  too_early[1][3] = kReleased;  // positions 12..15: 15 is in the window
  EXPECT_EQ(decode(too_early).code(), StatusCode::kInvalidArgument);
  // Tables for another number of groups, and a mapping beyond the page, are refused.
  std::vector<std::span<const BlockId>> two(tables.begin(), tables.begin() + 2);
  BatchSegment seg{std::span<const TokenId>(tokens).subspan(19, 1), 19, tables[0], LogitsMode::kLast, got.data()};
  seg.group_tables = two;
  EXPECT_EQ(batch.Run(std::span<const BatchSegment>(&seg, 1), grouped, paged.num_blocks).code(),
            StatusCode::kInvalidArgument);
  std::vector<uint32_t> bad_index = groups.layer_index;
  bad_index[4] = 2;  // a page holds 2 layers
  KvLayout bad = grouped;
  bad.layer_index = bad_index;
  std::vector<std::span<const BlockId>> spans(tables.begin(), tables.end());
  seg.group_tables = spans;
  EXPECT_EQ(batch.Run(std::span<const BatchSegment>(&seg, 1), bad, paged.num_blocks).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace llmasos::arch
