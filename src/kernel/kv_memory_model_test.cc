// The scheduler over the real paged KvMemory through KvMemoryModel: a simulated engine that
// "writes" K/V by committing the fed tokens, checks KvMemory's invariants after every step.
#include "kernel/kv_memory_model.h"

#include <algorithm>
#include <random>

#include "gtest/gtest.h"
#include "kernel/fake_memory_model_test_util.h"
#include "kernel/scheduler.h"

namespace llmasos::kernel {
namespace {

using testing::FakeToken;

struct KvSim {
  // window_tokens > 0: a model whose every layer slides (KvMemoryModel's window).
  KvSim(size_t num_blocks, size_t num_swap_blocks, std::unique_ptr<SchedulerPolicy> policy,
        SchedulerOptions options = {}, size_t window_tokens = 0) {
    KvMemoryOptions kv_options;
    kv_options.num_layers = 1;
    kv_options.kv_dim = 4;
    kv_options.block_tokens = 16;
    const size_t block_bytes = 1 * 2 * 16 * 4 * sizeof(float);
    kv_options.budget_bytes = num_blocks * block_bytes;
    kv_options.swap_budget_bytes = num_swap_blocks * block_bytes;
    auto kv_or = KvMemory::Create(kv_options);
    CHECK(kv_or.ok()) << kv_or.status().ToString();
    kv = std::move(kv_or).value();
    CHECK_EQ(kv->num_blocks(), num_blocks);
    model = std::make_unique<KvMemoryModel>(kv.get(), false, window_tokens);
    scheduler = std::move(Scheduler::Create(options, std::move(policy), model.get(), &clock)).value();
  }

  ProcessId Submit(std::vector<TokenId> prompt, int32_t max_tokens, int32_t priority = 0,
                   std::string tenant = "t", std::shared_ptr<const arch::LoraWeights> adapter = nullptr) {
    ProcessSpec spec;
    spec.adapter = std::move(adapter);
    spec.prompt = std::move(prompt);
    spec.limits.max_tokens = max_tokens;
    spec.priority = priority;
    spec.tenant = std::move(tenant);
    return std::move(scheduler->Submit(std::move(spec))).value();
  }

  StepPlan Step() {
    StepPlan plan = scheduler->Schedule();
    std::vector<TokenId> sampled;
    for (const BatchEntry& e : plan.batch) {
      // The engine writes the K/V of the fed tokens, then registers the full blocks.
      const Process* p = scheduler->Find(e.id);
      const SequenceId seq = *model->SequenceOf(e.id);
      EXPECT_GE(*kv->Length(seq), e.first_token_idx + e.num_tokens);
      EXPECT_TRUE(kv->CommitTokens(seq, p->tokens().first(e.first_token_idx + e.num_tokens)).ok());
      EXPECT_TRUE(model->ReleaseOutOfWindow(*p, e.first_token_idx + e.num_tokens).ok());
      if (e.samples) sampled.push_back(FakeToken(e.id, e.first_token_idx + e.num_tokens));
    }
    clock.Advance(std::chrono::milliseconds(10));
    EXPECT_TRUE(scheduler->CompleteStep(plan, sampled).ok());
    Status inv = kv->CheckInvariants();
    EXPECT_TRUE(inv.ok()) << inv.ToString();
    for (auto& p : scheduler->TakeEnded()) ended.push_back(std::move(p));
    return plan;
  }

  const Process* Ended(ProcessId id) const {
    for (const auto& p : ended) {
      if (p->id() == id) return p.get();
    }
    return nullptr;
  }

