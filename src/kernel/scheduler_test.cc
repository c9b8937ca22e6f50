// Scheduler tests on a simulated clock, a counting fake of KV memory and a fake model that
// produces one token per sampling entry.
#include "kernel/scheduler.h"

#include <algorithm>
#include <cmath>
#include <chrono>
#include <iostream>
#include <map>
#include <random>

#include "gtest/gtest.h"
#include "kernel/fake_memory_model_test_util.h"

namespace llmasos::kernel {
namespace {

using std::chrono::milliseconds;
using testing::FakeToken;
using testing::SimEngine;

SchedulerOptions Options(size_t max_batch_tokens, size_t max_running, size_t min_tokens_before_preempt = 0) {
  SchedulerOptions o;
  o.max_batch_tokens = max_batch_tokens;
  o.max_running = max_running;
  o.max_prefill_chunk_tokens = max_batch_tokens;
  o.preemption.min_tokens_before_preempt = min_tokens_before_preempt;
  return o;
}

// Runs until every listed process ended or `max_steps` passed; returns the steps taken.
size_t RunUntilEnded(SimEngine& sim, size_t max_steps) {
  for (size_t step = 0; step < max_steps; ++step) {
    if (sim.scheduler->LiveProcesses().empty()) return step;
    sim.Step();
  }
  return max_steps;
}

TEST(SchedulerTest, CreateRejectsZeroLimits) {
  SimulatedClock clock;
  testing::FakeMemoryModel memory(8, 16);
  SchedulerOptions o;
  o.max_batch_tokens = 0;
  auto s = Scheduler::Create(o, NewFcfsPolicy(), &memory, &clock);
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("max_batch_tokens"), std::string::npos);
  o = SchedulerOptions();
  o.max_running = 0;
  EXPECT_FALSE(Scheduler::Create(o, NewFcfsPolicy(), &memory, &clock).ok());
  EXPECT_FALSE(Scheduler::Create(SchedulerOptions(), nullptr, &memory, &clock).ok());
}

TEST(SchedulerTest, SubmitRejectsAProcessTheWholePoolCouldNotHold) {
  SimEngine sim(Options(64, 8), NewFcfsPolicy(), /*num_blocks=*/4, /*block_tokens=*/16);
  ProcessSpec spec;
  spec.prompt.assign(60, 1);
  spec.limits.max_tokens = 10;  // 69 KV tokens -> 5 blocks > 4
  auto id = sim.scheduler->Submit(spec);
  EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);  // permanent: it can never fit
  EXPECT_NE(id.status().message().find("5 KV blocks"), std::string::npos) << id.status().message();
  EXPECT_NE(id.status().message().find("has 4"), std::string::npos) << id.status().message();
  spec.limits.max_tokens = 5;  // 64 -> 4 blocks
  EXPECT_TRUE(sim.scheduler->Submit(spec).ok());
}

TEST(SchedulerTest, RunsAProcessToMaxTokensAndReleasesItsMemory) {
  SimEngine sim(Options(64, 8), NewFcfsPolicy(), 16);
  const ProcessId id = sim.Submit(20, 5);
  StepPlan first = sim.Step();
  ASSERT_EQ(first.batch.size(), 1u);
  EXPECT_TRUE(first.batch[0].is_prefill);
  EXPECT_EQ(first.batch[0].num_tokens, 20u);
  EXPECT_TRUE(first.batch[0].samples);
  EXPECT_EQ(first.admitted, std::vector<ProcessId>{id});
  for (int i = 0; i < 4; ++i) {
    StepPlan plan = sim.Step();
    ASSERT_EQ(plan.batch.size(), 1u);
    EXPECT_FALSE(plan.batch[0].is_prefill);
    EXPECT_EQ(plan.batch[0].first_token_idx, 20u + i);
  }
  const Process& p = sim.Get(id);
  EXPECT_EQ(p.state(), ProcessState::kFinished);
  EXPECT_EQ(p.end_reason(), EndReason::kLength);
  ASSERT_EQ(p.num_generated_tokens(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(p.generated()[i], FakeToken(id, 20 + i));
  EXPECT_EQ(sim.memory.num_used_blocks(), 0u);
  EXPECT_EQ(p.TimeRunning(sim.clock.Now()), milliseconds(50));
}

TEST(SchedulerTest, AdmitsWhileBlocksAllowAndQueuesTheRest) {
  // 6 blocks of 16; a 40-token prompt needs 3 blocks for its first (whole) chunk, and with
  // max_tokens 8 never more (47 KV tokens).
  SimEngine sim(Options(512, 8), NewFcfsPolicy(), 6);
  const ProcessId a = sim.Submit(40, 8), b = sim.Submit(40, 8), c = sim.Submit(40, 8);
  StepPlan plan = sim.Step();
  EXPECT_EQ(plan.admitted, (std::vector<ProcessId>{a, b}));
  EXPECT_EQ(sim.memory.num_used_blocks(), 6u);
  EXPECT_EQ(sim.Get(a).num_computed_tokens(), 40u);
  EXPECT_EQ(sim.Get(b).num_computed_tokens(), 40u);
  EXPECT_EQ(sim.Get(c).state(), ProcessState::kQueued);
  EXPECT_FALSE(sim.memory.Holds(c));
  for (int i = 0; i < 7; ++i) {
    plan = sim.Step();
    EXPECT_TRUE(plan.admitted.empty());
    EXPECT_TRUE(plan.preempted.empty());
  }
  EXPECT_EQ(sim.Get(a).state(), ProcessState::kFinished);
  EXPECT_EQ(sim.Get(b).state(), ProcessState::kFinished);
  plan = sim.Step();
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{c});
  EXPECT_EQ(sim.Get(c).TimeQueued(sim.clock.Now()), milliseconds(80));
  EXPECT_EQ(RunUntilEnded(sim, 100), 7u);
  EXPECT_EQ(sim.memory.num_used_blocks(), 0u);
}


// Checks that a process generated exactly FakeToken(id, position) at every position, whatever
// preemptions it went through (resume is exact).
void ExpectExactTokens(const Process& p) {
  for (size_t i = 0; i < p.num_generated_tokens(); ++i) {
    ASSERT_EQ(p.generated()[i], FakeToken(p.id(), p.num_prompt_tokens() + i)) << "process " << p.id() << " token " << i;
  }
}

TEST(SchedulerTest, PriorityArrivalPreemptsTheLowestPriorityRunningProcessWhenMemoryIsShort) {
  SimEngine sim(Options(512, 8), NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), 8);
  const ProcessId low0 = sim.Submit(20, 50, 0), low1 = sim.Submit(20, 50, 1), low2 = sim.Submit(20, 50, 2);
  for (int i = 0; i < 4; ++i) sim.Step();  // 24 tokens each: 2 blocks each, 6 of 8 used
  ASSERT_EQ(sim.memory.num_used_blocks(), 6u);
  const ProcessId high = sim.Submit(40, 10, 10);  // needs 3 blocks for its prompt
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.preempted.size(), 1u);
  EXPECT_EQ(plan.preempted[0].id, low0);
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{high});
  EXPECT_EQ(sim.Get(low0).state(), ProcessState::kPreempted);
  EXPECT_EQ(sim.Get(low0).accounting().num_preemptions, 1);
  EXPECT_EQ(sim.Get(low1).state(), ProcessState::kRunning);
  EXPECT_EQ(sim.Get(low2).state(), ProcessState::kRunning);
  EXPECT_EQ(RunUntilEnded(sim, 500) < 500, true);
  for (ProcessId id : {low0, low1, low2, high}) {
    EXPECT_EQ(sim.Get(id).state(), ProcessState::kFinished);
    ExpectExactTokens(sim.Get(id));
  }
  // The high-priority process finished before the one it displaced.
  EXPECT_LT(*sim.Get(high).accounting().ended_at, *sim.Get(low0).accounting().ended_at);
}

