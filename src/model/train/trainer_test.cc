#include "model/train/trainer.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "model/arch/llama_context.h"
#include "model/arch/tiny_model.h"
#include "model/train/backward_ops.h"
#include "model/gguf/gguf.h"
#include "model/train/adapter.h"
#include "model/train/dataset.h"

namespace llmasos::train {
namespace {

// A stand-in for the model's tokenizer: ChatML rendered as text, one token per byte, so the
// tiny model's 256 byte tokens cover it.
StatusOr<std::vector<int32_t>> ByteEncode(std::span<const chat::Message> messages, bool gen) {
  ASSIGN_OR_RETURN(chat::ChatTemplate tmpl, chat::ChatTemplate::FromName("chatml"));
  ASSIGN_OR_RETURN(std::string text, tmpl.Render(messages, gen));
  std::vector<int32_t> ids;
  for (unsigned char c : text) ids.push_back(c);
  return ids;
}

TEST(OptimizerTest, WarmupThenCosineSchedule) {
  AdamWOptions o;
  o.lr = 1.0f;
  o.warmup_steps = 4;
  o.total_steps = 14;
  EXPECT_FLOAT_EQ(LearningRate(o, 0), 0.25f);
  EXPECT_FLOAT_EQ(LearningRate(o, 3), 1.0f);
  EXPECT_FLOAT_EQ(LearningRate(o, 4), 1.0f);
  EXPECT_NEAR(LearningRate(o, 9), 0.5f, 1e-6);   // half way through the decay
  EXPECT_NEAR(LearningRate(o, 14), 0.0f, 1e-6);
}

TEST(OptimizerTest, ClipsToTheGlobalNorm) {
  std::vector<float> g = {3.0f, 4.0f};
  EXPECT_DOUBLE_EQ(ClipGradNorm(g, 1.0f), 5.0);
  EXPECT_NEAR(std::hypot(g[0], g[1]), 1.0, 1e-5);
  std::vector<float> small = {0.3f, 0.4f};
  ClipGradNorm(small, 1.0f);
  EXPECT_FLOAT_EQ(small[0], 0.3f);
}

TEST(OptimizerTest, AdamWFirstStepMovesByTheLearningRate) {
  AdamWOptions o;
  o.lr = 0.1f;
  o.weight_decay = 0.5f;
  AdamW adam(o, 2);
  std::vector<float> p = {1.0f, -1.0f}, g = {2.0f, -0.001f};
  adam.Step(0, g, p);
  // m_hat / sqrt(v_hat) = sign(g) on the first step; decay adds lr * wd * p.
  EXPECT_NEAR(p[0], 1.0f - 0.1f * (1.0f + 0.5f), 1e-5);
  EXPECT_NEAR(p[1], -1.0f + 0.1f * (1.0f + 0.5f), 1e-4);
}

TEST(DatasetTest, TargetsAreTheAssistantTurnsOnly) {
  const std::string data =
      R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})"
      "\n\n"
      R"({"prompt": "2+2", "completion": "4"})"
      "\n";
  DataStats stats;
  auto seqs = ParseJsonl(data, ByteEncode, 512, &stats);
  ASSERT_TRUE(seqs.ok()) << seqs.status().ToString();
  ASSERT_EQ(seqs->size(), 2u);
  EXPECT_EQ(stats.num_lines, 2u);
  EXPECT_EQ((*seqs)[1].source_line, 3u);
  for (const TrainSequence& s : *seqs) {
    std::string targets;
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      if (s.is_target[i]) targets += static_cast<char>(s.tokens[i]);
    }
    // The reply and the end-of-turn marker the template writes after it.
    EXPECT_TRUE(targets == "yo<|im_end|>\n" || targets == "4<|im_end|>\n") << targets;
  }
}

TEST(DatasetTest, BadLinesNameTheLineAndTheField) {
  auto err = [](const std::string& data) {
    auto r = ParseJsonl(data, ByteEncode, 512, nullptr);
    EXPECT_FALSE(r.ok());
    return r.status().message();
  };
  const std::string good = R"({"prompt": "a", "completion": "b"})";
  EXPECT_EQ(err(good + "\n{oops\n"), "data line 2: not valid JSON");
  EXPECT_EQ(err(good + "\n" + R"({"prompt": "a"})"), "data line 2: missing field 'completion'");
  EXPECT_EQ(err(R"({"messages": [{"role": "user", "content": 5}]})"),
            "data line 1: field 'messages[0].content' must be a string");
  EXPECT_EQ(err(R"({"messages": [{"role": "user", "content": "x"}]})"),
            "data line 1: the conversation has no assistant turn to learn from");
  EXPECT_EQ(err(R"({"text": "x"})"),
            "data line 1: needs a 'messages' array or 'prompt' and 'completion' strings");
  EXPECT_EQ(err("[1]"), "data line 1: must be a JSON object");
  EXPECT_NE(err(R"({"prompt": ")" + std::string(600, 'a') + R"(", "completion": "b"})").find("raise --max-len"),
            std::string::npos);
}