  SimulatedClock clock;
  std::unique_ptr<KvMemory> kv;
  std::unique_ptr<KvMemoryModel> model;
  std::unique_ptr<Scheduler> scheduler;
  std::vector<std::unique_ptr<Process>> ended;
};

std::vector<TokenId> Prompt(size_t n, TokenId base) {
  std::vector<TokenId> out;
  for (size_t i = 0; i < n; ++i) out.push_back(base + static_cast<TokenId>(i));
  return out;
}

TEST(KvMemoryModelTest, EveryPolicyRunsARandomizedWorkloadOnRealKvMemory) {
  for (const char* name : {"fcfs", "sjf", "rr", "priority", "fair"}) {
    SchedulerOptions o;
    o.max_batch_tokens = 48;
    o.max_prefill_chunk_tokens = 32;
    o.max_running = 6;
    KvSim sim(/*num_blocks=*/24, /*swap=*/16, std::move(NewPolicyByName(name)).value(), o);
    std::mt19937 rng(7);
    std::vector<ProcessId> ids;
    size_t step = 0;
    for (; step < 20000; ++step) {
      if (step < 300 && rng() % 5 == 0) {
        // Half the prompts share a 32-token system prompt, so prefix hits and shared blocks
        // take part in preemption too.
        std::vector<TokenId> prompt = rng() % 2 ? Prompt(32, 1000) : Prompt(5, 7000 + step);
        for (size_t i = 0, n = 1 + rng() % 60; i < n; ++i) prompt.push_back(static_cast<TokenId>(rng() % 500));
        ids.push_back(sim.Submit(prompt, static_cast<int32_t>(1 + rng() % 60), static_cast<int32_t>(rng() % 3),
                                 std::string(1, static_cast<char>('a' + rng() % 2))));
      }
      if (step >= 300 && sim.scheduler->LiveProcesses().empty()) break;
      sim.Step();
      if (::testing::Test::HasFailure()) return;
    }
    ASSERT_TRUE(sim.scheduler->LiveProcesses().empty()) << name;
    size_t num_cached = 0;
    for (ProcessId id : ids) {
      const Process* p = sim.Ended(id);
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(p->state(), ProcessState::kFinished) << name;
      for (size_t i = 0; i < p->num_generated_tokens(); ++i) {
        ASSERT_EQ(p->generated()[i], FakeToken(id, p->num_prompt_tokens() + i));
      }
      num_cached += static_cast<size_t>(p->accounting().num_prefix_cached_tokens);
    }
    const KvStats st = sim.kv->Stats();
    EXPECT_EQ(st.used_blocks, 0u) << name;
    EXPECT_EQ(st.swapped_blocks, 0u) << name;
    EXPECT_EQ(st.num_sequences, 0u) << name;
    EXPECT_GT(num_cached, 0u) << name;
    std::cout << "[ kv " << name << " ] " << ids.size() << " processes in " << step << " steps, "
              << sim.scheduler->stats().num_preemptions << " preemptions (" << sim.scheduler->stats().num_swap_preemptions
              << " swap), " << num_cached << " prompt tokens from the prefix cache\n";
  }
}

TEST(KvMemoryModelTest, ASharedPromptIsReusedWithinATenantOnly) {
  KvSim sim(64, 0, NewFcfsPolicy());
  const ProcessId a = sim.Submit(Prompt(40, 100), 4, 0, "acme");
  while (!sim.scheduler->LiveProcesses().empty()) sim.Step();
  const ProcessId b = sim.Submit(Prompt(40, 100), 4, 0, "acme");
  const ProcessId c = sim.Submit(Prompt(40, 100), 4, 0, "other");
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.batch.size(), 2u);
  EXPECT_EQ(plan.batch[0].id, b);
  EXPECT_EQ(plan.batch[0].first_token_idx, 32u);  // two full blocks of a's prompt
  EXPECT_EQ(plan.batch[1].id, c);
  EXPECT_EQ(plan.batch[1].first_token_idx, 0u);  // another tenant's salt: no hit
  EXPECT_EQ(sim.scheduler->Find(b)->accounting().num_prefix_cached_tokens, 32);
  EXPECT_EQ(sim.Ended(a)->accounting().num_prefix_cached_tokens, 0);
}

TEST(KvMemoryModelTest, APromptIsReusedUnderTheSameAdapterOnly) {
  auto lora = [](std::string key) {
    auto w = std::make_shared<arch::LoraWeights>();
    w->name = key;
    w->cache_key = key;
    return w;
  };
  const auto facts = lora("facts@sha256:1 x1");
  KvSim sim(64, 0, NewFcfsPolicy());
  const ProcessId a = sim.Submit(Prompt(40, 100), 4, 0, "acme", facts);
  while (!sim.scheduler->LiveProcesses().empty()) sim.Step();
  const ProcessId same = sim.Submit(Prompt(40, 100), 4, 0, "acme", lora("facts@sha256:1 x1"));
  const ProcessId other = sim.Submit(Prompt(40, 100), 4, 0, "acme", lora("style@sha256:2 x1"));
  const ProcessId scaled = sim.Submit(Prompt(40, 100), 4, 0, "acme", lora("facts@sha256:1 x0.5"));
  const ProcessId base = sim.Submit(Prompt(40, 100), 4, 0, "acme");
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.batch.size(), 4u);
  EXPECT_EQ(plan.batch[0].id, same);
  EXPECT_EQ(plan.batch[0].first_token_idx, 32u);  // the same adapter's blocks
  EXPECT_EQ(plan.batch[1].id, other);
  EXPECT_EQ(plan.batch[1].first_token_idx, 0u);  // another adapter: no hit
  EXPECT_EQ(plan.batch[2].id, scaled);
  EXPECT_EQ(plan.batch[2].first_token_idx, 0u);  // another scale: no hit
  EXPECT_EQ(plan.batch[3].id, base);
  EXPECT_EQ(plan.batch[3].first_token_idx, 0u);  // the base model: no hit
  EXPECT_EQ(sim.Ended(a)->accounting().num_prefix_cached_tokens, 0);
}