TEST(SchedulerTest, ReniceTakesEffectAtTheNextStepForWaitingAndRunningProcesses) {
  SimEngine sim(Options(512, /*max_running=*/1), NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), 100);
  const ProcessId a = sim.Submit(8, 50, 5), b = sim.Submit(8, 50, 0);
  sim.Step();
  ASSERT_EQ(sim.Get(a).state(), ProcessState::kRunning);
  ASSERT_EQ(sim.Get(b).state(), ProcessState::kQueued);
  // Raising the waiting one: it preempts the running one in the very next step.
  ASSERT_TRUE(sim.scheduler->Renice(b, 9).ok());
  EXPECT_EQ(sim.Get(b).priority(), 9);
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.preempted.size(), 1u);
  EXPECT_EQ(plan.preempted[0].id, a);
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{b});
  // Raising the one that waits now above the running one: it takes the slot back.
  sim.Step();
  ASSERT_TRUE(sim.scheduler->Renice(a, 10).ok());
  plan = sim.Step();
  ASSERT_EQ(plan.preempted.size(), 1u);
  EXPECT_EQ(plan.preempted[0].id, b);
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{a});
  // Lowering the running one below the waiting one works the same way.
  ASSERT_TRUE(sim.scheduler->Renice(a, -1).ok());
  plan = sim.Step();
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{b});
  EXPECT_EQ(sim.scheduler->Renice(999, 1).code(), StatusCode::kNotFound);
  ASSERT_TRUE(sim.scheduler->End(b, EndReason::kKilled).ok());
  EXPECT_EQ(sim.scheduler->Renice(b, 1).code(), StatusCode::kFailedPrecondition);
}

TEST(SchedulerTest, FcfsDoesNotPreemptForAnArrival) {
  SimEngine sim(Options(512, 8), NewFcfsPolicy(), 8);
  for (int i = 0; i < 3; ++i) sim.Submit(20, 50, i);
  for (int i = 0; i < 4; ++i) sim.Step();
  const ProcessId high = sim.Submit(40, 10, 10);
  StepPlan plan = sim.Step();
  EXPECT_TRUE(plan.preempted.empty());
  EXPECT_TRUE(plan.admitted.empty());
  EXPECT_EQ(sim.Get(high).state(), ProcessState::kQueued);
}

TEST(SchedulerTest, PriorityArrivalPreemptsWhenBatchSlotsAreShort) {
  SimEngine sim(Options(512, /*max_running=*/2), NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), 100);
  const ProcessId low5 = sim.Submit(8, 50, 5), low1 = sim.Submit(8, 50, 1);
  for (int i = 0; i < 3; ++i) sim.Step();
  const ProcessId high = sim.Submit(8, 50, 9);
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.preempted.size(), 1u);
  EXPECT_EQ(plan.preempted[0].id, low1);
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{high});
  EXPECT_EQ(sim.Get(low5).state(), ProcessState::kRunning);
  EXPECT_EQ(sim.scheduler->stats().num_running, 2u);
}

TEST(SchedulerTest, AnArrivalDoesNotEvictAProcessBeforeItRanMinTokens) {
  SimEngine sim(Options(512, 1, /*min_tokens_before_preempt=*/8),
                NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), 100);
  const ProcessId low = sim.Submit(4, 50, 0);
  sim.Step();  // fed 4 prompt tokens
  const ProcessId high = sim.Submit(4, 5, 9);
  sim.Step();  // 5 fed: still protected
  EXPECT_EQ(sim.Get(high).state(), ProcessState::kQueued);
  sim.Step();
  sim.Step();
  sim.Step();  // 8 fed by the end of this step
  EXPECT_EQ(sim.Get(high).state(), ProcessState::kQueued);
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.preempted.size(), 1u);
  EXPECT_EQ(plan.preempted[0].id, low);
}

