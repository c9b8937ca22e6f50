// What the daemon asks of the engine, on a tiny model: why processes end (an enum), deadlines,
// limits on stop strings, log-probabilities with each token, logit_bias,
// unseeded requests that record the seed they ran with.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "kernel/engine.h"
#include "kernel/tiny_engine_test_util.h"

namespace llmasos::kernel {
namespace {

using std::chrono::milliseconds;

class EngineApiTest : public TinyEngineTest {
 protected:
  std::unique_ptr<Engine> NewEngine(EngineOptions o = {}) {
    o.kv_block_tokens = 4;
    auto e = Engine::Create(*model_, *tokenizer_, pool_, o, &clock_);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? *std::move(e) : nullptr;
  }

  struct Run {
    std::map<ProcessId, EndedProcess> ended;
    std::map<ProcessId, std::vector<TokenOutput>> outputs;
  };
  Run RunAll(Engine& e) {
    Run run;
    e.SetOutputCallback([&](ProcessId id, const TokenOutput& out) { run.outputs[id].push_back(out); });
    for (int guard = 0; e.HasWork() && guard < 10000; ++guard) {
      auto r = e.Step();
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) break;
      for (auto& p : e.TakeEnded()) run.ended[p.process->id()] = std::move(p);
    }
    for (auto& p : e.TakeEnded()) run.ended[p.process->id()] = std::move(p);
    e.SetOutputCallback(nullptr);
    return run;
  }

