// A fixture for the engine tests on models whose sliding-window layers give blocks back
// (engine_window_test: every layer slides; engine_groups_test: sliding layers beside global
// ones, in layer groups): pools sized in blocks of 4 tokens, a run to the end that checks the
// pool and each process's holding after every step, and the checks both share.
#ifndef LLMASOS_KERNEL_SLIDING_ENGINE_TEST_UTIL_H_
#define LLMASOS_KERNEL_SLIDING_ENGINE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernel/engine.h"
#include "kernel/tiny_engine_test_util.h"

namespace llmasos::kernel {

class SlidingEngineTest : public TinyEngineTest {
 protected:
  static constexpr size_t kBlockTokens = 4;
  // The most blocks a process may hold, resident or swapped, given its row of the table.
  using MaxHeld = std::function<size_t(const ProcessSnapshot&)>;

  // layers_per_block: the layers of one block (a layer group's page); 0: every layer.
  SlidingEngineTest(std::string arch, uint32_t window, size_t layers_per_block = 0)
      : TinyEngineTest(256, std::move(arch), window), layers_per_block_(layers_per_block) {}

  // Engine options with a pool of num_blocks blocks (and swap_blocks of swap) of 4 tokens.
  EngineOptions Options(size_t num_blocks, size_t swap_blocks = 0) const {
    const arch::ModelConfig& c = model_->config();
    EngineOptions o;
    const size_t block_bytes = *KvBlockBytes(layers_per_block_ == 0 ? c.num_layers : layers_per_block_, c.kv_dim(),
                                             kBlockTokens, o.cache_type_k, o.cache_type_v);
    o.kv_block_tokens = kBlockTokens;
    o.kv_budget_bytes = num_blocks * block_bytes;
    o.swap_budget_bytes = swap_blocks * block_bytes;
    o.scheduler.max_prefill_chunk_tokens = 8;
    o.scheduler.max_batch_tokens = 16;
    return o;
  }

  // Runs the engine dry; returns each ended process by id. Checks after every step that the
  // pool's invariants hold and that no process holds more than max_held says.
  std::map<ProcessId, std::unique_ptr<Process>> RunAll(Engine& e, const MaxHeld& max_held) {
    std::map<ProcessId, std::unique_ptr<Process>> ended;
    for (int guard = 0; e.HasWork() && guard < 10000; ++guard) {
      auto r = e.Step();
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) break;
      for (const ProcessSnapshot& s : e.ProcessTable(clock_.Now())) {
        EXPECT_LE(s.kv_resident_blocks, max_held(s)) << "process " << s.id;
        EXPECT_LE(s.kv_swapped_blocks, max_held(s)) << "process " << s.id;
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

  // Four processes of rising priority, each taking the memory of those before it in a pool of
  // num_blocks, preempted by recompute and then by swap (swap_blocks of it): each finishes
  // with the tokens of its prompt alone.
  void ExpectPreemptedProcessesResumeExactly(size_t num_blocks, size_t swap_blocks, const MaxHeld& max_held) {
    std::vector<std::vector<TokenId>> prompts;
    for (uint32_t i = 0; i < 4; ++i) prompts.push_back(Prompt(30 + 7 * i, 300 + i));
    std::vector<std::vector<TokenId>> want;
    for (const auto& p : prompts) want.push_back(Alone(p, 30));
    for (const bool swap : {false, true}) {
      SCOPED_TRACE(swap ? "swap" : "recompute");
      EngineOptions o = Options(num_blocks, swap ? swap_blocks : 0);
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
      auto ended = RunAll(*e, max_held);
      int64_t preemptions = 0, swaps = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        ASSERT_TRUE(ended.count(ids[i])) << "process " << i;
        EXPECT_EQ(Generated(*ended.at(ids[i])), want[i]) << "process " << i;
        preemptions += ended.at(ids[i])->accounting().num_preemptions;
        swaps += ended.at(ids[i])->accounting().num_swap_preemptions;
      }
      EXPECT_GT(preemptions, 0) << "the pool did not force a preemption";
      EXPECT_EQ(swaps > 0, swap);
      EXPECT_EQ(e->kv().Stats().used_blocks, 0u);
      EXPECT_EQ(e->kv().Stats().swapped_blocks, 0u);
    }
  }

  // A prompt a of 32 shared tokens and one more runs to its end in a pool of num_blocks and
  // drops blocks out of its window; then b, the same 32 tokens and another, reuses all 8 of
  // the shared blocks (they were committed before they were dropped, so they stay cached),
  // and both finish with their prompts' tokens alone. Returns the two prompts.
  std::pair<std::vector<TokenId>, std::vector<TokenId>> ExpectAPromptReusesADroppedPrefix(
      size_t num_blocks, const MaxHeld& max_held) {
    const std::vector<TokenId> system = Prompt(32, 21);
    std::vector<TokenId> a = system, b = system;
    a.push_back(5);
    b.push_back(6);
    auto e = *Engine::Create(*model_, *tokenizer_, pool_, Options(num_blocks), &clock_);
    const ProcessId ia = *e->Submit(Greedy(a, 6));
    auto first = RunAll(*e, max_held);
    EXPECT_GT(e->kv().Stats().dropped_blocks, 0u);
    const ProcessId ib = *e->Submit(Greedy(b, 6));
    auto later = RunAll(*e, max_held);
    EXPECT_EQ(later.at(ib)->accounting().num_prefix_cached_tokens, 32);
    EXPECT_EQ(Generated(*first.at(ia)), Alone(a, 6));
    EXPECT_EQ(Generated(*later.at(ib)), Alone(b, 6));
    return {a, b};
  }

  // An n = 3 group in a pool of num_blocks: each member forks the leader's blocks and finishes
  // with the prompt's tokens alone.
  void ExpectForkedMembersFinishExactly(size_t num_blocks, const MaxHeld& max_held) {
    const std::vector<TokenId> prompt = Prompt(40, 31);
    auto e = *Engine::Create(*model_, *tokenizer_, pool_, Options(num_blocks), &clock_);
    const std::vector<ProcessId> ids = *e->SubmitGroup(Greedy(prompt, 20), 3);
    auto ended = RunAll(*e, max_held);
    const std::vector<TokenId> want = Alone(prompt, 20);
    for (ProcessId id : ids) {
      ASSERT_TRUE(ended.count(id));
      EXPECT_EQ(Generated(*ended.at(id)), want) << "process " << id;
    }
    EXPECT_EQ(e->kv().Stats().used_blocks, 0u);
  }

  const size_t layers_per_block_;
  SimulatedClock clock_;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_SLIDING_ENGINE_TEST_UTIL_H_
