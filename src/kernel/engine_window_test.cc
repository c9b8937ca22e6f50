// The engine on a model whose every layer attends within a sliding window (tiny phi3, window
// 10): blocks that fall out of the window go back to the pool as a process advances, so a
// context of many windows runs in a pool far smaller than it, and every process's greedy
// tokens still equal those of the same prompt alone (arch::Context) and of a big pool, through
// chunked prefill, preemption (swap and recompute), prefix-cache reuse and n > 1 forks.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "kernel/engine.h"
#include "kernel/tiny_engine_test_util.h"

namespace llmasos::kernel {
namespace {

constexpr uint32_t kWindow = 10;
constexpr size_t kBlockTokens = 4;

class EngineWindowTest : public TinyEngineTest {
 protected:
  EngineWindowTest() : TinyEngineTest(256, "phi3", kWindow) {}

  // Engine options with a pool of num_blocks blocks (and swap_blocks of swap) of 4 tokens.
  EngineOptions Options(size_t num_blocks, size_t swap_blocks = 0) const {
    const arch::ModelConfig& c = model_->config();
    EngineOptions o;
    const size_t block_bytes =
        *KvBlockBytes(c.num_layers, c.kv_dim(), kBlockTokens, o.cache_type_k, o.cache_type_v);
    o.kv_block_tokens = kBlockTokens;
    o.kv_budget_bytes = num_blocks * block_bytes;
    o.swap_budget_bytes = swap_blocks * block_bytes;
    o.scheduler.max_prefill_chunk_tokens = 8;
    o.scheduler.max_batch_tokens = 16;
    return o;
  }

  // Runs the engine dry; returns each ended process by id. Checks after every step that the
  // pool's invariants hold and that no process holds more than `max_resident` blocks.
  std::map<ProcessId, std::unique_ptr<Process>> RunAll(Engine& e, size_t max_resident) {
    std::map<ProcessId, std::unique_ptr<Process>> ended;
    for (int guard = 0; e.HasWork() && guard < 10000; ++guard) {
      auto r = e.Step();
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) break;
      for (const ProcessSnapshot& s : e.ProcessTable(clock_.Now())) {
        EXPECT_LE(s.kv_resident_blocks, max_resident) << "process " << s.id;
        EXPECT_LE(s.kv_swapped_blocks, max_resident) << "process " << s.id;
      }
      EXPECT_TRUE(e.kv().CheckInvariants().ok());
      for (auto& p : e.TakeEnded()) ended[p.process->id()] = std::move(p.process);
    }
    for (auto& p : e.TakeEnded()) ended[p.process->id()] = std::move(p.process);
    EXPECT_FALSE(e.HasWork());
    return ended;
  }

  static std::vector<TokenId> Generated(const Process& p) {
    return std::vector<TokenId>(p.generated().begin(), p.generated().end());
  }

