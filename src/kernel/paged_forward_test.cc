// KvMemory + arch::BatchForward together: sequences whose K/V live in the paged pool, one
// reusing another's prompt through the prefix cache and one forked copy-on-write, produce the
// logits each gives alone in a contiguous cache (arch::Context), in every KV cache type; and
// swapping a sequence out and in, or reusing cached prefix blocks, gives bit-identical logits.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <utility>

#include "kernel/kv_layout.h"
#include "model/arch/llama_context.h"
#include "model/arch/tiny_model.h"

namespace llmasos::kernel {
namespace {

using cpu::KvType;

struct Fixture {
  std::vector<uint8_t> bytes;
  std::unique_ptr<arch::Model> model;
  ThreadPool pool{2};
  KvType k_type, v_type;
  std::unique_ptr<KvMemory> kv;
  std::unique_ptr<arch::BatchForward> batch;

  Fixture(KvType k, KvType v) : k_type(k), v_type(v) {
    arch::TinyModelSpec spec;
    spec.type = cpu::TensorType::kF32;  // float weights: batched and alone agree to rounding
    spec.embd = 128;                    // head_dim 32, which Q8_0 blocks tile
    arch::LoadedTinyModel loaded = *arch::LoadTinyModel(spec);
    bytes = std::move(loaded.bytes);  // the model reads from this buffer; moving keeps it
    model = std::move(loaded.model);
    const arch::ModelConfig& c = model->config();
    KvMemoryOptions o;
    o.num_layers = c.num_layers;
    o.kv_dim = c.kv_dim();
    o.block_tokens = 4;
    o.k_type = k;
    o.v_type = v;
    o.budget_bytes = 64 * *KvBlockBytes(c.num_layers, c.kv_dim(), 4, k, v);  // 64 blocks
    o.swap_budget_bytes = 16 * *KvBlockBytes(c.num_layers, c.kv_dim(), 4, k, v);
    kv = *KvMemory::Create(o);
    batch = std::make_unique<arch::BatchForward>(*model, pool, 64, 128, false);
  }

  // Appends tokens to seq and runs them; returns the logits of the last one.
  std::vector<float> Run(SequenceId seq, std::span<const arch::TokenId> tokens) {
    const size_t pos0 = *kv->Length(seq);
    EXPECT_TRUE(kv->Append(seq, tokens.size()).ok());
    std::vector<float> logits(model->config().vocab_size);
    arch::BatchSegment s{tokens, pos0, *kv->BlockTable(seq), arch::LogitsMode::kLast, logits.data()};
    Status st = batch->Run(std::span<const arch::BatchSegment>(&s, 1), KvLayoutOf(*kv), kv->num_blocks());
    EXPECT_TRUE(st.ok()) << st.ToString();
    return logits;
  }

  std::vector<float> Alone(std::span<const arch::TokenId> tokens) {
    arch::ContextOptions o;
    o.max_tokens = 128;
    o.cache_type_k = k_type;
    o.cache_type_v = v_type;
    auto ctx = *arch::Context::Create(*model, pool, o);
    std::vector<float> logits(model->config().vocab_size);
    EXPECT_TRUE(ctx->Forward(tokens, false, logits.data()).ok());
    return logits;
  }
};

float MaxRel(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0, s = 1e-6f;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(a[i] - b[i]));
    s = std::max(s, std::fabs(a[i]));
  }
  return m / s;
}

std::vector<arch::TokenId> Tokens(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<arch::TokenId> t(n);
  for (auto& v : t) v = static_cast<arch::TokenId>(rng() % 300);
  return t;
}

class PagedForwardTest : public testing::TestWithParam<std::pair<KvType, KvType>> {
 protected:
  // Float weights: the paged batch and the run alone differ by summation order only. In F32
  // that stays ~1e-6; a rounded type may round one K/V element the other way, which moves a
  // logit by a fraction of one rounding step (F16: 2^-11, Q8_0: 1/254 of a block's largest).
  float Tolerance() const {
    return GetParam() == std::pair{KvType::kF32, KvType::kF32} ? 1e-4f : 2e-3f;
  }
};