TEST(SchedulerTest, PreemptionSwapsWhenCheaperAndResumesWithoutRecomputing) {
  SchedulerOptions o = Options(512, 1);
  o.preemption.costs = PreemptionCosts{.swap_seconds_per_byte = 1e-12, .recompute_seconds_per_token = 1e-3};
  SimEngine sim(o, NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), 100, 16, /*swap blocks=*/50);
  const ProcessId low = sim.Submit(30, 20, 0);
  for (int i = 0; i < 5; ++i) sim.Step();
  const ProcessId high = sim.Submit(10, 5, 5);
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.preempted.size(), 1u);
  EXPECT_EQ(plan.preempted[0].mode, PreemptMode::kSwap);
  EXPECT_EQ(sim.memory.SwappedBlocks(low), 3u);  // 35 tokens
  EXPECT_EQ(sim.memory.ResidentBlocks(low), 0u);
  EXPECT_EQ(sim.Get(low).num_computed_tokens(), 34u);  // kept: the KV is in swap
  EXPECT_EQ(sim.scheduler->stats().num_preempted, 1u);
  EXPECT_EQ(sim.scheduler->stats().num_swapped, 1u);
  while (sim.Get(high).state() != ProcessState::kFinished) sim.Step();
  plan = sim.Step();
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{low});
  EXPECT_EQ(sim.scheduler->stats().num_preempted, 0u);
  EXPECT_EQ(sim.scheduler->stats().num_swapped, 0u);
  ASSERT_EQ(plan.batch.size(), 1u);
  EXPECT_FALSE(plan.batch[0].is_prefill);  // straight back to decoding
  EXPECT_EQ(sim.memory.num_used_swap_blocks(), 0u);
  RunUntilEnded(sim, 100);
  const Process& p = sim.Get(low);
  EXPECT_EQ(p.num_generated_tokens(), 20u);
  ExpectExactTokens(p);
  EXPECT_EQ(p.accounting().num_swap_preemptions, 1);
  EXPECT_EQ(p.accounting().num_computed_tokens, 30 + 20 - 1);  // nothing fed twice
}

TEST(SchedulerTest, PreemptionRecomputesWhenCheaperOrSwapIsFullAndResumesExactly) {
  for (bool swap_full : {false, true}) {
    SchedulerOptions o = Options(512, 1);
    o.preemption.costs = swap_full ? PreemptionCosts{.swap_seconds_per_byte = 1e-12, .recompute_seconds_per_token = 1e-3}
                        : PreemptionCosts{.swap_seconds_per_byte = 1e-3, .recompute_seconds_per_token = 1e-9};
    SimEngine sim(o, NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), 100, 16, swap_full ? 2 : 50);
    const ProcessId low = sim.Submit(30, 20, 0);
    for (int i = 0; i < 5; ++i) sim.Step();
    const ProcessId high = sim.Submit(10, 5, 5);
    StepPlan plan = sim.Step();
    ASSERT_EQ(plan.preempted.size(), 1u);
    EXPECT_EQ(plan.preempted[0].mode, PreemptMode::kRecompute) << swap_full;
    EXPECT_FALSE(sim.memory.Holds(low));
    EXPECT_EQ(sim.Get(low).num_computed_tokens(), 0u);
    EXPECT_EQ(sim.scheduler->stats().num_preempted, 1u);
    EXPECT_EQ(sim.scheduler->stats().num_swapped, 0u);  // dropped, to be recomputed
    while (sim.Get(high).state() != ProcessState::kFinished) sim.Step();
    plan = sim.Step();
    EXPECT_EQ(plan.admitted, std::vector<ProcessId>{low});
    ASSERT_EQ(plan.batch.size(), 1u);
    EXPECT_TRUE(plan.batch[0].is_prefill);
    EXPECT_EQ(plan.batch[0].num_tokens, 35u);  // prompt + 5 generated, fed again
    EXPECT_TRUE(plan.batch[0].samples);
    RunUntilEnded(sim, 100);
    const Process& p = sim.Get(low);
    EXPECT_EQ(p.num_generated_tokens(), 20u);
    ExpectExactTokens(p);
    EXPECT_EQ(p.accounting().num_recompute_preemptions, 1);
    EXPECT_EQ(p.accounting().num_computed_tokens, 49 + 34);
  }
}

TEST(SchedulerTest, ChunkedPrefillNeverStallsRunningDecodes) {
  SimEngine sim(Options(/*max_batch_tokens=*/64, 8), NewFcfsPolicy(), 200);
  std::vector<ProcessId> decoders;
  for (int i = 0; i < 3; ++i) decoders.push_back(sim.Submit(4, 500));
  sim.Step();
  const ProcessId long_prompt = sim.Submit(1000, 10);
  size_t num_prefill_steps = 0;
  while (sim.Get(long_prompt).num_generated_tokens() == 0) {
    std::vector<size_t> before;
    for (ProcessId id : decoders) before.push_back(sim.Get(id).num_generated_tokens());
    StepPlan plan = sim.Step();
    ++num_prefill_steps;
    EXPECT_LE(plan.num_batch_tokens, 64u);
    for (size_t i = 0; i < decoders.size(); ++i) {
      EXPECT_EQ(sim.Get(decoders[i]).num_generated_tokens(), before[i] + 1) << "decoder stalled";
    }
    ASSERT_LT(num_prefill_steps, 100u);
  }
  EXPECT_EQ(num_prefill_steps, (1000u + 60) / 61);  // 61 prompt tokens a step beside 3 decodes
}

TEST(SchedulerTest, AHigherPriorityPromptGoesAheadOfLowerPriorityDecodes) {
  SimEngine sim(Options(/*max_batch_tokens=*/16, 8), NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}),
                200);
  std::vector<ProcessId> low;
  for (int i = 0; i < 6; ++i) low.push_back(sim.Submit(2, 500, 0));
  for (int i = 0; i < 3; ++i) sim.Step();
  const ProcessId high = sim.Submit(20, 10, 5);
  // The budget goes to the high-priority prompt, however many lower-priority decodes wait;
  // its last 4 tokens run alone too (the lower class waits out both steps).
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.batch.size(), 1u);
  EXPECT_EQ(plan.batch[0].id, high);
  EXPECT_EQ(plan.batch[0].num_tokens, 16u);
  plan = sim.Step();
  ASSERT_EQ(plan.batch.size(), 1u);
  EXPECT_EQ(plan.batch[0].num_tokens, 4u);
  EXPECT_EQ(sim.Get(high).num_generated_tokens(), 1u);
  // Then its decode goes first and the lower class shares what is left.
  plan = sim.Step();
  ASSERT_EQ(plan.batch.size(), 7u);
  EXPECT_EQ(plan.batch[0].id, high);
  // Under one class (fcfs), the same arrival waits behind the decodes instead.
  SimEngine fcfs(Options(16, 8), NewFcfsPolicy(), 200);
  for (int i = 0; i < 6; ++i) fcfs.Submit(2, 500, 0);
  for (int i = 0; i < 3; ++i) fcfs.Step();
  const ProcessId late = fcfs.Submit(20, 10, 5);
  plan = fcfs.Step();
  EXPECT_EQ(plan.batch.size(), 7u);  // 6 decodes, then 10 prompt tokens
  EXPECT_EQ(plan.batch.back().id, late);
  EXPECT_EQ(plan.batch.back().num_tokens, 10u);
}

