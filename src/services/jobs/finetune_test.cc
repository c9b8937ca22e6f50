#include "services/jobs/finetune.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/arch/tiny_model.h"
#include "services/registry/test_home.h"

namespace llmasos::jobs {
namespace {

using nlohmann::json;
using registry::TempHome;

TEST(FinetuneSpecTest, ReadsEveryFieldByTheFlagsNames) {
  json body = {{"kind", "finetune"}, {"model", "tiny"},     {"data", "/d.jsonl"}, {"name", "t"},
               {"rank", 4},          {"alpha", 8.0},        {"lr", 0.01},         {"steps", 6},
               {"batch", 2},         {"max_len", 64},       {"targets", {"q", "k", "v"}},
               {"checkpoint_every", 2}, {"seed", 9},        {"eval_split", 0.25}, {"threads", 1}};
  auto spec = FinetuneSpecFromJson(body);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->model, "tiny");
  EXPECT_EQ(spec->data, "/d.jsonl");
  EXPECT_EQ(spec->name, "t");
  EXPECT_EQ(spec->train.lora.rank, 4u);
  EXPECT_FLOAT_EQ(spec->train.lora.alpha, 8.0f);
  EXPECT_FLOAT_EQ(spec->train.adam.lr, 0.01f);
  EXPECT_EQ(spec->train.steps, 6u);
  EXPECT_EQ(spec->train.batch, 2u);
  EXPECT_EQ(spec->train.max_len, 64u);
  EXPECT_EQ(spec->targets, "q,k,v");
  EXPECT_TRUE(spec->train.lora.has(train::LoraTarget::kK));
  EXPECT_EQ(spec->train.checkpoint_every, 2u);
  EXPECT_EQ(spec->train.seed, 9u);
  EXPECT_FLOAT_EQ(spec->eval_split, 0.25f);
  EXPECT_EQ(spec->threads, 1u);
}

TEST(FinetuneSpecTest, BadFieldsAreNamed) {
  const json base = {{"model", "tiny"}, {"data", "/d.jsonl"}};
  struct Case {
    json patch;
    std::string field;
  };
  const Case cases[] = {
      {{{"model", nullptr}}, "model"},      {{{"data", ""}}, "data"},
      {{{"data", 3}}, "data"},              {{{"rank", 0}}, "rank"},
      {{{"rank", 2.5}}, "rank"},            {{{"rank", "8"}}, "rank"},
      {{{"lr", -1}}, "lr"},                 {{{"lr", 0}}, "lr"},
      {{{"dropout", 1.0}}, "dropout"},      {{{"steps", 0}}, "steps"},
      {{{"batch", 100000}}, "batch"},       {{{"targets", {"q", "x"}}}, "targets"},
      {{{"targets", 5}}, "targets"},        {{{"eval_split", 1.0}}, "eval_split"},
      {{{"seed", -1}}, "seed"},             {{{"priority", 3}}, "priority"},
      {{{"epochs", 1e300}}, "epochs"},
  };
  for (const Case& c : cases) {
    json body = base;
    body.merge_patch(c.patch);
    if (c.patch.begin().value().is_null()) body.erase(c.patch.begin().key());
    std::string field;
    auto spec = FinetuneSpecFromJson(body, &field);
    ASSERT_FALSE(spec.ok()) << body.dump();
    EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(field, c.field) << body.dump() << " -> " << spec.status().message();
    EXPECT_TRUE(spec.status().message().starts_with(c.field + ":")) << spec.status().message();
  }
  EXPECT_FALSE(FinetuneSpecFromJson(json::array()).ok());
}

// A run stopped by its step hook keeps a checkpoint; run again, it resumes there, completes,
// writes the adapter and removes the checkpoint.
TEST(RunFinetuneTest, AStoppedRunResumesFromItsCheckpointAndWritesTheAdapter) {
  TempHome home;
  auto bytes = arch::MakeTinyModel(arch::TinyModelSpec{.seed = 3});
  ASSERT_TRUE(bytes.ok());
  const std::string model = home.path() + "/tiny.gguf";
  registry::WriteBytes(model, *bytes);
  const std::string data = home.path() + "/d.jsonl";
  {
    std::ofstream out(data);
    for (int i = 0; i < 8; ++i) {
      out << json{{"prompt", "code of " + std::to_string(i) + "?"}, {"completion", "code " + std::to_string(i * 7)}}
                 .dump()
          << "\n";
    }
  }
  FinetuneSpec spec;
  spec.model = model;
  spec.data = data;
  spec.out = home.path() + "/adapter.gguf";
  spec.threads = 1;
  spec.train.steps = 4;
  spec.train.max_len = 64;
  spec.train.lora.rank = 2;
  spec.train.adam.lr = 1e-2f;
  spec.train.checkpoint_every = 1;
  std::vector<std::string> lines;
  FinetuneHooks hooks;
  hooks.log = [&](const std::string& l) { lines.push_back(l); };
  hooks.on_step = [&](const train::StepReport& r) {
    lines.push_back(FormatStepReport(r));
    return r.step < 2;
  };
  auto first = RunFinetune(spec, hooks);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_FALSE(first->result.completed);
  EXPECT_EQ(first->result.steps, 2u);
  EXPECT_EQ(first->total_steps, 4u);
  EXPECT_TRUE(std::filesystem::exists(spec.out + ".ckpt"));
  EXPECT_FALSE(std::filesystem::exists(spec.out));
  ASSERT_GE(lines.size(), 3u);
  EXPECT_TRUE(lines[0].starts_with("finetune: ")) << lines[0];
  EXPECT_TRUE(lines[1].starts_with("step 1/4 ")) << lines[1];

  hooks.on_step = [](const train::StepReport&) { return true; };
  auto second = RunFinetune(spec, hooks);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_TRUE(second->result.completed);
  EXPECT_EQ(second->result.resumed_from_step, 2u);
  EXPECT_EQ(second->adapter_path, spec.out);
  EXPECT_TRUE(std::filesystem::exists(spec.out));
  EXPECT_FALSE(std::filesystem::exists(spec.out + ".ckpt"));
  EXPECT_EQ(second->adapter_name, "tiny-lora");
  EXPECT_EQ(second->lineage.base_digest, second->base.digest);
  EXPECT_NE(second->lineage.parameters.find("\"final_loss\""), std::string::npos);
}

TEST(RunFinetuneTest, AMissingBaseOrDataIsAnError) {
  TempHome home;
  FinetuneSpec spec;
  spec.model = home.path() + "/none.gguf";
  spec.data = home.path() + "/none.jsonl";
  auto run = RunFinetune(spec, {});
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.status().message().find("none.gguf"), std::string::npos) << run.status().ToString();
}

}  // namespace
}  // namespace llmasos::jobs
