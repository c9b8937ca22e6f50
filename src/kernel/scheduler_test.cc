// Scheduler tests on a simulated clock, a counting fake of KV memory and a fake model that
// produces one token per sampling entry.
#include "kernel/scheduler.h"

#include <algorithm>
#include <chrono>
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
  o.min_tokens_before_preempt = min_tokens_before_preempt;
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
  EXPECT_EQ(id.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(id.status().message().find("5 KV blocks"), std::string::npos) << id.status().message();
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
  EXPECT_EQ(p.reason(), "max_tokens reached");
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

}  // namespace
}  // namespace llmasos::kernel