TEST(SchedulerTest, CancellationReleasesMemoryAtOnceAndTheNextStepUsesIt) {
  SimEngine sim(Options(512, 8), NewFcfsPolicy(), 4);
  const ProcessId a = sim.Submit(40, 20);  // 3 blocks
  const ProcessId b = sim.Submit(40, 20);  // waits
  sim.Step();
  ASSERT_EQ(sim.Get(b).state(), ProcessState::kQueued);
  ASSERT_TRUE(sim.memory.Holds(a));
  ASSERT_TRUE(sim.scheduler->Cancel(a, "client disconnected").ok());
  EXPECT_FALSE(sim.memory.Holds(a));
  EXPECT_EQ(sim.memory.num_used_blocks(), 0u);
  EXPECT_EQ(sim.Get(a).state(), ProcessState::kCancelled);
  EXPECT_EQ(sim.Get(a).end_reason(), EndReason::kCancelled);
  EXPECT_EQ(sim.Get(a).end_message(), "client disconnected");
  StepPlan plan = sim.Step();
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{b});
  EXPECT_EQ(sim.scheduler->Cancel(a).code(), StatusCode::kNotFound);  // taken by TakeEnded
  EXPECT_EQ(sim.scheduler->Cancel(12345).code(), StatusCode::kNotFound);
}

TEST(SchedulerTest, CancellationDuringAStepSkipsTheProcessInCompleteStep) {
  SimEngine sim(Options(512, 8), NewFcfsPolicy(), 10);
  const ProcessId a = sim.Submit(8, 20), b = sim.Submit(8, 20);
  StepPlan plan = sim.scheduler->Schedule();
  ASSERT_EQ(plan.num_samples(), 2u);
  ASSERT_TRUE(sim.scheduler->Cancel(a).ok());
  EXPECT_EQ(sim.scheduler->Cancel(a).code(), StatusCode::kFailedPrecondition);  // already ended
  std::vector<TokenId> sampled = {5, 6};
  ASSERT_TRUE(sim.scheduler->CompleteStep(plan, sampled).ok());
  EXPECT_EQ(sim.Get(a).num_generated_tokens(), 0u);
  EXPECT_EQ(sim.Get(b).generated()[0], 6);
  EXPECT_FALSE(sim.memory.Holds(a));
}

TEST(SchedulerTest, AnExpiredProcessLeavesInTheStepItExpiresAndFreesItsMemory) {
  SimEngine sim(Options(512, 8), NewFcfsPolicy(), 4);
  ProcessSpec spec;
  spec.prompt.assign(40, 3);
  spec.limits.max_tokens = 20;
  spec.limits.deadline = sim.clock.Now() + milliseconds(35);
  const ProcessId a = *sim.scheduler->Submit(spec);
  const ProcessId b = sim.Submit(40, 5);
  for (int i = 0; i < 4; ++i) {  // Schedule() at +0, +10, +20, +30 ms
    StepPlan plan = sim.Step();
    EXPECT_TRUE(plan.ended.empty());
    EXPECT_TRUE(sim.memory.Holds(a));
  }
  StepPlan plan = sim.Step();  // Schedule() at +40 ms
  EXPECT_EQ(plan.ended, std::vector<ProcessId>{a});
  EXPECT_FALSE(sim.memory.Holds(a));
  EXPECT_EQ(sim.Get(a).state(), ProcessState::kFailed);
  EXPECT_EQ(sim.Get(a).end_reason(), EndReason::kDeadline);
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{b});  // its memory served the same step
  for (const BatchEntry& e : plan.batch) EXPECT_NE(e.id, a);
}

TEST(SchedulerTest, FinishEndsARunningProcessAndReleasesItsMemory) {
  SimEngine sim(Options(512, 1), NewFcfsPolicy(), 10);
  const ProcessId a = sim.Submit(8, 20), b = sim.Submit(8, 20);
  sim.Step();
  EXPECT_EQ(sim.scheduler->End(b, EndReason::kEndOfGeneration).code(), StatusCode::kFailedPrecondition);  // queued
  ASSERT_TRUE(sim.scheduler->End(a, EndReason::kEndOfGeneration).ok());
  EXPECT_FALSE(sim.memory.Holds(a));
  EXPECT_EQ(sim.Get(a).end_reason(), EndReason::kEndOfGeneration);
  EXPECT_EQ(sim.Step().admitted, std::vector<ProcessId>{b});
}

TEST(SchedulerTest, PrefixCacheHitsSkipCachedTokensAndAreAccounted) {
  SimEngine sim(Options(512, 8), NewFcfsPolicy(), 20);
  const ProcessId a = sim.Submit(40, 4), b = sim.Submit(40, 4);
  sim.memory.SetPrefixHit(a, 32);
  sim.memory.SetPrefixHit(b, 40);  // the whole prompt: one token must still be fed
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.batch.size(), 2u);
  // b has one pending token: it runs as a decode, ahead of a's prefill.
  EXPECT_EQ(plan.batch[0].id, b);
  EXPECT_EQ(plan.batch[0].first_token_idx, 39u);
  EXPECT_EQ(plan.batch[1].id, a);
  EXPECT_EQ(plan.batch[1].first_token_idx, 32u);
  EXPECT_EQ(plan.batch[1].num_tokens, 8u);
  EXPECT_EQ(sim.Get(a).accounting().num_prefix_cached_tokens, 32);
  EXPECT_EQ(sim.Get(b).accounting().num_prefix_cached_tokens, 39);
}

