// KvMemory + arch::BatchForward together: sequences whose K/V live in the paged pool, one
// reusing another's prompt through the prefix cache and one forked copy-on-write, produce the
// logits each gives alone in a contiguous cache (arch::Context).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernel/kv_layout.h"
#include "model/arch/llama_context.h"
#include "model/arch/tiny_model.h"

namespace llmasos::kernel {
namespace {

struct Fixture {
  std::vector<uint8_t> bytes;
  std::unique_ptr<arch::Model> model;
  ThreadPool pool{2};
  std::unique_ptr<KvMemory> kv;
  std::unique_ptr<arch::BatchForward> batch;

  Fixture() {
    arch::TinyModelSpec spec;
    spec.type = cpu::TensorType::kF32;  // float weights: batched and alone agree to rounding
    arch::LoadedTinyModel loaded = *arch::LoadTinyModel(spec);
    bytes = std::move(loaded.bytes);  // the model reads from this buffer; moving keeps it
    model = std::move(loaded.model);
    const arch::ModelConfig& c = model->config();
    KvMemoryOptions o;
    o.num_layers = c.num_layers;
    o.kv_dim = c.kv_dim();
    o.block_tokens = 4;
    o.budget_bytes = 64 * c.num_layers * 2 * 4 * c.kv_dim() * sizeof(float);  // 64 blocks
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

TEST(PagedForwardTest, PrefixReuseAndForkGiveTheLogitsOfARunAlone) {
  Fixture f;
  const std::vector<arch::TokenId> system = Tokens(12, 1);  // three full blocks
  std::vector<arch::TokenId> a = system, b = system;
  for (arch::TokenId t : Tokens(5, 2)) a.push_back(t);
  for (arch::TokenId t : Tokens(7, 3)) b.push_back(t);

  // A runs whole and commits its full blocks to the prefix cache.
  SequenceId sa = f.kv->CreateSequence(/*tenant_salt=*/7);
  std::vector<float> la = f.Run(sa, a);
  ASSERT_TRUE(f.kv->CommitTokens(sa, a).ok());
  EXPECT_LE(MaxRel(f.Alone(a), la), 1e-4f);

  // B, same tenant, reuses the shared prompt's blocks and computes only its own tokens.
  SequenceId sb = f.kv->CreateSequence(7);
  const size_t reused = *f.kv->MatchPrefix(sb, std::span<const arch::TokenId>(b).first(b.size() - 1));
  EXPECT_EQ(reused, 12u);
  std::vector<float> lb = f.Run(sb, std::span<const arch::TokenId>(b).subspan(reused));
  EXPECT_LE(MaxRel(f.Alone(b), lb), 1e-4f);

  // A fork of A continues differently from A; neither disturbs the other (copy-on-write of
  // the shared partial last block).
  SequenceId sc = *f.kv->Fork(sa);
  const std::vector<arch::TokenId> next_a = {5}, next_c = {9};
  std::vector<float> la2 = f.Run(sa, next_a);
  std::vector<float> lc = f.Run(sc, next_c);
  std::vector<arch::TokenId> a2 = a, c = a;
  a2.push_back(5);
  c.push_back(9);
  EXPECT_LE(MaxRel(f.Alone(a2), la2), 1e-4f);
  EXPECT_LE(MaxRel(f.Alone(c), lc), 1e-4f);
  EXPECT_TRUE(f.kv->CheckInvariants().ok());
}

}  // namespace
}  // namespace llmasos::kernel