  SimulatedClock clock_;
};

TEST_F(EngineApiTest, ADeadlineEndsAProcessWithDeadline) {
  auto e = NewEngine();
  ProcessSpec spec = Greedy(Prompt(10, 1), 200);
  spec.limits.deadline = clock_.Now() + milliseconds(5);
  const ProcessId id = *e->Submit(std::move(spec));
  ASSERT_TRUE(e->Step().ok());
  clock_.Advance(milliseconds(10));
  Run run = RunAll(*e);
  const Process& p = *run.ended.at(id).process;
  EXPECT_EQ(p.end_reason(), EndReason::kDeadline);
  EXPECT_EQ(p.state(), ProcessState::kFailed);
  EXPECT_EQ(e->kv().Stats().used_blocks, 0u);
}

TEST_F(EngineApiTest, TooManyOrTooLongStopStringsAreRefused) {
  auto e = NewEngine();
  ProcessSpec spec = Greedy(Prompt(4, 1), 4);
  spec.stop.assign(kMaxStopStrings + 1, "x");
  EXPECT_EQ(e->Submit(spec).status().code(), StatusCode::kInvalidArgument);
  spec.stop = {std::string(kMaxStopStringBytes + 1, 'x')};
  EXPECT_EQ(e->Submit(spec).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EngineApiTest, LogprobsComeWithEveryTokenAndGreedyPicksTheTop) {
  auto e = NewEngine();
  ProcessSpec spec = Greedy(Prompt(8, 2), 6);
  spec.sampling.logprobs = true;
  spec.sampling.top_logprobs = 5;
  const ProcessId id = *e->Submit(std::move(spec));
  ProcessSpec plain = Greedy(Prompt(8, 3), 6);
  const ProcessId quiet = *e->Submit(std::move(plain));
  Run run = RunAll(*e);
  ASSERT_EQ(run.outputs[id].size(), 6u);
  for (const TokenOutput& o : run.outputs[id]) {
    ASSERT_TRUE(o.logprobs.has_value());
    EXPECT_EQ(o.logprobs->chosen.token, o.token);
    ASSERT_EQ(o.logprobs->top.size(), 5u);
    EXPECT_EQ(o.logprobs->top[0].token, o.token);  // greedy: the most likely token
    EXPECT_FLOAT_EQ(o.logprobs->top[0].logprob, o.logprobs->chosen.logprob);
    EXPECT_LE(o.logprobs->chosen.logprob, 0.0f);
    for (size_t k = 1; k < 5; ++k) EXPECT_LE(o.logprobs->top[k].logprob, o.logprobs->top[k - 1].logprob);
  }
  for (const TokenOutput& o : run.outputs[quiet]) EXPECT_FALSE(o.logprobs.has_value());
}

TEST_F(EngineApiTest, LogitBiasSteersAndItsIdsAreChecked) {
  auto e = NewEngine();
  ProcessSpec spec = Greedy(Prompt(8, 4), 5);
  spec.sampling.logit_bias = {{65, 100.0f}};
  const ProcessId id = *e->Submit(spec);
  Run run = RunAll(*e);
  for (TokenId t : run.ended.at(id).process->generated()) EXPECT_EQ(t, 65);
  spec.sampling.logit_bias = {{static_cast<TokenId>(model_->config().vocab_size), 1.0f}};
  Status st = e->Submit(spec).status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("logit_bias"), std::string::npos) << st.message();
}

TEST_F(EngineApiTest, AnUnseededProcessRecordsTheSeedItRanWith) {
  auto e = NewEngine();
  ProcessSpec spec = Greedy(Prompt(8, 6), 12);
  spec.sampling.temperature = 1.5f;
  spec.sampling.top_k = 0;
  spec.sampling.top_p = 1.0f;
  spec.sampling.min_p = 0.0f;
  ASSERT_FALSE(spec.sampling.seed.has_value());
  const ProcessId a = *e->Submit(spec);
  const ProcessId b = *e->Submit(spec);
  Run run = RunAll(*e);
  const Process& pa = *run.ended.at(a).process;
  const Process& pb = *run.ended.at(b).process;
  ASSERT_TRUE(pa.sampling().seed.has_value());
  ASSERT_TRUE(pb.sampling().seed.has_value());
  EXPECT_NE(*pa.sampling().seed, *pb.sampling().seed);
  // The recorded seed reproduces the run.
  spec.sampling.seed = pa.sampling().seed;
  const ProcessId again = *e->Submit(spec);
  Run rerun = RunAll(*e);
  const auto ga = pa.generated();
  const auto gr = rerun.ended.at(again).process->generated();
  EXPECT_EQ(std::vector<TokenId>(ga.begin(), ga.end()), std::vector<TokenId>(gr.begin(), gr.end()));
}

TEST_F(EngineApiTest, APromptThatCanNeverFitIsInvalidButAFullPoolMakesItWait) {
  EngineOptions o;
  o.kv_block_tokens = 4;
  const arch::ModelConfig& c = model_->config();
  const size_t block_bytes =
      *KvBlockBytes(c.num_layers, c.kv_dim(), o.kv_block_tokens, o.cache_type_k, o.cache_type_v);
  o.kv_budget_bytes = 12 * block_bytes;  // 48 tokens of KV
  auto e = NewEngine(o);
  // 40 + 20 tokens can never fit in 48: permanent, both numbers named.
  Status never = e->Submit(Greedy(Prompt(40, 1), 20)).status();
  EXPECT_EQ(never.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(never.message().find("15 KV blocks"), std::string::npos) << never.message();
  EXPECT_NE(never.message().find("has 12"), std::string::npos) << never.message();
  // Three that each fit alone but not together: all accepted, all finish in turn.
  std::vector<ProcessId> ids;
  for (uint32_t i = 0; i < 3; ++i) {
    auto id = e->Submit(Greedy(Prompt(30, 10 + i), 10));
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    ids.push_back(*id);
  }
  Run run = RunAll(*e);
  for (ProcessId id : ids) EXPECT_EQ(run.ended.at(id).process->state(), ProcessState::kFinished);
}

TEST_F(EngineApiTest, AGroupComputesItsPromptOnceAndEachMemberSamplesItsOwn) {
  EngineOptions o;
  o.ignore_eog = true;  // every member runs to max_tokens
  auto e = NewEngine(o);
  const std::vector<TokenId> prompt = Prompt(37, 8);  // not a whole number of 4-token blocks
  ProcessSpec spec = Greedy(prompt, 8);
  spec.sampling.temperature = 2.0f;
  spec.sampling.top_k = 0;
  spec.sampling.top_p = 1.0f;
  spec.sampling.min_p = 0.0f;
  spec.sampling.seed = 5;
  auto ids = e->SubmitGroup(spec, 4);
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  ASSERT_EQ(ids->size(), 4u);
  Run run = RunAll(*e);
  int64_t prompt_tokens_computed = 0;
  std::set<std::vector<TokenId>> continuations;
  for (size_t i = 0; i < 4; ++i) {
    const Process& p = *run.ended.at((*ids)[i]).process;
    ASSERT_EQ(p.num_generated_tokens(), 8u);
    EXPECT_EQ(p.end_reason(), EndReason::kLength);
    EXPECT_EQ(*p.sampling().seed, 5u + i);
    // Every token fed through the model beyond the decodes of its own tokens is prompt.
    prompt_tokens_computed += p.accounting().num_computed_tokens - static_cast<int64_t>(p.num_generated_tokens() - 1);
    if (i > 0) {
      EXPECT_EQ(p.accounting().num_prefix_cached_tokens, static_cast<int64_t>(prompt.size()));
    }
    continuations.insert(std::vector<TokenId>(p.generated().begin(), p.generated().end()));
  }
  EXPECT_EQ(prompt_tokens_computed, static_cast<int64_t>(prompt.size()));  // one prefill for four
  EXPECT_EQ(continuations.size(), 4u);  // four seeds, four continuations
  EXPECT_EQ(e->kv().Stats().used_blocks, 0u);
  EXPECT_EQ(Engine::ValidateGroup(spec, 0).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e->SubmitGroup(spec, Engine::kMaxGroupSize + 1).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(EngineApiTest, AForkedMemberContinuesAsIfItHadRunAlone) {
  // Greedy members all equal the prompt's continuation alone: the shared KV (and the
  // copy-on-write of the shared partial block) gives each the right context.
  const std::vector<TokenId> prompt = Prompt(23, 9);
  const std::vector<TokenId> want = Alone(prompt, 10);
  auto e = NewEngine();
  auto ids = e->SubmitGroup(Greedy(prompt, 10), 3);
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  Run run = RunAll(*e);
  for (ProcessId id : *ids) {
    const auto g = run.ended.at(id).process->generated();
    EXPECT_EQ(std::vector<TokenId>(g.begin(), g.end()), want) << "process " << id;
  }
}

TEST_F(EngineApiTest, CancellingALeaderBeforeItsPrefillEndsTheWholeGroup) {
  auto e = NewEngine();
  auto ids = e->SubmitGroup(Greedy(Prompt(30, 2), 10), 3);
  ASSERT_TRUE(ids.ok());
  ASSERT_TRUE(e->End((*ids)[2], EndReason::kCancelled).ok());  // a waiting follower alone
  ASSERT_TRUE(e->End((*ids)[0], EndReason::kKilled).ok());     // the leader, and so the rest
  Run run = RunAll(*e);
  ASSERT_EQ(run.ended.size(), 3u);
  EXPECT_EQ(run.ended.at((*ids)[0]).process->end_reason(), EndReason::kKilled);
  EXPECT_EQ(run.ended.at((*ids)[1]).process->end_reason(), EndReason::kKilled);
  EXPECT_EQ(run.ended.at((*ids)[2]).process->end_reason(), EndReason::kCancelled);
  EXPECT_FALSE(e->HasWork());
}

ProcessSpec EmbedSpec(std::vector<TokenId> prompt) {
  ProcessSpec s;
  s.kind = ProcessKind::kEmbed;
  s.prompt = std::move(prompt);
  s.limits.max_tokens = 1;
  return s;
}

TEST_F(EngineApiTest, AnEmbeddingIsTheSameWhateverTheChunkingAndTheCompany) {
  const std::vector<TokenId> prompt = Prompt(29, 12);
  // Alone, in chunks of 8 tokens.
  EngineOptions chunked;
  chunked.scheduler.max_prefill_chunk_tokens = 8;
  auto a = NewEngine(chunked);
  const ProcessId alone = *a->Submit(EmbedSpec(prompt));
  Run ra = RunAll(*a);
  const EndedProcess& ea = ra.ended.at(alone);
  EXPECT_EQ(ea.process->end_reason(), EndReason::kEndOfGeneration);
  EXPECT_EQ(ea.process->num_generated_tokens(), 0u);
  EXPECT_TRUE(ra.outputs[alone].empty());
  ASSERT_EQ(ea.embedding.size(), model_->config().embd);
  double norm = 0;
  for (float x : ea.embedding) norm += static_cast<double>(x) * x;
  EXPECT_NEAR(norm, 1.0, 1e-5);

  // In one chunk, batched with generation and another embedding; then the same prompt again,
  // which must not take its KV from the prefix cache (every token's hidden state counts).
  auto b = NewEngine();
  const ProcessId gen = *b->Submit(Greedy(Prompt(17, 13), 6));
  const ProcessId other = *b->Submit(EmbedSpec(Prompt(11, 14)));
  const ProcessId batched = *b->Submit(EmbedSpec(prompt));
  Run rb = RunAll(*b);
  const ProcessId again = *b->Submit(EmbedSpec(prompt));
  Run rc = RunAll(*b);
  EXPECT_EQ(rb.ended.at(gen).process->num_generated_tokens(), 6u);
  EXPECT_EQ(rb.ended.at(other).embedding.size(), model_->config().embd);
  for (const std::vector<float>* v : {&rb.ended.at(batched).embedding, &rc.ended.at(again).embedding}) {
    ASSERT_EQ(v->size(), ea.embedding.size());
    for (size_t d = 0; d < v->size(); ++d) EXPECT_NEAR((*v)[d], ea.embedding[d], 1e-5) << d;
  }
  EXPECT_EQ(rc.ended.at(again).process->accounting().num_prefix_cached_tokens, 0);
  EXPECT_NE(rb.ended.at(other).embedding, ea.embedding);
}

TEST_F(EngineApiTest, AnEmbeddingTakesNoMaxTokensAndNoGroup) {
  auto e = NewEngine();
  ProcessSpec spec = EmbedSpec(Prompt(5, 1));
  EXPECT_EQ(e->SubmitGroup(spec, 2).status().code(), StatusCode::kInvalidArgument);
  spec.limits.max_tokens = 16;
  EXPECT_EQ(e->Submit(spec).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace llmasos::kernel
