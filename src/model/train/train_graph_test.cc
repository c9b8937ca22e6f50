#include "model/train/train_graph.h"

#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "model/arch/tiny_model.h"

namespace llmasos::train {
namespace {

struct Fixture {
  arch::LoadedTinyModel tiny;
  LoraLayout layout;
  std::vector<float> params;
};

Fixture Make(const std::string& arch, cpu::TensorType type, const LoraConfig& lora) {
  arch::TinyModelSpec spec;
  spec.arch = arch;
  spec.type = type;
  spec.layers = 2;
  spec.embd = 32;
  spec.heads = 4;
  spec.kv_heads = 2;
  spec.ff = 64;
  spec.vocab = 272;
  Fixture f;
  auto tiny = arch::LoadTinyModel(spec);
  EXPECT_TRUE(tiny.ok()) << tiny.status().ToString();
  f.tiny = std::move(tiny).value();
  f.layout = LoraLayout(lora, f.tiny.model->config());
  f.params = InitLoraParams(f.layout, 7);
  // B starts at zero; give it values so every gradient path is exercised.
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.2f);
  for (const LoraSlot& s : f.layout.slots()) {
    for (size_t i = 0; i < s.out * lora.rank; ++i) f.params[s.b_offset + i] = normal(rng);
  }
  return f;
}

TrainSequence Sequence(std::vector<int32_t> tokens, size_t first_target) {
  TrainSequence s;
  s.tokens = std::move(tokens);
  s.is_target.assign(s.tokens.size(), 0);
  for (size_t i = first_target; i < s.tokens.size(); ++i) s.is_target[i] = 1;
  return s;
}

LoraConfig AllTargets(size_t rank) {
  LoraConfig c;
  c.rank = rank;
  c.alpha = 4.0f;
  c.targets.fill(true);
  return c;
}

TEST(TrainGraphTest, LoraGradientsMatchFiniteDifferences) {
  for (const char* arch : {"llama", "qwen2"}) {
    Fixture f = Make(arch, cpu::TensorType::kF32, AllTargets(2));
    ThreadPool pool(2);
    TrainGraph graph(*f.tiny.model, f.layout, pool, 32);
    TrainSequence a = Sequence({1, 40, 77, 200, 5, 9, 13}, 3);
    TrainSequence b = Sequence({100, 101, 102, 103}, 1);
    const TrainSequence* batch[] = {&a, &b};
    std::vector<float> grads(f.layout.num_params(), 0.0f);
    auto loss = graph.Run(batch, f.params.data(), grads.data(), 1.0f, 0);
    ASSERT_TRUE(loss.ok()) << loss.status().ToString();
    EXPECT_EQ(loss->num_tokens, 4u + 3u);
    // A sample of parameters from every slot, A and B.
    double max_numeric = 0.0;
    for (const LoraSlot& s : f.layout.slots()) {
      for (size_t offset : {s.a_offset, s.a_offset + 5, s.b_offset + 1, s.b_offset + 3}) {
        const float saved = f.params[offset];
        const float h = 1e-2f;
        f.params[offset] = saved + h;
        const double up = graph.Run(batch, f.params.data(), nullptr, 1.0f, 0)->sum;
        f.params[offset] = saved - h;
        const double down = graph.Run(batch, f.params.data(), nullptr, 1.0f, 0)->sum;
        f.params[offset] = saved;
        const double numeric = (up - down) / (2 * h);
        max_numeric = std::max(max_numeric, std::fabs(numeric));
        EXPECT_NEAR(grads[offset], numeric, 2e-3 + 2e-2 * std::fabs(numeric))
            << arch << " layer " << s.layer << " " << LoraTargetName(s.target) << " offset " << offset;
      }
    }
    EXPECT_GT(max_numeric, 0.05) << "the sample's gradients are too small to test anything";
  }
}

TEST(TrainGraphTest, PackingSequencesTogetherChangesNothing) {
  Fixture f = Make("llama", cpu::TensorType::kQ8_0, AllTargets(4));
  ThreadPool pool(2);
  TrainGraph graph(*f.tiny.model, f.layout, pool, 64);
  TrainSequence a = Sequence({1, 40, 77, 200, 5, 9, 13}, 2);
  TrainSequence b = Sequence({100, 101, 102, 103, 104}, 1);
  std::vector<float> together(f.layout.num_params(), 0.0f), apart(f.layout.num_params(), 0.0f);
  const TrainSequence* both[] = {&a, &b};
  const TrainSequence* only_a[] = {&a};
  const TrainSequence* only_b[] = {&b};
  const double l = graph.Run(both, f.params.data(), together.data(), 1.0f, 0)->sum;
  const double la = graph.Run(only_a, f.params.data(), apart.data(), 1.0f, 0)->sum;
  const double lb = graph.Run(only_b, f.params.data(), apart.data(), 1.0f, 0)->sum;
  EXPECT_NEAR(l, la + lb, 1e-4 * l);
  for (size_t i = 0; i < together.size(); ++i) {
    ASSERT_NEAR(together[i], apart[i], 1e-4f + 1e-3f * std::fabs(apart[i])) << i;
  }
}

TEST(TrainGraphTest, ResultsDoNotDependOnTheThreadCountAndDropoutIsKeyed) {
  LoraConfig lora = AllTargets(4);
  lora.dropout = 0.25f;
  Fixture f = Make("llama", cpu::TensorType::kQ4_1, lora);
  TrainSequence a = Sequence({1, 40, 77, 200, 5, 9, 13, 70, 71}, 2);
  const TrainSequence* batch[] = {&a};
  auto run = [&](size_t threads, uint64_t key) {
    ThreadPool pool(threads);
    TrainGraph graph(*f.tiny.model, f.layout, pool, 16);
    std::vector<float> grads(f.layout.num_params(), 0.0f);
    EXPECT_TRUE(graph.Run(batch, f.params.data(), grads.data(), 0.5f, key).ok());
    return grads;
  };
  const std::vector<float> one = run(1, 9), three = run(3, 9), other_key = run(1, 10);
  EXPECT_EQ(one, three);
  EXPECT_NE(one, other_key);
}

TEST(TrainGraphTest, RejectsBadBatches) {
  Fixture f = Make("llama", cpu::TensorType::kQ8_0, AllTargets(2));
  ThreadPool pool(1);
  TrainGraph graph(*f.tiny.model, f.layout, pool, 8);
  TrainSequence long_seq = Sequence({1, 2, 3, 4, 5, 6, 7, 8, 9}, 1);
  TrainSequence bad_token = Sequence({1, 5000}, 1);
  const TrainSequence* too_long[] = {&long_seq};
  const TrainSequence* bad[] = {&bad_token};
  EXPECT_EQ(graph.Run(too_long, f.params.data(), nullptr, 1.0f, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(graph.Run(bad, f.params.data(), nullptr, 1.0f, 0).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(graph.Run({}, f.params.data(), nullptr, 1.0f, 0).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace llmasos::train