TEST(SchedulerTest, AProcessWhosePrefixHitOutrunsItsReservationWaitsForRoom) {
  // Regression: admission reserves the first chunk (16 tokens, 1 block); a 32-token prefix
  // hit moves the process past it, so its next token needs blocks the batch step must check
  // for instead of assuming them reserved.
  SchedulerOptions o = Options(64, 8);
  o.max_prefill_chunk_tokens = 16;
  SimEngine sim(o, NewFcfsPolicy(), 4);
  const ProcessId r = sim.Submit(40, 8);  // 3 blocks once prefilled
  for (int i = 0; i < 3; ++i) sim.Step();
  ASSERT_EQ(sim.memory.num_used_blocks(), 3u);
  const ProcessId x = sim.Submit(40, 20);
  sim.memory.SetPrefixHit(x, 32);
  StepPlan plan = sim.Step();
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{x});
  for (const BatchEntry& e : plan.batch) EXPECT_NE(e.id, x) << "no room for its 33rd token yet";
  EXPECT_EQ(sim.Get(x).num_computed_tokens(), 32u);
  EXPECT_LT(RunUntilEnded(sim, 200), 200u);
  for (ProcessId id : {r, x}) {
    EXPECT_EQ(sim.Get(id).state(), ProcessState::kFinished);
    ExpectExactTokens(sim.Get(id));
  }
}

TEST(SchedulerTest, CompleteStepRejectsAWrongTokenCountOrAStalePlan) {
  SimEngine sim(Options(512, 8), NewFcfsPolicy(), 10);
  sim.Submit(8, 20);
  StepPlan plan = sim.scheduler->Schedule();
  std::vector<TokenId> none, two = {1, 2}, negative = {-1}, one = {1};
  EXPECT_EQ(sim.scheduler->CompleteStep(plan, none).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.scheduler->CompleteStep(plan, two).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.scheduler->CompleteStep(plan, negative).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(sim.scheduler->CompleteStep(plan, one).ok());
  EXPECT_EQ(sim.scheduler->CompleteStep(plan, one).code(), StatusCode::kInvalidArgument);  // twice
  StepPlan next = sim.scheduler->Schedule();
  EXPECT_EQ(sim.scheduler->CompleteStep(plan, one).code(), StatusCode::kInvalidArgument);  // stale
  EXPECT_TRUE(sim.scheduler->CompleteStep(next, one).ok());
}

// An abandoned step (an interrupted forward pass) advances nothing: the next plan hands the
// same tokens out again, with a higher-priority arrival ahead; the abandoned plan can no
// longer be completed.
TEST(SchedulerTest, AnAbandonedStepAdvancesNothingAndTheNextPlanStartsFromThere) {
  SimEngine sim(Options(512, 8), NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), 100);
  const ProcessId low = sim.Submit(8, 20, 0);
  sim.Step();  // its prefill
  StepPlan plan = sim.scheduler->Schedule();
  ASSERT_EQ(plan.batch.size(), 1u);
  EXPECT_EQ(plan.batch[0].first_token_idx, 8u);
  ASSERT_TRUE(sim.scheduler->AbandonStep(plan).ok());
  EXPECT_EQ(sim.scheduler->AbandonStep(plan).code(), StatusCode::kInvalidArgument);  // twice
  std::vector<TokenId> one = {1};
  EXPECT_EQ(sim.scheduler->CompleteStep(plan, one).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.scheduler->Find(low)->num_computed_tokens(), 8u);
  EXPECT_EQ(sim.scheduler->Find(low)->generated().size(), 1u);
  EXPECT_EQ(sim.scheduler->stats().num_abandoned_steps, 1u);

  const ProcessId high = sim.Submit(6, 4, 5);
  StepPlan next = sim.Step();
  // The higher priority's prompt goes alone; then the low decode resumes where it was.
  ASSERT_EQ(next.batch.size(), 1u);
  EXPECT_EQ(next.batch[0].id, high);
  StepPlan after = sim.Step();
  bool low_decoded = false;
  for (const BatchEntry& e : after.batch) {
    if (e.id == low) {
      EXPECT_EQ(e.first_token_idx, 8u);
      low_decoded = true;
    }
  }
  EXPECT_TRUE(low_decoded);
  EXPECT_EQ(sim.scheduler->policy().InterruptingPriority(3), 4);
}

TEST(SchedulerTest, OnlyThePriorityPolicyLetsAnArrivalInterruptAStep) {
  EXPECT_EQ(NewPriorityPolicy(PriorityOptions{})->InterruptingPriority(-2), -1);
  std::vector<std::unique_ptr<SchedulerPolicy>> others;
  others.push_back(NewFcfsPolicy());
  others.push_back(NewShortestJobFirstPolicy());
  others.push_back(NewRoundRobinPolicy());
  others.push_back(NewFairSharePolicy());
  for (const auto& policy : others) {
    EXPECT_EQ(policy->InterruptingPriority(0), SchedulerPolicy::kNeverInterrupts) << policy->name();
  }
}

TEST(SchedulerTest, SetPolicySwitchesBehaviourAtRunTime) {
  SimEngine sim(Options(512, 8), NewFcfsPolicy(), 8);
  for (int i = 0; i < 3; ++i) sim.Submit(20, 50, 0);
  for (int i = 0; i < 4; ++i) sim.Step();
  const ProcessId high = sim.Submit(40, 10, 10);
  EXPECT_TRUE(sim.Step().admitted.empty());
  sim.scheduler->SetPolicy(NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}));
  EXPECT_EQ(sim.scheduler->policy().name(), "priority");
  StepPlan plan = sim.Step();
  EXPECT_EQ(plan.admitted, std::vector<ProcessId>{high});
  EXPECT_EQ(plan.preempted.size(), 1u);
}