TEST(KvMemoryModelTest, SwapPreemptionOnRealKvMemoryResumesWithoutRecompute) {
  SchedulerOptions o;
  o.max_running = 1;
  o.preemption.min_tokens_before_preempt = 0;
  o.preemption.costs = PreemptionCosts{.swap_seconds_per_byte = 1e-12, .recompute_seconds_per_token = 1e-3};
  KvSim sim(16, 16, NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), o);
  const ProcessId low = sim.Submit(Prompt(30, 1), 20, 0);
  for (int i = 0; i < 5; ++i) sim.Step();
  const KvMemoryModel::Holding before = sim.model->HoldingOf(low);
  EXPECT_GT(before.resident_blocks, 0u);
  EXPECT_EQ(before.swapped_blocks, 0u);
  sim.Submit(Prompt(10, 500), 5, 5);
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.preempted.size(), 1u);
  EXPECT_EQ(plan.preempted[0].mode, PreemptMode::kSwap);
  EXPECT_TRUE(*sim.kv->IsSwappedOut(*sim.model->SequenceOf(low)));
  const KvMemoryModel::Holding swapped = sim.model->HoldingOf(low);  // what the process table shows
  EXPECT_EQ(swapped.resident_blocks, 0u);
  EXPECT_EQ(swapped.swapped_blocks, before.resident_blocks);
  while (!sim.scheduler->LiveProcesses().empty()) sim.Step();
  const Process* p = sim.Ended(low);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->accounting().num_computed_tokens, 30 + 20 - 1);
  EXPECT_EQ(sim.kv->Stats().swapped_blocks, 0u);
  EXPECT_EQ(sim.model->HoldingOf(low).resident_blocks + sim.model->HoldingOf(low).swapped_blocks, 0u);
}

TEST(KvMemoryModelTest, AWindowBoundsWhatAProcessNeedsHoldsAndSwaps) {
  SchedulerOptions o;
  o.max_running = 1;
  o.max_prefill_chunk_tokens = 16;
  o.preemption.min_tokens_before_preempt = 0;
  o.preemption.costs = PreemptionCosts{.swap_seconds_per_byte = 1e-12, .recompute_seconds_per_token = 1e-3};
  // Window 20, 16-token blocks: 19 positions kept plus a chunk of 16 touch at most 4 blocks.
  KvSim sim(6, 16, NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), o, 20);
  EXPECT_EQ(sim.model->PeakBlocks(1000, 16), 4u);
  EXPECT_EQ(sim.model->PeakBlocks(1000, 1), 3u);    // 20 positions: 3 blocks at worst
  EXPECT_EQ(sim.model->PeakBlocks(10, 16), 1u);     // shorter than the window: all of it
  KvSim global(6, 0, NewFcfsPolicy(), o);
  EXPECT_EQ(global.model->PeakBlocks(1000, 16), 63u);
  // 200 + 40 tokens would need 15 blocks without the window; the pool has 6.
  const ProcessId low = sim.Submit(Prompt(200, 1), 40, 0);
  for (int i = 0; i < 20; ++i) {
    sim.Step();
    EXPECT_LE(sim.model->HoldingOf(low).resident_blocks, 4u);
  }
  const KvMemoryModel::Holding before = sim.model->HoldingOf(low);
  EXPECT_GT(before.resident_blocks, 0u);
  EXPECT_GT(*sim.kv->NumDropped(*sim.model->SequenceOf(low)), 0u);
  sim.Submit(Prompt(10, 500), 5, 5);
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.preempted.size(), 1u);
  EXPECT_EQ(plan.preempted[0].mode, PreemptMode::kSwap);
  EXPECT_EQ(sim.model->HoldingOf(low).swapped_blocks, before.resident_blocks);  // only the window
  while (!sim.scheduler->LiveProcesses().empty()) sim.Step();
  const Process* p = sim.Ended(low);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->accounting().num_computed_tokens, 200 + 40 - 1);
  EXPECT_EQ(sim.kv->Stats().used_blocks, 0u);
}

}  // namespace
}  // namespace llmasos::kernel