TEST(DatasetTest, PacksWithinTheLimitAndSplitsDeterministically) {
  std::vector<TrainSequence> seqs(10);
  for (size_t i = 0; i < seqs.size(); ++i) {
    seqs[i].tokens.assign(3 + i, 1);
    seqs[i].is_target.assign(3 + i, 1);
    seqs[i].source_line = i + 1;
  }
  const auto rows = PackRows(seqs, 16, 5);
  std::vector<int> seen(seqs.size(), 0);
  for (const auto& row : rows) {
    size_t len = 0;
    for (size_t idx : row) len += seqs[idx].tokens.size(), ++seen[idx];
    EXPECT_LE(len, 16u);
  }
  for (int s : seen) EXPECT_EQ(s, 1);
  EXPECT_EQ(rows, PackRows(seqs, 16, 5));
  std::vector<TrainSequence> train, eval;
  SplitHeldOut(seqs, 0.2f, 3, &train, &eval);
  EXPECT_EQ(train.size(), 8u);
  EXPECT_EQ(eval.size(), 2u);
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    arch::TinyModelSpec spec;
    spec.embd = 32;
    spec.ff = 64;
    spec.vocab = 272;
    auto tiny = arch::LoadTinyModel(spec);
    ASSERT_TRUE(tiny.ok());
    tiny_ = std::move(tiny).value();
    std::string data;
    for (int i = 0; i < 12; ++i) {
      data += R"({"prompt": "q)" + std::to_string(i) + R"(", "completion": "the answer is )" +
              std::to_string(i % 3) + "\"}\n";
    }
    auto seqs = ParseJsonl(data, ByteEncode, 64, nullptr);
    ASSERT_TRUE(seqs.ok());
    SplitHeldOut(std::move(seqs).value(), 0.25f, 1, &train_, &eval_);
    options_.lora.rank = 4;
    options_.lora.alpha = 8;
    options_.lora.dropout = 0.1f;
    options_.lora.targets.fill(true);
    options_.adam.lr = 1e-2f;
    options_.adam.warmup_steps = 2;
    options_.steps = 6;
    options_.batch = 2;
    options_.max_len = 64;
    options_.seed = 11;
    options_.fingerprint = "test";
  }

  StatusOr<TrainResult> Train(const TrainOptions& o, size_t threads, size_t stop_after = 0) {
    ThreadPool pool(threads);
    ASSIGN_OR_RETURN(auto trainer, Trainer::Create(*tiny_.model, pool, train_, eval_, o));
    return trainer->Run([&](const StepReport& r) { return stop_after == 0 || r.step < stop_after; });
  }

  std::string TempPath(const std::string& name) {
    return (std::filesystem::temp_directory_path() /
            ("llmasos_trainer_test_" + std::to_string(getpid()) + "_" + name)).string();
  }

  arch::LoadedTinyModel tiny_;
  std::vector<TrainSequence> train_, eval_;
  TrainOptions options_;
};

TEST_F(TrainerTest, TheSameSeedGivesTheSameRunAndTheLossFalls) {
  auto a = Train(options_, 2);
  auto b = Train(options_, 3);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(a->completed);
  EXPECT_EQ(a->params, b->params);
  EXPECT_EQ(a->final_loss, b->final_loss);
  EXPECT_LT(a->final_eval_loss, a->initial_eval_loss);
  TrainOptions other = options_;
  other.seed = 12;
  auto c = Train(other, 2);
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->params, c->params);
}

TEST_F(TrainerTest, ResumingFromACheckpointEqualsTheUninterruptedRun) {
  const std::string path = TempPath("resume.ckpt");
  std::remove(path.c_str());
  auto whole = Train(options_, 2);
  ASSERT_TRUE(whole.ok());
  TrainOptions o = options_;
  o.checkpoint_path = path;
  o.checkpoint_every = 2;
  auto first = Train(o, 2, /*stop_after=*/3);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_FALSE(first->completed);
  auto rest = Train(o, 1);
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  EXPECT_EQ(rest->resumed_from_step, 3u);
  EXPECT_EQ(rest->params, whole->params);
  EXPECT_EQ(rest->final_loss, whole->final_loss);
  EXPECT_EQ(rest->first_loss, whole->first_loss);
  // A checkpoint of another run is refused, not resumed.
  o.fingerprint = "other";
  EXPECT_EQ(Train(o, 1).status().code(), StatusCode::kFailedPrecondition);
  std::remove(path.c_str());
}

TEST_F(TrainerTest, RefusesToStartAboveTheMemoryBound) {
  TrainOptions o = options_;
  o.max_memory_bytes = 1 << 10;
  auto r = Train(o, 1);
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
}