TEST(SchedulerTest, WaitingProcessesDoNotPreemptWhenPreemptionOptionsForbidIt) {
  for (bool may : {true, false}) {
    SimEngine sim(Options(512, 1), NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), 100);
    PreemptionOptions o = sim.scheduler->preemption_options();
    o.waiting_may_preempt = may;
    ASSERT_TRUE(sim.scheduler->SetPreemptionOptions(o).ok());
    const ProcessId low = sim.Submit(4, 50, 0);
    for (int i = 0; i < 4; ++i) sim.Step();
    const ProcessId high = sim.Submit(4, 5, 9);
    StepPlan plan = sim.Step();
    EXPECT_EQ(plan.preempted.size(), may ? 1u : 0u) << may;
    EXPECT_EQ(sim.Get(low).state(), may ? ProcessState::kPreempted : ProcessState::kRunning) << may;
    EXPECT_EQ(sim.Get(high).state(), may ? ProcessState::kRunning : ProcessState::kQueued) << may;
  }
}

TEST(SchedulerTest, PreemptModeRecomputeOverridesACheaperSwapAndSwapACheaperRecompute) {
  for (PreemptChoice choice : {PreemptChoice::kRecompute, PreemptChoice::kSwap}) {
    SchedulerOptions o = Options(512, 1);
    // Costs that favour the other mode.
    o.preemption.costs = choice == PreemptChoice::kRecompute
                             ? PreemptionCosts{.swap_seconds_per_byte = 1e-12, .recompute_seconds_per_token = 1e-3}
                             : PreemptionCosts{.swap_seconds_per_byte = 1e-3, .recompute_seconds_per_token = 1e-9};
    o.preemption.mode = choice;
    SimEngine sim(o, NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), 100, 16, /*swap blocks=*/50);
    sim.Submit(30, 20, 0);
    for (int i = 0; i < 5; ++i) sim.Step();
    sim.Submit(10, 5, 5);
    StepPlan plan = sim.Step();
    ASSERT_EQ(plan.preempted.size(), 1u);
    EXPECT_EQ(plan.preempted[0].mode,
              choice == PreemptChoice::kSwap ? PreemptMode::kSwap : PreemptMode::kRecompute);
  }
}

TEST(SchedulerTest, SetPreemptionOptionsRefusesOutOfRangeValuesAndKeepsTheOldOnes) {
  SimEngine sim(Options(512, 1, /*min_tokens_before_preempt=*/3), NewFcfsPolicy(), 100);
  PreemptionOptions o;
  o.costs.swap_seconds_per_byte = std::nan("");
  Status st = sim.scheduler->SetPreemptionOptions(o);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("preemption.swap_seconds_per_byte"), std::string::npos) << st.message();
  o = PreemptionOptions{};
  o.min_tokens_before_preempt = kMaxMinTokensBeforePreempt + 1;
  EXPECT_EQ(sim.scheduler->SetPreemptionOptions(o).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sim.scheduler->preemption_options().min_tokens_before_preempt, 3u);
}

TEST(SchedulerTest, RecomputationDoesNotUseUpARoundRobinSlice) {
  // Regression: one slot, no swap space, prompts longer than a slice and prefilled in chunks.
  // When recomputed tokens counted against the slice, each turn ended inside the recompute and
  // the two processes evicted each other forever without generating a token.
  SchedulerOptions o = Options(/*max_batch_tokens=*/32, /*max_running=*/1);
  SimEngine sim(o, NewRoundRobinPolicy(RoundRobinOptions{.slice_tokens = 16}), 100, 16, /*swap=*/0);
  const ProcessId a = sim.Submit(100, 5), b = sim.Submit(100, 5);
  EXPECT_LT(RunUntilEnded(sim, 300), 300u);
  for (ProcessId id : {a, b}) {
    EXPECT_EQ(sim.Get(id).state(), ProcessState::kFinished);
    EXPECT_GT(sim.Get(id).accounting().num_recompute_preemptions, 0);
    ExpectExactTokens(sim.Get(id));
  }
}

// Tokens generated by each process, by id.
std::map<ProcessId, size_t> Generated(const SimEngine& sim, const std::vector<ProcessId>& ids) {
  std::map<ProcessId, size_t> out;
  for (ProcessId id : ids) out[id] = sim.Get(id).num_generated_tokens();
  return out;
}

size_t Spread(const std::map<ProcessId, size_t>& counts) {
  size_t lo = SIZE_MAX, hi = 0;
  for (const auto& [id, n] : counts) {
    lo = std::min(lo, n);
    hi = std::max(hi, n);
  }
  return hi - lo;
}

TEST(SchedulerTest, RoundRobinSharesBatchSlotsFairly) {
  constexpr size_t kSlice = 8;
  for (bool rr : {true, false}) {
    SchedulerOptions o = Options(512, /*max_running=*/2);
    o.preemption.costs = PreemptionCosts{.swap_seconds_per_byte = 1e-12, .recompute_seconds_per_token = 1e-3};
    auto policy = rr ? NewRoundRobinPolicy(RoundRobinOptions{.slice_tokens = kSlice}) : NewFcfsPolicy();
    SimEngine sim(o, std::move(policy), 200, 16, 200);
    std::vector<ProcessId> ids;
    for (int i = 0; i < 4; ++i) ids.push_back(sim.Submit(4, 1000));
    size_t max_spread = 0;
    for (int step = 0; step < 400; ++step) {
      sim.Step();
      if (step >= 20) max_spread = std::max(max_spread, Spread(Generated(sim, ids)));
    }
    std::cout << "[ " << (rr ? "rr" : "fcfs") << " ] max spread of generated tokens after step 20: " << max_spread
              << ", final spread " << Spread(Generated(sim, ids)) << "\n";
    if (rr) {
      // Two run at a time and each turn is one slice, so no one is ever more than a slice
      // ahead of anyone else.
      EXPECT_LE(max_spread, kSlice) << "round robin";
      for (ProcessId id : ids) EXPECT_GE(sim.Get(id).num_generated_tokens(), 180u);
      EXPECT_GT(sim.scheduler->stats().num_swap_preemptions, 0u);
    } else {
      EXPECT_GE(max_spread, 300u) << "fcfs lets the first two run to the exclusion of the rest";
    }
  }
}

