// Model references that name a LoRA adapter ("base+adapter[:scale]"), and the manager's
// per-instance adapter cache over real tiny models and adapter files in a registry.
#include "services/manager/adapter_cache.h"

#include <gtest/gtest.h>

#include <random>

#include "model/train/adapter.h"
#include "services/manager/fake_loader_test_util.h"

namespace llmasos::manager {
namespace {

TEST(ParseAdapterSpecTest, SplitsBaseAdapterAndScale) {
  auto s = ParseAdapterSpec("smollm2-135m-instruct:q4_1+facts-lora");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->base, "smollm2-135m-instruct:q4_1");
  EXPECT_EQ(s->adapter, "facts-lora");
  EXPECT_EQ(s->scale, 1.0f);
  s = ParseAdapterSpec("base@1.2.0+facts:v2:0.5");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->base, "base@1.2.0");
  EXPECT_EQ(s->adapter, "facts:v2");
  EXPECT_EQ(s->scale, 0.5f);
  s = ParseAdapterSpec("base+facts:stable");  // a tag, not a scale
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->adapter, "facts:stable");
  EXPECT_EQ(s->scale, 1.0f);
  s = ParseAdapterSpec("plain:q4_1");  // no adapter
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->base, "plain:q4_1");
  EXPECT_TRUE(s->adapter.empty());
  EXPECT_EQ(ParseAdapterSpec("base+facts:inf").status().code(), StatusCode::kInvalidArgument);
}

// An adapter file on the default tiny model's shape (or `spec`'s), B non-zero.
std::vector<uint8_t> AdapterFile(uint32_t seed, arch::TinyModelSpec spec = {}) {
  spec.type = cpu::TensorType::kF32;
  auto tiny = arch::LoadTinyModel(spec);
  CHECK(tiny.ok());
  train::LoraConfig config;
  config.rank = 2;
  CHECK(train::ParseLoraTargets("q,v", &config).ok());
  train::LoraLayout layout(config, tiny->model->config());
  std::vector<float> params(layout.num_params());
  std::mt19937 rng(seed);
  for (float& v : params) v = std::uniform_real_distribution<float>(-0.1f, 0.1f)(rng);
  auto bytes = train::SerializeLoraAdapter(tiny->model->config(), layout, params, {"a", {}});
  CHECK(bytes.ok());
  return *std::move(bytes);
}

class ManagerAdapterTest : public testing::Test {
 protected:
  void SetUp() override {
    reg_.Add("tiny", "1.0.0", 7);
    reg_.AddFile("facts", "1.0.0", AdapterFile(1), "facts");
    reg_.AddFile("style", "1.0.0", AdapterFile(2), "style");
    arch::TinyModelSpec wide;
    wide.embd = 96;
    wide.heads = 6;
    wide.kv_heads = 3;
    reg_.AddFile("wide-lora", "1.0.0", AdapterFile(3, wide), "wide");
  }
  std::unique_ptr<ModelManager> Manager(size_t max_adapters) {
    ManagerOptions mo;
    mo.max_adapters = max_adapters;
    auto m = ModelManager::Create(reg_.get(), NewGgufLoader(), mo);
    CHECK(m.ok()) << m.status().ToString();
    return std::move(m).value();
  }
  TestRegistry reg_;
};

TEST_F(ManagerAdapterTest, LoadsAnAdapterOncePerBaseInstance) {
  auto m = Manager(4);
  auto a = m->Acquire("tiny+facts");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_NE(a->adapter(), nullptr);
  EXPECT_EQ(a->adapter()->name, "facts@1.0.0");
  EXPECT_EQ(a->manifest().name, "tiny");
  auto again = m->Acquire("tiny:latest+facts@1.0.0");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->adapter(), a->adapter());  // cached, not read again
  auto scaled = m->Acquire("tiny+facts:0.5");
  ASSERT_TRUE(scaled.ok());
  EXPECT_NE(scaled->adapter(), a->adapter());
  EXPECT_EQ(scaled->adapter()->name, "facts@1.0.0:0.5");
  EXPECT_NE(scaled->adapter()->cache_key, a->adapter()->cache_key);
  EXPECT_FLOAT_EQ(scaled->adapter()->scale, 0.5f * a->adapter()->scale);
  auto base = m->Acquire("tiny");
  ASSERT_TRUE(base.ok());
  EXPECT_EQ(base->adapter(), nullptr);

  std::vector<InstanceInfo> loaded = m->Loaded();
  ASSERT_EQ(loaded.size(), 1u);  // one base instance for all of them
  ASSERT_EQ(loaded[0].adapters.size(), 2u);
  EXPECT_EQ(loaded[0].adapters[0].name, "facts@1.0.0:0.5");  // most recently used first
  EXPECT_EQ(loaded[0].adapters[1].name, "facts@1.0.0");
  EXPECT_EQ(loaded[0].adapters[1].num_holders, 2u);  // a and again
  EXPECT_EQ(loaded[0].adapters[1].rank, 2u);
  EXPECT_EQ(loaded[0].max_adapters, 4u);
}

TEST_F(ManagerAdapterTest, ForgetsTheLeastRecentlyUsedAdapterBeyondTheLimit) {
  auto m = Manager(1);
  std::shared_ptr<const arch::LoraWeights> facts;
  {
    auto a = m->Acquire("tiny+facts", {.keep_alive = Duration(-1)});
    ASSERT_TRUE(a.ok());
    facts = a->adapter();
  }
  auto b = m->Acquire("tiny+style");
  ASSERT_TRUE(b.ok());
  std::vector<InstanceInfo> loaded = m->Loaded();
  ASSERT_EQ(loaded.size(), 1u);
  ASSERT_EQ(loaded[0].adapters.size(), 1u);
  EXPECT_EQ(loaded[0].adapters[0].name, "style@1.0.0");
  // A holder keeps the forgotten adapter usable; the cache reads it again when asked.
  EXPECT_EQ(facts->name, "facts@1.0.0");
  auto again = m->Acquire("tiny+facts");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->adapter(), facts);
}

TEST_F(ManagerAdapterTest, ErrorsNameTheAdapterAndTheBase) {
  auto m = Manager(4);
  auto unknown = m->Acquire("tiny+nope");
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("adapter 'nope'"), std::string::npos) << unknown.status().ToString();
  auto other = m->Acquire("tiny+wide-lora");
  EXPECT_EQ(other.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(other.status().message().find("wide-lora"), std::string::npos) << other.status().ToString();
  EXPECT_NE(other.status().message().find("tiny@1.0.0"), std::string::npos) << other.status().ToString();
  auto not_adapter = m->Acquire("tiny+tiny");
  EXPECT_EQ(not_adapter.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(not_adapter.status().message().find("not an adapter"), std::string::npos)
      << not_adapter.status().ToString();
  // Nothing was cached by the failures.
  std::vector<InstanceInfo> loaded = m->Loaded();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_TRUE(loaded[0].adapters.empty());
}

}  // namespace
}  // namespace llmasos::manager
