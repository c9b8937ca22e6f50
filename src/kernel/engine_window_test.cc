// The engine on a model whose every layer attends within a sliding window (tiny phi3, window
// 10): blocks that fall out of the window go back to the pool as a process advances, so a
// context of many windows runs in a pool far smaller than it, and every process's greedy
// tokens still equal those of the same prompt alone (arch::Context) and of a big pool, through
// chunked prefill, preemption (swap and recompute), prefix-cache reuse and n > 1 forks.
#include <gtest/gtest.h>

#include <vector>

#include "kernel/sliding_engine_test_util.h"

namespace llmasos::kernel {
namespace {

constexpr uint32_t kWindow = 10;

class EngineWindowTest : public SlidingEngineTest {
 protected:
  EngineWindowTest() : SlidingEngineTest("phi3", kWindow) {}

  // No process holds more than n blocks.
  static MaxHeld AtMost(size_t n) {
    return [n](const ProcessSnapshot&) { return n; };
  }
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
  auto ended = RunAll(**small, AtMost(5));
  ASSERT_TRUE(ended.count(id));
  EXPECT_EQ(Generated(*ended.at(id)), want);
  EXPECT_EQ(ended.at(id)->state(), ProcessState::kFinished) << EndReasonName(ended.at(id)->end_reason());
  const KvStats st = (*small)->kv().Stats();
  EXPECT_GE(st.dropped_blocks, 26u);  // all but the last window's blocks went back early
  EXPECT_EQ(st.used_blocks, 0u);

  // A pool that holds the whole context gives the same tokens.
  auto big = *Engine::Create(*model_, *tokenizer_, pool_, Options(64), &clock_);
  const ProcessId big_id = *big->Submit(Greedy(prompt, kMaxTokens));
  auto big_ended = RunAll(*big, AtMost(64));
  EXPECT_EQ(Generated(*big_ended.at(big_id)), want);

  // Below the window plus a chunk, a process could never run: refused up front.
  auto tiny = *Engine::Create(*model_, *tokenizer_, pool_, Options(4), &clock_);
  const StatusOr<ProcessId> refused = tiny->Submit(Greedy(prompt, kMaxTokens));
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().ToString();
}

TEST_F(EngineWindowTest, PreemptedWindowedProcessesResumeExactly) {
  ExpectPreemptedProcessesResumeExactly(12, 32, AtMost(12));
}

TEST_F(EngineWindowTest, APromptReusesTheCachedPrefixOfAProcessThatDroppedIt) {
  const auto [a, b] = ExpectAPromptReusesADroppedPrefix(40, AtMost(5));

  // In a pool too small to keep them, they were evicted: b starts over, with the same tokens.
  auto small = *Engine::Create(*model_, *tokenizer_, pool_, Options(6), &clock_);
  (void)*small->Submit(Greedy(a, 6));
  RunAll(*small, AtMost(5));
  const ProcessId ib2 = *small->Submit(Greedy(b, 6));
  auto again = RunAll(*small, AtMost(5));
  EXPECT_LT(again.at(ib2)->accounting().num_prefix_cached_tokens, 32);
  EXPECT_EQ(Generated(*again.at(ib2)), Alone(b, 6));
}

TEST_F(EngineWindowTest, ForkedGroupMembersShareTheWindowAndFinishExactly) {
  ExpectForkedMembersFinishExactly(16, AtMost(5));
}

}  // namespace
}  // namespace llmasos::kernel