TEST(SchedulerTest, ShortestJobFirstOrdersByExpectedLength) {
  for (bool sjf : {true, false}) {
    SimEngine sim(Options(512, 1), sjf ? NewShortestJobFirstPolicy() : NewFcfsPolicy(), 100);
    const ProcessId a = sim.Submit(4, 50), b = sim.Submit(4, 10), c = sim.Submit(4, 30);
    RunUntilEnded(sim, 1000);
    std::vector<ProcessId> order;
    for (const auto& p : sim.ended) order.push_back(p->id());
    EXPECT_EQ(order, sjf ? (std::vector<ProcessId>{b, c, a}) : (std::vector<ProcessId>{a, b, c}));
  }
}

TEST(SchedulerTest, ShortestJobFirstAgesSoALongJobRunsUnderAStreamOfShortOnes) {
  // A 5-token job arrives every 4 steps and takes 5 steps, so a short job is always waiting.
  for (double aging : {50.0, 0.001}) {
    SimEngine sim(Options(512, 1), NewShortestJobFirstPolicy(SjfOptions{.aging_tokens_per_second = aging}), 100);
    sim.Submit(4, 5);
    const ProcessId long_job = sim.Submit(4, 200);
    size_t num_short_done_before_long_started = 0;
    for (int step = 0; step < 1200; ++step) {
      if (step % 4 == 0) sim.Submit(4, 5);
      sim.Step();
      if (sim.Get(long_job).num_computed_tokens() == 0) num_short_done_before_long_started = sim.ended.size();
    }
    const auto& acc = sim.Get(long_job).accounting();
    std::cout << "[ sjf aging " << aging << " ] shorts done before the long job started: "
              << num_short_done_before_long_started << ", long job's wait to first token: "
              << (acc.first_token_at ? ToSeconds(*acc.first_token_at - acc.submitted_at) : -1.0) << " s\n";
    if (aging > 1) {
      // Waits until 200 - 50 * age < 5 - 50 * (age of the newest short): about 4 s = 400 steps.
      EXPECT_EQ(sim.Get(long_job).state(), ProcessState::kFinished);
      EXPECT_GE(num_short_done_before_long_started, 50u);
      EXPECT_LE(ToSeconds(*sim.Get(long_job).accounting().first_token_at - sim.Get(long_job).accounting().submitted_at), 6.0);
    } else {
      EXPECT_EQ(sim.Get(long_job).num_computed_tokens(), 0u) << "without aging it starves";
    }
  }
}

TEST(SchedulerTest, FairShareConvergesToTheTenantWeights) {
  // Tokens, not memory, are short: 4 a step for 8 processes. Tenant b weighs 3x tenant a.
  for (size_t max_running : {8, 4}) {
    FairShareOptions fair;
    fair.tenant_weights = {{"a", 1.0}, {"b", 3.0}};
    SchedulerOptions o = Options(/*max_batch_tokens=*/4, max_running, /*min_tokens_before_preempt=*/8);
    o.preemption.costs = PreemptionCosts{.swap_seconds_per_byte = 1e-12, .recompute_seconds_per_token = 1e-3};
    SimEngine sim(o, NewFairSharePolicy(fair), 4000, 16, 4000);
    std::vector<ProcessId> ids;
    for (int i = 0; i < 4; ++i) {
      ids.push_back(sim.Submit(4, 5000, 0, "a"));
      ids.push_back(sim.Submit(4, 5000, 0, "b"));
    }
    for (int step = 0; step < 2000; ++step) sim.Step();
    double served_a = 0, served_b = 0;
    for (ProcessId id : ids) {
      const Process& p = sim.Get(id);
      (p.tenant() == "a" ? served_a : served_b) += static_cast<double>(p.num_generated_tokens());
    }
    std::cout << "[ fair max_running " << max_running << " ] b/a = " << served_b / served_a << " (" << served_b
              << " / " << served_a << "), preemptions " << sim.scheduler->stats().num_preemptions << "\n";
    EXPECT_NEAR(served_b / served_a, 3.0, 0.15) << "max_running " << max_running << ": a " << served_a
                                                 << " b " << served_b;
  }
}

// Whether `policy` (built by NewPolicyByName, so with its default options) may ever rank `q`
// above `p` while both are live, from the ranking each policy documents (policy.h); arrival
// times in seconds. FCFS: q arrived first. SJF (score = remaining - aging * age): q arrived
// first, or less than (p's max_tokens - 1) / aging after p (later, even q's one remaining
// token cannot undercut p's aged score). Priority (effective = priority + aging * age, so the
// order of two live processes never changes): priority_q - priority_p > aging * (a_q - a_p),
// ties by arrival. Round robin and fair share order by turns and by tenants' service, so any
// process may at some time be ranked above any other.
bool MayRankAbove(std::string_view policy, const Process& q, double a_q, const Process& p, double a_p) {
  const bool first = a_q < a_p || (a_q == a_p && q.id() < p.id());
  if (policy == "fcfs") return first;
  if (policy == "sjf") {
    return first || a_q - a_p < (p.limits().max_tokens - 1) / SjfOptions{}.aging_tokens_per_second;
  }
  if (policy == "priority") {
    const double lead = (q.priority() - p.priority()) - PriorityOptions{}.aging_per_second * (a_q - a_p);
    return lead > 0 || (lead == 0 && first);
  }
  return true;
}

