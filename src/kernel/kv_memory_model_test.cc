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

// The scheduler's MemoryModel over a KvMemoryModel, checking the accounting the scheduler
// relies on at every call: Grow succeeds whenever BlocksToGrow fits the free blocks and never
// takes more than it said; Release and SwapOut free exactly NumBlocksHeld; SwapOut takes
// exactly SwapOutBytes of swap. A model that under-counts would let the scheduler over-commit
// the pool; one that over-counts would strand memory.
class CheckedMemoryModel : public MemoryModel {
 public:
  CheckedMemoryModel(KvMemoryModel* inner, size_t block_tokens) : inner_(inner), block_tokens_(block_tokens) {}

  size_t NumTotalBlocks() const override { return inner_->NumTotalBlocks(); }
  size_t NumFreeBlocks() const override { return inner_->NumFreeBlocks(); }
  size_t BlocksForTokens(size_t n) const override { return inner_->BlocksForTokens(n); }
  size_t PeakBlocks(size_t n, size_t chunk) const override { return inner_->PeakBlocks(n, chunk); }
  size_t BlocksToGrow(const Process& p, size_t n) const override {
    const size_t need = inner_->BlocksToGrow(p, n);
    if (n > 0) {
      EXPECT_LE(inner_->BlocksToGrow(p, n - 1), need) << "not monotonic";
    }
    return need;
  }
  size_t NumBlocksHeld(const Process& p) const override { return inner_->NumBlocksHeld(p); }
  StatusOr<size_t> Grow(const Process& p, size_t n) override {
    const size_t free_before = inner_->NumFreeBlocks();
    const size_t need = inner_->BlocksToGrow(p, n);
    StatusOr<size_t> r = inner_->Grow(p, n);
    if (need <= free_before) {
      EXPECT_TRUE(r.ok()) << r.status().ToString();
    }
    if (r.ok()) {
      // Prefix-cache hits take blocks without allocating them (and may match more than
      // num_tokens): beyond those, Grow allocates no more than it said.
      const size_t hit_pages = inner_->num_groups() * (*r / block_tokens_);
      EXPECT_LE(free_before - inner_->NumFreeBlocks(), need + hit_pages) << "Grow took more than BlocksToGrow";
      EXPECT_EQ(inner_->BlocksToGrow(p, n), 0u);
    }
    Check();
    return r;
  }
  void Release(const Process& p) override {
    const size_t free_before = inner_->NumFreeBlocks();
    const size_t held = inner_->NumBlocksHeld(p);
    inner_->Release(p);
    EXPECT_EQ(inner_->NumFreeBlocks() - free_before, held);
    Check();
  }
  Status Fork(const Process& parent, const Process& child) override {
    const size_t free_before = inner_->NumFreeBlocks();
    const Status st = inner_->Fork(parent, child);
    EXPECT_EQ(inner_->NumFreeBlocks(), free_before) << "a fork allocates nothing";
    Check();
    return st;
  }
  size_t SwapOutBytes(const Process& p) const override { return inner_->SwapOutBytes(p); }
  size_t NumFreeSwapBytes() const override { return inner_->NumFreeSwapBytes(); }
  Status SwapOut(const Process& p) override {
    const size_t free_before = inner_->NumFreeBlocks();
    const size_t swap_before = inner_->NumFreeSwapBytes();
    const size_t held = inner_->NumBlocksHeld(p);
    const size_t bytes = inner_->SwapOutBytes(p);
    const Status st = inner_->SwapOut(p);
    if (st.ok()) {
      EXPECT_EQ(inner_->NumFreeBlocks() - free_before, held);
      EXPECT_EQ(swap_before - inner_->NumFreeSwapBytes(), bytes);
      EXPECT_EQ(inner_->NumBlocksHeld(p), 0u);
    } else {
      EXPECT_EQ(inner_->NumFreeBlocks(), free_before) << "a failed SwapOut changed the pool";
    }
    Check();
    return st;
  }

