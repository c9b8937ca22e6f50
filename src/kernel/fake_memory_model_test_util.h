// Test helpers: a counting MemoryModel and a simulated engine loop whose "model" produces one
// token per sampling entry, a pure function of (process id, position).
#ifndef LLMASOS_KERNEL_FAKE_MEMORY_MODEL_TEST_UTIL_H_
#define LLMASOS_KERNEL_FAKE_MEMORY_MODEL_TEST_UTIL_H_

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernel/scheduler.h"

namespace llmasos::kernel::testing {

// Blocks of `block_tokens` tokens, no sharing. Prefix hits are set per process by the test.
class FakeMemoryModel : public MemoryModel {
 public:
  FakeMemoryModel(size_t num_blocks, size_t block_tokens, size_t bytes_per_block = 1024,
                  size_t num_swap_blocks = 0)
      : num_blocks_(num_blocks), block_tokens_(block_tokens), bytes_per_block_(bytes_per_block),
        num_swap_blocks_(num_swap_blocks) {}

  size_t NumTotalBlocks() const override { return num_blocks_; }
  size_t NumFreeBlocks() const override { return num_blocks_ - num_used_; }
  size_t BlocksForTokens(size_t n) const override { return (n + block_tokens_ - 1) / block_tokens_; }
  size_t BlocksToGrow(const Process& p, size_t n) const override {
    const Entry e = EntryOf(p.id());
    const size_t want = std::max(BlocksForTokens(n), e.swapped_blocks);
    return want > e.resident_blocks ? want - e.resident_blocks : 0;
  }
  size_t NumBlocksHeld(const Process& p) const override { return EntryOf(p.id()).resident_blocks; }
  StatusOr<size_t> Grow(const Process& p, size_t n) override {
    if (BlocksToGrow(p, n) > NumFreeBlocks()) return ResourceExhaustedError("fake pool is full");
    Entry& e = entries_[p.id()];
    num_used_ += e.swapped_blocks;
    num_swap_used_ -= e.swapped_blocks;
    e.resident_blocks += e.swapped_blocks;
    e.swapped_blocks = 0;
    const size_t want = BlocksForTokens(n);
    if (want > e.resident_blocks) {
      num_used_ += want - e.resident_blocks;
      e.resident_blocks = want;
    }
    ++num_grows_;
    if (e.looked_up) return size_t{0};
    e.looked_up = true;
    auto hit = prefix_hits_.find(p.id());
    return hit == prefix_hits_.end() ? size_t{0} : hit->second;
  }
  void Release(const Process& p) override {
    auto it = entries_.find(p.id());
    if (it == entries_.end()) return;
    num_used_ -= it->second.resident_blocks;
    num_swap_used_ -= it->second.swapped_blocks;
    entries_.erase(it);
  }
  size_t SwapOutBytes(const Process& p) const override {
    return EntryOf(p.id()).resident_blocks * bytes_per_block_;
  }
  size_t NumFreeSwapBytes() const override { return (num_swap_blocks_ - num_swap_used_) * bytes_per_block_; }
  Status SwapOut(const Process& p) override {
    Entry& e = entries_[p.id()];
    if (e.resident_blocks > num_swap_blocks_ - num_swap_used_) return ResourceExhaustedError("fake swap full");
    num_swap_used_ += e.resident_blocks;
    num_used_ -= e.resident_blocks;
    e.swapped_blocks += e.resident_blocks;
    e.resident_blocks = 0;
    return OkStatus();
  }

  void SetPrefixHit(ProcessId id, size_t num_tokens) { prefix_hits_[id] = num_tokens; }
  size_t num_used_blocks() const { return num_used_; }
  size_t num_used_swap_blocks() const { return num_swap_used_; }
  size_t ResidentBlocks(ProcessId id) const { return EntryOf(id).resident_blocks; }
  size_t SwappedBlocks(ProcessId id) const { return EntryOf(id).swapped_blocks; }
  bool Holds(ProcessId id) const { return entries_.count(id) > 0; }
  // Sum over processes equals the pool counters.
  bool Consistent() const {
    size_t used = 0, swapped = 0;
    for (const auto& [id, e] : entries_) {
      used += e.resident_blocks;
      swapped += e.swapped_blocks;
    }
    return used == num_used_ && swapped == num_swap_used_ && num_used_ <= num_blocks_ &&
           num_swap_used_ <= num_swap_blocks_;
  }

 private:
  struct Entry {
    size_t resident_blocks = 0;
    size_t swapped_blocks = 0;
    bool looked_up = false;
  };
  Entry EntryOf(ProcessId id) const {
    auto it = entries_.find(id);
    return it == entries_.end() ? Entry{} : it->second;
  }

  size_t num_blocks_, block_tokens_, bytes_per_block_, num_swap_blocks_;
  size_t num_used_ = 0, num_swap_used_ = 0, num_grows_ = 0;
  std::map<ProcessId, Entry> entries_;
  std::map<ProcessId, size_t> prefix_hits_;
};

// The fake model's next token after `position` tokens of process `id`.
inline TokenId FakeToken(ProcessId id, size_t position) {
  return static_cast<TokenId>((id * 7919 + position * 104729) % 50000);
}

// A scheduler over a FakeMemoryModel and a SimulatedClock; Step() plays one engine step.
struct SimEngine {
  SimEngine(SchedulerOptions options, std::unique_ptr<SchedulerPolicy> policy, size_t num_blocks,
            size_t block_tokens = 16, size_t num_swap_blocks = 0)
      : memory(num_blocks, block_tokens, 1024, num_swap_blocks) {
    auto s = Scheduler::Create(options, std::move(policy), &memory, &clock);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    scheduler = std::move(s).value();
  }

  ProcessId Submit(size_t prompt_tokens, int32_t max_tokens, int32_t priority = 0,
                   const std::string& tenant = "default") {
    ProcessSpec spec;
    spec.tenant = tenant;
    spec.priority = priority;
    spec.limits.max_tokens = max_tokens;
    for (size_t i = 0; i < prompt_tokens; ++i) spec.prompt.push_back(static_cast<TokenId>(i % 1000 + 1));
    auto id = scheduler->Submit(std::move(spec));
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return id.ok() ? *id : 0;
  }

  StepPlan Step() {
    StepPlan plan = scheduler->Schedule();
    clock.Advance(step_time);
    std::vector<TokenId> sampled;
    for (const BatchEntry& e : plan.batch) {
      if (e.samples) sampled.push_back(FakeToken(e.id, e.first_token_idx + e.num_tokens));
    }
    Status st = scheduler->CompleteStep(plan, sampled);
    EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(memory.Consistent());
    for (auto& p : scheduler->TakeEnded()) ended.push_back(std::move(p));
    return plan;
  }

  const Process& Get(ProcessId id) const {
    const Process* p = scheduler->Find(id);
    if (p == nullptr) {
      for (const auto& e : ended) {
        if (e->id() == id) return *e;
      }
    }
    CHECK(p != nullptr) << "no process " << id;
    return *p;
  }

  SimulatedClock clock;
  FakeMemoryModel memory;
  std::unique_ptr<Scheduler> scheduler;
  std::vector<std::unique_ptr<Process>> ended;
  Duration step_time = std::chrono::milliseconds(10);
};

}  // namespace llmasos::kernel::testing

#endif  // LLMASOS_KERNEL_FAKE_MEMORY_MODEL_TEST_UTIL_H_