// A randomized workload under each policy: everyone finishes, with the exact tokens, no later
// than the starvation bound below, and the memory comes back.
TEST(SchedulerTest, NoPolicyStarvesAProcessOnARandomizedWorkload) {
  const char* kPolicies[] = {"fcfs", "sjf", "rr", "priority", "fair"};
  for (const char* name : kPolicies) {
    for (uint32_t seed : {1u, 2u, 3u}) {
      std::mt19937 rng(seed);
      SchedulerOptions o;
      o.max_batch_tokens = 48;
      o.max_prefill_chunk_tokens = 32;
      o.max_running = 6;
      SimEngine sim(o, std::move(NewPolicyByName(name)).value(), /*num_blocks=*/24, 16, /*swap=*/16);
      struct Arrival {
        size_t step;
        size_t prompt;
        int32_t max_tokens, priority;
        std::string tenant;
      };
      std::vector<Arrival> arrivals;
      for (int i = 0; i < 60; ++i) {
        arrivals.push_back({rng() % 300, 1 + rng() % 120, static_cast<int32_t>(1 + rng() % 80),
                            static_cast<int32_t>(rng() % 4), std::string(1, static_cast<char>('a' + rng() % 3))});
      }
      std::sort(arrivals.begin(), arrivals.end(), [](const Arrival& x, const Arrival& y) { return x.step < y.step; });
      size_t next = 0, step = 0;
      for (; step < 20000 && (next < arrivals.size() || !sim.scheduler->LiveProcesses().empty()); ++step) {
        while (next < arrivals.size() && arrivals[next].step <= step) {
          const Arrival& a = arrivals[next++];
          sim.Submit(a.prompt, a.max_tokens, a.priority, a.tenant);
        }
        sim.Step();
      }
      if (!sim.scheduler->LiveProcesses().empty()) {
        for (const Process* p : sim.scheduler->LiveProcesses()) {
          std::cout << "live " << p->id() << " " << ProcessStateName(p->state()) << " tokens " << p->num_tokens()
                    << " computed " << p->num_computed_tokens() << " gen " << p->num_generated_tokens() << "/"
                    << p->limits().max_tokens << " held " << sim.memory.ResidentBlocks(p->id()) << " swapped "
                    << sim.memory.SwappedBlocks(p->id()) << " since_admit " << p->num_tokens_since_admitted() << "\n";
        }
        for (int k = 0; k < 3; ++k) {
          StepPlan plan = sim.Step();
          std::cout << "step: batch";
          for (auto& e : plan.batch) std::cout << " " << e.id << ":" << e.num_tokens;
          std::cout << " admitted";
          for (auto id : plan.admitted) std::cout << " " << id;
          std::cout << " preempted";
          for (auto pr : plan.preempted) std::cout << " " << pr.id << ":" << PreemptModeName(pr.mode);
          std::cout << "\n";
        }
      }
      ASSERT_TRUE(sim.scheduler->LiveProcesses().empty()) << name << " seed " << seed << " left processes after 20000 steps";
      for (const auto& p : sim.ended) {
        ASSERT_EQ(p->state(), ProcessState::kFinished) << name << " " << EndReasonName(p->end_reason());
        ASSERT_EQ(p->num_generated_tokens(), static_cast<size_t>(p->limits().max_tokens));
        ExpectExactTokens(*p);
      }
      EXPECT_EQ(sim.ended.size(), arrivals.size());
      EXPECT_EQ(sim.memory.num_used_blocks(), 0u);
      EXPECT_EQ(sim.memory.num_used_swap_blocks(), 0u);
      // The starvation bound. A process q alone needs work(q) steps: a prefill chunk per step,
      // then a token per step (the last chunk samples the first), plus, per preemption, the
      // step it sits out and a recompute of everything it holds. The scheduler always serves
      // the best-ranked process it can, so while p is live each step advances p or a process
      // the policy may rank above p (MayRankAbove): p ends within work(p) plus the work of
      // every such process live at some time during p's life, plus, for each admission of p,
      // min_tokens_before_preempt steps (the no-thrash rule lets a process ranked below p keep
      // memory that long after its own admission). It assumes no concurrency (the largest
      // process may hold 13 of the 24 blocks, so the memory guarantees none); running processes
      // do share steps, so the worst turnaround measured is 1/4 to 1/5 of its bound under fcfs,
      // sjf and priority, and 1/6 to 1/8 under rr and fair (which rank no process above
      // another for good, so every live process counts). A process overtaken by ones its
      // policy ranks below it (starvation) exceeds it.
      const double step_s = ToSeconds(sim.step_time);
      auto chunks = [&](size_t tokens) { return (tokens + o.max_prefill_chunk_tokens - 1) / o.max_prefill_chunk_tokens; };
      auto work = [&](const Process& q) {
        const size_t kv_tokens = q.num_prompt_tokens() + static_cast<size_t>(q.limits().max_tokens);
        return chunks(q.num_prompt_tokens()) + static_cast<size_t>(q.limits().max_tokens) - 1 +
               static_cast<size_t>(q.accounting().num_preemptions) * (1 + chunks(kv_tokens));
      };
      size_t max_turnaround = 0, bound_of_max = 0;
      for (const auto& p : sim.ended) {
        const double a_p = ToSeconds(p->accounting().submitted_at.time_since_epoch());
        const double e_p = ToSeconds(p->accounting().ended_at->time_since_epoch());
        size_t bound = work(*p) + static_cast<size_t>(1 + p->accounting().num_preemptions) * o.preemption.min_tokens_before_preempt;
        for (const auto& q : sim.ended) {
          const double a_q = ToSeconds(q->accounting().submitted_at.time_since_epoch());
          const double e_q = ToSeconds(q->accounting().ended_at->time_since_epoch());
          if (q == p || a_q >= e_p || e_q <= a_p) continue;  // not live at once
          if (MayRankAbove(name, *q, a_q, *p, a_p)) bound += work(*q);
        }
        const size_t turnaround = static_cast<size_t>((e_p - a_p) / step_s + 0.5);
        EXPECT_LE(turnaround, bound) << name << " seed " << seed << " process " << p->id();
        if (turnaround > max_turnaround) max_turnaround = turnaround, bound_of_max = bound;
      }
      std::cout << "[ policy " << name << " seed " << seed << " ] steps " << step << ", max turnaround "
                << max_turnaround << " steps (its bound " << bound_of_max << "), preemptions "
                << sim.scheduler->stats().num_preemptions << " (" << sim.scheduler->stats().num_swap_preemptions
                << " swap)\n";
    }
  }
}

}  // namespace
}  // namespace llmasos::kernel