 private:
  void Check() const {
    const Status st = inner_->CheckInvariants();
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  KvMemoryModel* inner_;
  size_t block_tokens_;
};

struct KvSim {
  // window_tokens > 0: a model whose every layer slides (KvMemoryModel's window).
  KvSim(size_t num_blocks, size_t num_swap_blocks, std::unique_ptr<SchedulerPolicy> policy,
        SchedulerOptions options = {}, size_t window_tokens = 0)
      : KvSim(num_blocks, num_swap_blocks, std::move(policy), options, std::vector<size_t>{window_tokens}) {}
  // Layer groups with these windows (0: a global group); a block is a page of one group.
  KvSim(size_t num_blocks, size_t num_swap_blocks, std::unique_ptr<SchedulerPolicy> policy,
        SchedulerOptions options, std::vector<size_t> group_windows) {
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
    model = std::make_unique<KvMemoryModel>(kv.get(), false, std::move(group_windows));
    checked = std::make_unique<CheckedMemoryModel>(model.get(), kv->block_tokens());
    scheduler = std::move(Scheduler::Create(options, std::move(policy), checked.get(), &clock)).value();
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
      const std::span<const SequenceId> seqs = *model->SequencesOf(e.id);
      for (const SequenceId seq : seqs) {
        EXPECT_GE(*kv->Length(seq), e.first_token_idx + e.num_tokens);
      }
      EXPECT_TRUE(model->CommitTokens(*p, p->tokens().first(e.first_token_idx + e.num_tokens)).ok());
      EXPECT_TRUE(model->ReleaseOutOfWindow(*p, e.first_token_idx + e.num_tokens).ok());
      if (e.samples) sampled.push_back(FakeToken(e.id, e.first_token_idx + e.num_tokens));
    }
    clock.Advance(std::chrono::milliseconds(10));
    EXPECT_TRUE(scheduler->CompleteStep(plan, sampled).ok());
    Status inv = model->CheckInvariants();
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
  std::unique_ptr<CheckedMemoryModel> checked;
  std::unique_ptr<Scheduler> scheduler;
  std::vector<std::unique_ptr<Process>> ended;
};

std::vector<TokenId> Prompt(size_t n, TokenId base) {
  std::vector<TokenId> out;
  for (size_t i = 0; i < n; ++i) out.push_back(base + static_cast<TokenId>(i));
  return out;
}

// The randomized workload below, on a pool of `num_blocks` pages laid out in groups with these
// windows ({0}: a model without groups or windows).
void RunRandomizedWorkload(size_t num_blocks, size_t num_swap_blocks, const std::vector<size_t>& group_windows) {
  for (const char* name : {"fcfs", "sjf", "rr", "priority", "fair"}) {
    SchedulerOptions o;
    o.max_batch_tokens = 48;
    o.max_prefill_chunk_tokens = 32;
    o.max_running = 6;
    KvSim sim(num_blocks, num_swap_blocks, std::move(NewPolicyByName(name)).value(), o, group_windows);
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

TEST(KvMemoryModelTest, EveryPolicyRunsARandomizedWorkloadOnRealKvMemory) {
  RunRandomizedWorkload(/*num_blocks=*/24, /*swap=*/16, {0});
}

TEST(KvMemoryModelTest, EveryPolicyRunsARandomizedWorkloadOnLayerGroups) {
  // One global group and two sliding groups of window 20 (a Gemma-like mix), in a pool of 48
  // pages: the accounting over groups never over-commits it (CheckedMemoryModel).
  RunRandomizedWorkload(/*num_blocks=*/48, /*swap=*/24, {0, 20, 20});
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

TEST(KvMemoryModelTest, LayerGroupsCountPagesOverGroupsAndSlideOnlyWhereTheirLayersDo) {
  SchedulerOptions o;
  o.max_running = 1;
  o.max_prefill_chunk_tokens = 16;
  o.preemption.min_tokens_before_preempt = 0;
  o.preemption.costs = PreemptionCosts{.swap_seconds_per_byte = 1e-12, .recompute_seconds_per_token = 1e-3};
  // One global group and two sliding groups of window 20, 16-token pages.
  KvSim sim(64, 48, NewPriorityPolicy(PriorityOptions{.aging_per_second = 0}), o, {0, 20, 20});
  EXPECT_EQ(sim.model->num_groups(), 3u);
  EXPECT_EQ(sim.model->BlocksForTokens(100), 21u);     // 7 pages in each group
  EXPECT_EQ(sim.model->PeakBlocks(1000, 16), 63u + 4 + 4);  // global: all; sliding: the window
  EXPECT_EQ(sim.model->PeakBlocks(10, 16), 3u);
  const ProcessId low = sim.Submit(Prompt(200, 1), 40, 0);
  for (int i = 0; i < 20; ++i) {
    sim.Step();
    const size_t length = *sim.kv->Length(*sim.model->SequenceOf(low));
    // The global group holds every position; each sliding group at most 4 pages.
    EXPECT_LE(sim.model->HoldingOf(low).resident_blocks, (length + 15) / 16 + 2 * 4);
  }
  std::span<const SequenceId> seqs = *sim.model->SequencesOf(low);
  ASSERT_EQ(seqs.size(), 3u);
  EXPECT_EQ(*sim.kv->NumDropped(seqs[0]), 0u);
  EXPECT_GT(*sim.kv->NumDropped(seqs[1]), 0u);
  EXPECT_EQ(*sim.kv->NumDropped(seqs[1]), *sim.kv->NumDropped(seqs[2]));
  const KvMemoryModel::Holding before = sim.model->HoldingOf(low);
  sim.Submit(Prompt(10, 500), 5, 5);
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.preempted.size(), 1u);
  EXPECT_EQ(plan.preempted[0].mode, PreemptMode::kSwap);
  seqs = *sim.model->SequencesOf(low);
  for (const SequenceId seq : seqs) EXPECT_TRUE(*sim.kv->IsSwappedOut(seq));
  EXPECT_EQ(sim.model->HoldingOf(low).swapped_blocks, before.resident_blocks);
  while (!sim.scheduler->LiveProcesses().empty()) sim.Step();
  const Process* p = sim.Ended(low);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->accounting().num_computed_tokens, 200 + 40 - 1);
  EXPECT_EQ(sim.kv->Stats().used_blocks, 0u);
  EXPECT_EQ(sim.kv->Stats().num_sequences, 0u);
}

TEST(KvMemoryModelTest, APromptReusesOnlyThePrefixEveryLayerGroupStillHolds) {
  SchedulerOptions o;
  o.max_prefill_chunk_tokens = 32;
  KvSim sim(64, 0, NewFcfsPolicy(), o, {0, 20});
  const ProcessId a = sim.Submit(Prompt(64, 100), 4);
  while (!sim.scheduler->LiveProcesses().empty()) sim.Step();
  // Every group registered its full blocks before the sliding one dropped them.
  const ProcessId b = sim.Submit(Prompt(64, 100), 4);
  StepPlan plan = sim.Step();
  ASSERT_EQ(plan.batch.size(), 1u);
  EXPECT_EQ(plan.batch[0].first_token_idx, 48u);  // 63 tokens looked up: three full blocks
  EXPECT_EQ(sim.kv->Stats().prefix_lookups, 2u);  // one lookup per process, not per group
  while (!sim.scheduler->LiveProcesses().empty()) sim.Step();
  EXPECT_EQ(sim.Ended(b)->accounting().num_prefix_cached_tokens, 48);
  EXPECT_EQ(sim.Ended(a)->accounting().num_prefix_cached_tokens, 0);

  // Again in a fresh pool, with one page evicted after a: the least recently used cached page
  // is the sliding group's first, dropped while a ran. The global group still holds the whole
  // prefix, but no group reuses any of it.
  KvSim again(64, 0, NewFcfsPolicy(), o, {0, 20});
  again.Submit(Prompt(64, 100), 4);
  while (!again.scheduler->LiveProcesses().empty()) again.Step();
  EXPECT_EQ(again.kv->Stats().cached_blocks, 8u);  // 4 full blocks in each group
  ASSERT_EQ(again.kv->EvictCached(1), 1u);
  EXPECT_EQ(again.kv->CachedPrefixTokens(0, Prompt(64, 100)), 0u);  // salts are per group
  const ProcessId c = again.Submit(Prompt(64, 100), 4);
  plan = again.Step();
  ASSERT_EQ(plan.batch.size(), 1u);
  EXPECT_EQ(plan.batch[0].id, c);
  EXPECT_EQ(plan.batch[0].first_token_idx, 0u);
  while (!again.scheduler->LiveProcesses().empty()) again.Step();
  EXPECT_EQ(again.Ended(c)->accounting().num_prefix_cached_tokens, 0);
}

// Random Grow, commit-and-slide steps, SwapOut, Fork, Release and evictions, straight on the
// memory model (no scheduler to keep it on safe paths), on one group and on layer groups:
// every call goes through CheckedMemoryModel, so the accounting must hold on every path,
// failed ones included, and the invariants after each.
TEST(KvMemoryModelTest, RandomOperationsOnLayerGroupsKeepTheAccounting) {
  const std::vector<std::vector<size_t>> layouts = {{0}, {12}, {0, 12, 12}, {0, 0, 12}};
  for (const std::vector<size_t>& windows : layouts) {
    SCOPED_TRACE("groups " + std::to_string(windows.size()) + ", first sliding window " +
                 std::to_string(*std::max_element(windows.begin(), windows.end())));
    KvMemoryOptions kv_options;
    kv_options.num_layers = 1;
    kv_options.kv_dim = 4;
    kv_options.block_tokens = 4;
    const size_t page_bytes = 2 * 4 * 4 * sizeof(float);
    kv_options.budget_bytes = 48 * page_bytes;
    kv_options.swap_budget_bytes = 40 * page_bytes;
    auto kv = std::move(KvMemory::Create(kv_options)).value();
    KvMemoryModel model(kv.get(), false, windows);
    CheckedMemoryModel checked(&model, 4);
    SimulatedClock clock;
    std::mt19937 rng(11);
    std::vector<std::unique_ptr<Process>> live;
    std::vector<size_t> lengths;  // KV positions each live process asked for
    ProcessId next_id = 1;
    auto spawn = [&](std::vector<TokenId> prompt) {
      ProcessSpec spec;
      spec.prompt = std::move(prompt);
      spec.limits.max_tokens = 1;
      spec.tenant = "t";
      live.push_back(std::move(Process::Create(next_id++, std::move(spec), clock.Now())).value());
      lengths.push_back(0);
    };
    size_t grows = 0, swaps = 0, forks = 0;
    for (int op = 0; op < 3000; ++op) {
      if (live.size() < 6 && rng() % 4 == 0) {
        // Half share a 24-token prefix, so prefix hits and shared pages take part.
        std::vector<TokenId> prompt = rng() % 2 ? Prompt(24, 1000) : Prompt(3, 5000 + op);
        for (size_t i = 0, n = 4 + rng() % 40; i < n; ++i) prompt.push_back(static_cast<TokenId>(rng() % 50));
        spawn(std::move(prompt));
        continue;
      }
      if (live.empty()) continue;
      const size_t i = rng() % live.size();
      const Process& p = *live[i];
      switch (rng() % 6) {
        case 0:
        case 1: {  // one step: grow by a chunk, write, register, slide
          const size_t target = std::min(p.num_tokens(), lengths[i] + 1 + rng() % 9);
          StatusOr<size_t> r = checked.Grow(p, target);
          if (!r.ok()) break;
          ++grows;
          lengths[i] = std::max({lengths[i], target, *r});
          ASSERT_TRUE(model.CommitTokens(p, p.tokens().first(lengths[i])).ok());
          ASSERT_TRUE(model.ReleaseOutOfWindow(p, lengths[i]).ok());
          break;
        }
        case 2:
          if (model.SequencesOf(p.id()).ok() && checked.NumBlocksHeld(p) > 0 && checked.SwapOut(p).ok()) ++swaps;
          break;
        case 3: {
          if (!model.SequencesOf(p.id()).ok() || checked.NumBlocksHeld(p) == 0 || live.size() >= 8) break;
          spawn(std::vector<TokenId>(p.tokens().begin(), p.tokens().end()));
          const Status st = checked.Fork(*live[i], *live.back());
          if (!st.ok()) {
            live.pop_back();
            lengths.pop_back();
            break;
          }
          lengths.back() = lengths[i];
          ++forks;
          break;
        }
        case 4:
          checked.Release(p);
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
          lengths.erase(lengths.begin() + static_cast<std::ptrdiff_t>(i));
          break;
        case 5:
          kv->EvictCached(rng() % 3);
          break;
      }
      ASSERT_TRUE(model.CheckInvariants().ok()) << model.CheckInvariants().ToString();
      if (::testing::Test::HasFailure()) return;
    }
    for (const auto& p : live) checked.Release(*p);
    EXPECT_EQ(kv->Stats().used_blocks, 0u);
    EXPECT_EQ(kv->Stats().swapped_blocks, 0u);
    EXPECT_EQ(kv->Stats().num_sequences, 0u);
    EXPECT_GT(grows, 100u);
    EXPECT_GT(swaps, 10u);
    EXPECT_GT(forks, 10u);
  }
}

}  // namespace
}  // namespace llmasos::kernel