TEST_F(TrainerTest, RefusesArchitectureFeaturesTheTrainingPassLacks) {
  EXPECT_TRUE(ValidateTrainOptions(options_, tiny_.model->config()).ok());
  const std::vector<std::pair<std::string, std::function<void(arch::ModelConfig&)>>> features = {
      {"Q/K RMSNorm", [](arch::ModelConfig& c) { c.qk_norm = true; }},
      {"post-attention", [](arch::ModelConfig& c) { c.post_norms = true; }},
      {"scaled token embeddings", [](arch::ModelConfig& c) { c.embd_scale = true; }},
      {"GELU", [](arch::ModelConfig& c) { c.ffn_activation = arch::FfnActivation::kGeluTanh; }},
      {"soft-capping", [](arch::ModelConfig& c) { c.final_softcap = 30.0f; }},
      {"sliding-window", [](arch::ModelConfig& c) { c.sliding_window = 4;
                           c.swa_pattern = 2; }},
      {"scaled RoPE", [](arch::ModelConfig& c) { c.rope_linear_factor = 2.0f; }},
      {"LongRoPE", [](arch::ModelConfig& c) { c.longrope = true; }},
      {"LongRoPE", [](arch::ModelConfig& c) { c.rope_attn_factor = 1.2f; }},
      {"fused QKV", [](arch::ModelConfig& c) { c.architecture = "phi3"; }},
      {"query scale", [](arch::ModelConfig& c) { c.query_scale = 0.5f; }},
  };
  for (const auto& [name, apply] : features) {
    arch::ModelConfig c = tiny_.model->config();
    apply(c);
    const Status s = ValidateTrainOptions(options_, c);
    EXPECT_EQ(s.code(), StatusCode::kUnimplemented) << name;
    EXPECT_NE(s.message().find(name), std::string::npos) << s.message();
  }
  // The default query scale, written out, is the plain model.
  arch::ModelConfig c = tiny_.model->config();
  c.query_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  EXPECT_TRUE(ValidateTrainOptions(options_, c).ok());
}

TEST_F(TrainerTest, AdapterFileRoundTrips) {
  auto r = Train(options_, 2);
  ASSERT_TRUE(r.ok());
  LoraLayout layout(options_.lora, tiny_.model->config());
  auto bytes = SerializeLoraAdapter(tiny_.model->config(), layout, r->params, {"t", {{"base", "x"}}});
  ASSERT_TRUE(bytes.ok());
  auto file = gguf::GgufFile::Parse(*bytes);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(*(*file)->GetString("general.type"), "adapter");
  EXPECT_EQ(*(*file)->GetString("adapter.type"), "lora");
  const gguf::TensorInfo* a = (*file)->FindTensor("blk.1.ffn_down.weight.lora_a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dims, (std::vector<uint64_t>{64, 4}));  // [in = ffn, rank]
  auto loaded = ReadLoraAdapter(**file, tiny_.model->config());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->params, r->params);
  EXPECT_EQ(loaded->layout.config().rank, 4u);
  EXPECT_FLOAT_EQ(loaded->layout.config().alpha, 8.0f);
  arch::ModelConfig other = tiny_.model->config();
  other.architecture = "qwen2";
  EXPECT_EQ(ReadLoraAdapter(**file, other).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(TrainerTest, AMergedAdapterGivesTheInferenceForwardTheTrainedLoss) {
  auto r = Train(options_, 2);
  ASSERT_TRUE(r.ok());
  LoraLayout layout(options_.lora, tiny_.model->config());
  ThreadPool pool(2);
  TrainOptions no_dropout = options_;
  no_dropout.lora.dropout = 0.0f;
  LoraLayout eval_layout(no_dropout.lora, tiny_.model->config());
  TrainGraph graph(*tiny_.model, eval_layout, pool, 64);
  const TrainSequence& seq = eval_.at(0);
  const TrainSequence* batch[] = {&seq};
  auto trained = graph.Run(batch, r->params.data(), nullptr, 1.0f, 0);
  ASSERT_TRUE(trained.ok());

  // The same loss from the inference forward of the base model with the adapter merged in.
  auto merged = arch::LoadTinyModel(arch::TinyModelSpec{.embd = 32, .ff = 64, .vocab = 272});
  ASSERT_TRUE(merged.ok());
  MergeLoraAdapter({layout, r->params}, 1.0f, merged->model.get());
  arch::ContextOptions copt;
  copt.float_activations = true;
  copt.cache_type_k = copt.cache_type_v = cpu::KvType::kF32;  // the training graph's K/V are float32
  auto ctx = arch::Context::Create(*merged->model, pool, copt);
  ASSERT_TRUE(ctx.ok());
  const size_t vocab = merged->model->config().vocab_size;
  std::vector<float> logits(seq.tokens.size() * vocab);
  ASSERT_TRUE((*ctx)->Forward(seq.tokens, true, logits.data()).ok());
  double sum = 0.0;
  for (size_t i = 0; i + 1 < seq.tokens.size(); ++i) {
    if (!seq.is_target[i + 1]) continue;
    float* row = &logits[i * vocab];
    sum += CrossEntropyForwardBackward(row, vocab, seq.tokens[i + 1], 1.0f);
  }
  EXPECT_NEAR(sum, trained->sum, 1e-4 * trained->sum);
  // And differs from the base model's, or the test would prove nothing.
  auto base_loss = graph.Run(batch, std::vector<float>(layout.num_params(), 0.0f).data(), nullptr, 1.0f, 0);
  EXPECT_GT(std::fabs(base_loss->sum - trained->sum), 1e-3 * trained->sum);
}

}  // namespace
}  // namespace llmasos::train