TEST_P(PagedForwardTest, PrefixReuseAndForkGiveTheLogitsOfARunAlone) {
  Fixture f(GetParam().first, GetParam().second);
  const float tol = Tolerance();
  const std::vector<arch::TokenId> system = Tokens(12, 1);  // three full blocks
  std::vector<arch::TokenId> a = system, b = system;
  for (arch::TokenId t : Tokens(5, 2)) a.push_back(t);
  for (arch::TokenId t : Tokens(7, 3)) b.push_back(t);

  // A runs whole and commits its full blocks to the prefix cache.
  SequenceId sa = f.kv->CreateSequence(/*tenant_salt=*/7);
  std::vector<float> la = f.Run(sa, a);
  ASSERT_TRUE(f.kv->CommitTokens(sa, a).ok());
  EXPECT_LE(MaxRel(f.Alone(a), la), tol);

  // B, same tenant, reuses the shared prompt's blocks and computes only its own tokens.
  SequenceId sb = f.kv->CreateSequence(7);
  const size_t reused = *f.kv->MatchPrefix(sb, std::span<const arch::TokenId>(b).first(b.size() - 1));
  EXPECT_EQ(reused, 12u);
  std::vector<float> lb = f.Run(sb, std::span<const arch::TokenId>(b).subspan(reused));
  EXPECT_LE(MaxRel(f.Alone(b), lb), tol);

  // A fork of A continues differently from A; neither disturbs the other (copy-on-write of
  // the shared partial last block).
  SequenceId sc = *f.kv->Fork(sa);
  const std::vector<arch::TokenId> next_a = {5}, next_c = {9};
  std::vector<float> la2 = f.Run(sa, next_a);
  std::vector<float> lc = f.Run(sc, next_c);
  std::vector<arch::TokenId> a2 = a, c = a;
  a2.push_back(5);
  c.push_back(9);
  EXPECT_LE(MaxRel(f.Alone(a2), la2), tol);
  EXPECT_LE(MaxRel(f.Alone(c), lc), tol);
  EXPECT_TRUE(f.kv->CheckInvariants().ok());
}

// Blocks move in their stored type: a sequence swapped out and back in, and one whose prompt
// comes from another's cached blocks, continue with exactly the logits of the same
// computation done in place (the same chunks, so the same float operations).
TEST_P(PagedForwardTest, SwapAndPrefixReuseGiveBitIdenticalLogits) {
  Fixture f(GetParam().first, GetParam().second);
  const std::vector<arch::TokenId> system = Tokens(12, 4), own = Tokens(6, 5), next = {17};

  // In place: the system prompt, then its own tokens, then one decode step.
  SequenceId in_place = f.kv->CreateSequence(/*tenant_salt=*/1);
  f.Run(in_place, system);
  ASSERT_TRUE(f.kv->CommitTokens(in_place, system).ok());
  const std::vector<float> own_logits = f.Run(in_place, own);
  const std::vector<float> next_logits = f.Run(in_place, next);

  // Swapped out after its own tokens and back in before the decode step.
  SequenceId swapped = f.kv->CreateSequence(/*tenant_salt=*/2);  // no prefix shared with 1
  f.Run(swapped, system);
  EXPECT_EQ(f.Run(swapped, own), own_logits);
  ASSERT_TRUE(f.kv->SwapOut(swapped).ok());
  ASSERT_TRUE(f.kv->SwapIn(swapped).ok());
  EXPECT_EQ(f.Run(swapped, next), next_logits);

  // Reusing the in-place sequence's three cached system blocks, computing only its own.
  SequenceId reused = f.kv->CreateSequence(/*tenant_salt=*/1);
  std::vector<arch::TokenId> prompt = system;
  prompt.insert(prompt.end(), own.begin(), own.end());
  ASSERT_EQ(*f.kv->MatchPrefix(reused, prompt), 12u);
  EXPECT_EQ(f.Run(reused, own), own_logits);
  EXPECT_EQ(f.Run(reused, next), next_logits);
  EXPECT_TRUE(f.kv->CheckInvariants().ok());
}

INSTANTIATE_TEST_SUITE_P(
    CacheTypes, PagedForwardTest,
    testing::Values(std::pair{KvType::kF32, KvType::kF32}, std::pair{KvType::kF16, KvType::kF16},
                    std::pair{KvType::kQ8_0, KvType::kQ8_0}, std::pair{KvType::kF16, KvType::kQ8_0}),
    [](const auto& info) {
      return std::string(cpu::KvTypeName(info.param.first)) + "_" +
             std::string(cpu::KvTypeName(info.param.second));
    });

}  // namespace
}  // namespace llmasos::kernel