  SimulatedClock clock_;
};

TEST_F(EngineWindowTest, TheModelSlidesOnEveryLayer) {
  EXPECT_EQ(model_->config().AllLayersWindow(), kWindow);
}

TEST_F(EngineWindowTest, AContextOfManyWindowsRunsInAPoolSmallerThanIt) {
  const std::vector<TokenId> prompt = Prompt(70, 11);
  constexpr int32_t kMaxTokens = 50;  // 119 positions of KV: 30 blocks
  const std::vector<TokenId> want = Alone(prompt, kMaxTokens);

  // The window (9 positions) plus a chunk of 8 touch at most 5 blocks.
  auto small = Engine::Create(*model_, *tokenizer_, pool_, Options(5), &clock_);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  const ProcessId id = *(*small)->Submit(Greedy(prompt, kMaxTokens));
  auto ended = RunAll(**small, 5);
  ASSERT_TRUE(ended.count(id));
  EXPECT_EQ(Generated(*ended.at(id)), want);
  EXPECT_EQ(ended.at(id)->state(), ProcessState::kFinished) << EndReasonName(ended.at(id)->end_reason());
  const KvStats st = (*small)->kv().Stats();
  EXPECT_GE(st.dropped_blocks, 26u);  // all but the last window's blocks went back early
  EXPECT_EQ(st.used_blocks, 0u);

  // A pool that holds the whole context gives the same tokens.
  auto big = *Engine::Create(*model_, *tokenizer_, pool_, Options(64), &clock_);
  const ProcessId big_id = *big->Submit(Greedy(prompt, kMaxTokens));
  auto big_ended = RunAll(*big, 64);
  EXPECT_EQ(Generated(*big_ended.at(big_id)), want);

  // Below the window plus a chunk, a process could never run: refused up front.
  auto tiny = *Engine::Create(*model_, *tokenizer_, pool_, Options(4), &clock_);
  const StatusOr<ProcessId> refused = tiny->Submit(Greedy(prompt, kMaxTokens));
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().ToString();
}

TEST_F(EngineWindowTest, PreemptedWindowedProcessesResumeExactly) {
  std::vector<std::vector<TokenId>> prompts;
  for (uint32_t i = 0; i < 4; ++i) prompts.push_back(Prompt(30 + 7 * i, 300 + i));
  std::vector<std::vector<TokenId>> want;
  for (const auto& p : prompts) want.push_back(Alone(p, 30));
  for (const bool swap : {false, true}) {
    SCOPED_TRACE(swap ? "swap" : "recompute");
    EngineOptions o = Options(12, swap ? 32 : 0);
    o.policy = "priority";
    o.scheduler.preemption.costs.swap_seconds_per_byte = 0;  // swap whenever swap space allows
    o.scheduler.preemption.min_tokens_before_preempt = 2;
    auto e = *Engine::Create(*model_, *tokenizer_, pool_, o, &clock_);
    std::vector<ProcessId> ids;
    for (size_t i = 0; i < prompts.size(); ++i) {
      // Later arrivals outrank earlier ones and take their memory.
      ids.push_back(*e->Submit(Greedy(prompts[i], 30, static_cast<int32_t>(i))));
      for (int s = 0; s < 4; ++s) ASSERT_TRUE(e->Step().ok());
    }
    auto ended = RunAll(*e, 12);
    int64_t preemptions = 0, swaps = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_TRUE(ended.count(ids[i])) << "process " << i;
      EXPECT_EQ(Generated(*ended.at(ids[i])), want[i]) << "process " << i;
      preemptions += ended.at(ids[i])->accounting().num_preemptions;
      swaps += ended.at(ids[i])->accounting().num_swap_preemptions;
    }
    EXPECT_GT(preemptions, 0) << "the pool did not force a preemption";
    EXPECT_EQ(swaps > 0, swap);
  }
}

TEST_F(EngineWindowTest, APromptReusesTheCachedPrefixOfAProcessThatDroppedIt) {
  const std::vector<TokenId> system = Prompt(32, 21);
  std::vector<TokenId> a = system, b = system;
  a.push_back(5);
  b.push_back(6);
  auto e = *Engine::Create(*model_, *tokenizer_, pool_, Options(40), &clock_);
  const ProcessId ia = *e->Submit(Greedy(a, 6));
  auto first = RunAll(*e, 5);
  EXPECT_GT(e->kv().Stats().dropped_blocks, 0u);
  // Its dropped blocks were committed first: they stay cached, and b matches all 8.
  const ProcessId ib = *e->Submit(Greedy(b, 6));
  auto later = RunAll(*e, 5);
  EXPECT_EQ(later.at(ib)->accounting().num_prefix_cached_tokens, 32);
  EXPECT_EQ(Generated(*first.at(ia)), Alone(a, 6));
  EXPECT_EQ(Generated(*later.at(ib)), Alone(b, 6));

  // In a pool too small to keep them, they were evicted: b starts over, with the same tokens.
  auto small = *Engine::Create(*model_, *tokenizer_, pool_, Options(6), &clock_);
  (void)*small->Submit(Greedy(a, 6));
  RunAll(*small, 5);
  const ProcessId ib2 = *small->Submit(Greedy(b, 6));
  auto again = RunAll(*small, 5);
  EXPECT_LT(again.at(ib2)->accounting().num_prefix_cached_tokens, 32);
  EXPECT_EQ(Generated(*again.at(ib2)), Alone(b, 6));
}

TEST_F(EngineWindowTest, ForkedGroupMembersShareTheWindowAndFinishExactly) {
  const std::vector<TokenId> prompt = Prompt(40, 31);
  auto e = *Engine::Create(*model_, *tokenizer_, pool_, Options(16), &clock_);
  const std::vector<ProcessId> ids = *e->SubmitGroup(Greedy(prompt, 20), 3);
  auto ended = RunAll(*e, 5);
  const std::vector<TokenId> want = Alone(prompt, 20);
  for (ProcessId id : ids) {
    ASSERT_TRUE(ended.count(id));
    EXPECT_EQ(Generated(*ended.at(id)), want) << "process " << id;
  }
  EXPECT_EQ(e->kv().Stats().used_blocks, 0u);
}

}  // namespace
}  // namespace llmasos::kernel
