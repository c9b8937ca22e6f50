// The engine on a model with global layers beside sliding ones (a tiny gemma3 of 6 layers,
// every 3rd global, window 10): the pool's pages are split into layer groups (one global group,
// two sliding ones), the sliding groups give back what falls out of their window, and a
// context longer than the pool runs with the same greedy tokens as the prompt alone
// (arch::Context, which keeps every position) and as a pool that holds everything, through
// chunked prefill, preemption (swap and recompute), prefix-cache reuse and n > 1 forks.
#include <gtest/gtest.h>

#include <vector>

#include "kernel/sliding_engine_test_util.h"

namespace llmasos::kernel {
namespace {

constexpr uint32_t kWindow = 10;
constexpr size_t kGroups = 3;  // {2, 5} global; {0, 1} and {3, 4} sliding
constexpr size_t kLayersPerPage = 2;

class EngineGroupsTest : public SlidingEngineTest {
 protected:
  EngineGroupsTest() : SlidingEngineTest("gemma3", kWindow, kLayersPerPage) {
    num_layers_ = 6;
    swa_pattern_ = 3;
  }

  // A process holds the global group's pages of its positions plus at most 5 pages in each
  // sliding group (the window, 9 positions, and a chunk of 8 touch at most 5).
  static size_t MaxHeldPages(const ProcessSnapshot& s) {
    const size_t length = s.num_prompt_tokens + s.num_generated_tokens;
    return (length + kBlockTokens - 1) / kBlockTokens + 2 * 5;
  }
};

TEST_F(EngineGroupsTest, TheModelMixesGlobalAndSlidingLayers) {
  const arch::ModelConfig& c = model_->config();
  EXPECT_EQ(c.AllLayersWindow(), 0u);
  const arch::KvLayerGroups g = arch::LayerGroupsOf(c);
  EXPECT_EQ(g.num_groups(), kGroups);
  EXPECT_EQ(g.layers_per_group, kLayersPerPage);
}

TEST_F(EngineGroupsTest, AContextLongerThanThePoolRunsWithTheSameTokens) {
  const std::vector<TokenId> prompt = Prompt(70, 11);
  constexpr int32_t kMaxTokens = 50;  // 119 positions: 30 pages in each of the 3 groups
  const std::vector<TokenId> want = Alone(prompt, kMaxTokens);

  // Global: 30 pages; each sliding group: its window (9 positions) plus a chunk of 8 touch at
  // most 5. 40 pages hold it, where every layer at every position would take 90.
  auto small = Engine::Create(*model_, *tokenizer_, pool_, Options(40), &clock_);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_EQ((*small)->kv().num_layers(), kLayersPerPage);
  const ProcessId id = *(*small)->Submit(Greedy(prompt, kMaxTokens));
  auto ended = RunAll(**small, MaxHeldPages);
  ASSERT_TRUE(ended.count(id));
  EXPECT_EQ(Generated(*ended.at(id)), want);
  EXPECT_EQ(ended.at(id)->state(), ProcessState::kFinished) << EndReasonName(ended.at(id)->end_reason());
  const KvStats st = (*small)->kv().Stats();
  EXPECT_GE(st.dropped_blocks, 2u * 26);  // each sliding group gave back all but its last window
  EXPECT_EQ(st.used_blocks, 0u);

  // A pool that holds everything gives the same tokens.
  auto big = *Engine::Create(*model_, *tokenizer_, pool_, Options(128), &clock_);
  const ProcessId big_id = *big->Submit(Greedy(prompt, kMaxTokens));
  auto big_ended = RunAll(*big, MaxHeldPages);
  EXPECT_EQ(Generated(*big_ended.at(big_id)), want);

  // Below the global pages plus each sliding group's window and a chunk: refused up front.
  auto tiny = *Engine::Create(*model_, *tokenizer_, pool_, Options(39), &clock_);
  const StatusOr<ProcessId> refused = tiny->Submit(Greedy(prompt, kMaxTokens));
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().ToString();
}

TEST_F(EngineGroupsTest, PreemptedProcessesResumeExactly) {
  ExpectPreemptedProcessesResumeExactly(40, 96, MaxHeldPages);
}

// Every group committed its blocks before the sliding ones dropped theirs: b reuses all 8
// blocks of the shared prompt, in every group.
TEST_F(EngineGroupsTest, APromptReusesTheCachedPrefixOfEveryGroup) {
  ExpectAPromptReusesADroppedPrefix(120, MaxHeldPages);
}

TEST_F(EngineGroupsTest, ForkedGroupMembersFinishExactly) {
  ExpectForkedMembersFinishExactly(64, MaxHeldPages);
}

}  // namespace
}  // namespace llmasos::kernel
