// The real loader over a tiny generated model: a loaded instance owns a running engine (its
// own thread pool, the context and KV pool the options ask for) that generates, its resident
// bytes count the KV pool, and unloading it in the background stops the engine.
#include "services/manager/loader.h"

#include <gtest/gtest.h>

#include "services/manager/fake_loader_test_util.h"
#include "services/manager/model_manager.h"

namespace llmasos::manager {
namespace {

TEST(GgufLoaderTest, LoadedInstanceOwnsARunningEngine) {
  TestRegistry reg;
  reg.Add("tiny", "1.0.0", 7);
  InstanceEngineOptions e;
  e.num_threads = 1;
  e.context_tokens = 64;
  e.parallel = 2;
  GgufLoaderOptions lo;
  lo.engine = e;
  ManagerOptions mo;
  mo.unload_in_background = true;
  auto m = ModelManager::Create(reg.get(), NewGgufLoader(lo), mo);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  {
    auto lease = (*m)->Acquire("tiny", {.keep_alive = Duration::zero()});
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    const LoadedModel& loaded = lease->model();
    ASSERT_NE(loaded.engine, nullptr);
    ASSERT_NE(loaded.pool, nullptr);
    EXPECT_EQ(loaded.pool->num_threads(), 1u);
    EXPECT_EQ(loaded.context_tokens, 64u);
    EXPECT_GT(loaded.kv_bytes, 0u);
    EXPECT_EQ(loaded.resident_bytes, loaded.model->file().size_bytes() + loaded.kv_bytes);
    EXPECT_TRUE(loaded.chat_template.has_value()) << loaded.chat_template_error.ToString();

    kernel::ProcessSpec spec;
    spec.prompt = {1, 2, 3};
    spec.limits.max_tokens = 5;
    spec.sampling.temperature = 0;
    auto sub = loaded.engine->Submit(spec);
    ASSERT_TRUE(sub.ok()) << sub.status().ToString();
    int tokens = 0;
    for (;;) {
      auto ev = sub->channel->Next(std::chrono::seconds(30));
      ASSERT_TRUE(ev.ok()) << ev.status().ToString();
      if (ev->kind == kernel::StreamEvent::Kind::kEnd) {
        EXPECT_EQ(ev->state, kernel::ProcessState::kFinished);
        break;
      }
      ++tokens;
    }
    EXPECT_GE(tokens, 1);
    EXPECT_LE(tokens, 5);
  }
  // keep_alive 0: the lease's end unloaded it (the engine stops on the manager's thread).
  EXPECT_TRUE((*m)->Loaded().empty());
  EXPECT_EQ((*m)->used_bytes(), 0u);
}

TEST(GgufLoaderTest, EstimateCountsAFixedKvBudget) {
  TestRegistry reg;
  registry::Manifest manifest = reg.Add("tiny", "1.0.0", 7);
  InstanceEngineOptions e;
  e.kv_budget_bytes = 1 << 20;
  GgufLoaderOptions lo;
  lo.engine = e;
  auto resolved = reg->Resolve("tiny");
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(NewGgufLoader(lo)->EstimateBytes(*resolved), manifest.size_bytes + (1u << 20));
}

TEST(LoadModelFileTest, NamesTheModelWhenTheFileIsNotAModel) {
  auto files = LoadModelFile("/nonexistent/x.gguf", "my-model");
  ASSERT_FALSE(files.ok());
  EXPECT_NE(files.status().message().find("my-model"), std::string::npos) << files.status().ToString();
}

}  // namespace
}  // namespace llmasos::manager
