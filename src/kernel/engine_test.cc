// The engine end to end on a tiny model: whatever the policy, the batching, the preemptions
// (swap or recompute) and the prefix-cache hits, every process's greedy tokens equal those of
// the same prompt run alone through arch::Context.
#include "kernel/engine.h"

#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <set>
#include <span>
#include <string>
#include <utility>

#include "kernel/tiny_engine_test_util.h"

namespace llmasos::kernel {
namespace {

class EngineTest : public TinyEngineTest {
 protected:
  // Runs the engine dry; returns each ended process by id.
  std::map<ProcessId, std::unique_ptr<Process>> RunAll(Engine& e) {
    std::map<ProcessId, std::unique_ptr<Process>> ended;
    for (int guard = 0; e.HasWork() && guard < 10000; ++guard) {
      auto r = e.Step();
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      if (!r.ok()) break;
      for (auto& p : e.TakeEnded()) ended[p.process->id()] = std::move(p.process);
    }
    for (auto& p : e.TakeEnded()) ended[p.process->id()] = std::move(p.process);
    EXPECT_FALSE(e.HasWork());
    return ended;
  }

  SimulatedClock clock_;
};

struct Mix {
  std::vector<std::vector<TokenId>> prompts;
  std::vector<int32_t> max_tokens;
};

TEST_F(EngineTest, BatchedGreedyEqualsAloneUnderEveryPolicy) {
  const std::vector<TokenId> system = Prompt(20, 99);  // a shared prefix of 20 tokens
  Mix mix;
  for (size_t i = 0; i < 7; ++i) {
    std::vector<TokenId> p = i % 2 == 0 ? system : std::vector<TokenId>{};
    for (TokenId t : Prompt(3 + 9 * i, static_cast<uint32_t>(i))) p.push_back(t);
    mix.prompts.push_back(p);
    mix.max_tokens.push_back(static_cast<int32_t>(4 + 3 * i));
  }
  std::vector<std::vector<TokenId>> want;
  for (size_t i = 0; i < mix.prompts.size(); ++i) want.push_back(Alone(mix.prompts[i], mix.max_tokens[i]));

  for (const char* policy : {"fcfs", "sjf", "rr", "priority", "fair"}) {
    EngineOptions o;
    o.policy = policy;
    o.kv_block_tokens = 4;
    o.scheduler.max_batch_tokens = 24;  // long prompts split into chunks beside decodes
    o.scheduler.max_prefill_chunk_tokens = 16;
    auto e = Engine::Create(*model_, *tokenizer_, pool_, o, &clock_);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    std::vector<ProcessId> ids;
    for (size_t i = 0; i < mix.prompts.size(); ++i) {
      ids.push_back(*(*e)->Submit(Greedy(mix.prompts[i], mix.max_tokens[i], static_cast<int32_t>(i % 3),
                                         i % 2 ? "a" : "b")));
    }
    auto ended = RunAll(**e);
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_TRUE(ended.count(ids[i])) << policy << " process " << i;
      const Process& p = *ended[ids[i]];
      EXPECT_EQ(std::vector<TokenId>(p.generated().begin(), p.generated().end()), want[i])
          << policy << " process " << i;
      EXPECT_EQ(p.state(), ProcessState::kFinished) << EndReasonName(p.end_reason());
    }
    EXPECT_TRUE((*e)->kv().CheckInvariants().ok());
  }
}

// Every policy, once swapping and once recomputing, with a KV budget (24 blocks of 4 tokens
// for five processes of 34 to 54 tokens) and 3 batch slots small enough that every run
// preempts: each process's tokens still equal its tokens alone. Under fcfs, sjf, rr and fair a
// running process that cannot grow evicts the lowest-ranked one; under priority the later,
// higher-priority arrivals also evict on admission.
TEST_F(EngineTest, PreemptedProcessesResumeExactlyUnderEveryPolicy) {
  std::vector<std::vector<TokenId>> prompts;
  for (uint32_t i = 0; i < 5; ++i) prompts.push_back(Prompt(10 + 5 * i, 200 + i));
  std::vector<std::vector<TokenId>> want;
  for (const auto& p : prompts) want.push_back(Alone(p, 24));
  const arch::ModelConfig& c = model_->config();
  const EngineOptions defaults;  // the default (F16) KV cache: the budget is in its blocks
  const size_t block_bytes =
      *KvBlockBytes(c.num_layers, c.kv_dim(), 4, defaults.cache_type_k, defaults.cache_type_v);
  for (const char* policy : {"fcfs", "sjf", "rr", "priority", "fair"}) {
    for (const bool swap : {false, true}) {
      SCOPED_TRACE(std::string(policy) + (swap ? ", swap" : ", recompute"));
      EngineOptions o;
      o.policy = policy;
      o.kv_block_tokens = 4;
      o.kv_budget_bytes = 24 * block_bytes;
      o.swap_budget_bytes = swap ? 64 * block_bytes : 0;  // 0: every preemption recomputes
      o.scheduler.preemption.costs.swap_seconds_per_byte = 0;        // swap whenever swap space allows
      o.scheduler.max_running = 3;
      o.scheduler.preemption.min_tokens_before_preempt = 2;
      auto e = Engine::Create(*model_, *tokenizer_, pool_, o, &clock_);
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      std::vector<ProcessId> ids;
      for (size_t i = 0; i < prompts.size(); ++i) {
        // Later arrivals have higher priority (what the priority policy acts on).
        ids.push_back(*(*e)->Submit(Greedy(prompts[i], 24, static_cast<int32_t>(i), i % 2 ? "a" : "b")));
        for (int s = 0; s < 3; ++s) ASSERT_TRUE((*e)->Step().ok());
      }
      auto ended = RunAll(**e);
      int64_t preemptions = 0, swaps = 0;
      for (size_t i = 0; i < ids.size(); ++i) {
        ASSERT_TRUE(ended.count(ids[i])) << "process " << i;
        const Process& p = *ended.at(ids[i]);
        EXPECT_EQ(std::vector<TokenId>(p.generated().begin(), p.generated().end()), want[i])
            << "process " << i;
        EXPECT_EQ(p.state(), ProcessState::kFinished) << EndReasonName(p.end_reason());
        preemptions += p.accounting().num_preemptions;
        swaps += p.accounting().num_swap_preemptions;
      }
      std::cout << "[ " << policy << (swap ? " swap" : " recompute") << " ] preemptions " << preemptions
                << " (" << swaps << " swap)\n";
      EXPECT_GT(preemptions, 0) << "the budget did not force a preemption";
      if (swap) {
        EXPECT_GT(swaps, 0) << "swap space given but never used";
      } else {
        EXPECT_EQ(swaps, 0);
      }
      EXPECT_TRUE((*e)->kv().CheckInvariants().ok());
    }
  }
}

TEST_F(EngineTest, SharedPrefixIsReusedWithinATenantOnly) {
  const std::vector<TokenId> system = Prompt(32, 7);
  std::vector<TokenId> a = system, b = system, c = system;
  a.push_back(5);
  b.push_back(6);
  c.push_back(7);
  EngineOptions o;
  o.kv_block_tokens = 8;
  auto e = *Engine::Create(*model_, *tokenizer_, pool_, o, &clock_);
  const ProcessId ia = *e->Submit(Greedy(a, 4, 0, "t1"));
  auto first = RunAll(*e);
  const ProcessId ib = *e->Submit(Greedy(b, 4, 0, "t1"));
  const ProcessId ic = *e->Submit(Greedy(c, 4, 0, "t2"));
  auto later = RunAll(*e);
  EXPECT_EQ(first.at(ia)->accounting().num_prefix_cached_tokens, 0);
  EXPECT_EQ(later.at(ib)->accounting().num_prefix_cached_tokens, 32);  // 4 full blocks
  EXPECT_EQ(later.at(ic)->accounting().num_prefix_cached_tokens, 0);   // other tenant
  const Process& pb = *later.at(ib);
  EXPECT_EQ(std::vector<TokenId>(pb.generated().begin(), pb.generated().end()), Alone(b, 4));
}

TEST_F(EngineTest, RefusesBadSubmissions) {
  auto e = *Engine::Create(*model_, *tokenizer_, pool_, EngineOptions{}, &clock_);
  EXPECT_FALSE(e->Submit(Greedy({1, 999999}, 4)).ok());  // outside the vocabulary
  EXPECT_FALSE(e->Submit(Greedy(Prompt(250, 1), 100)).ok());  // beyond the context of 256
  ProcessSpec bad = Greedy({1, 2}, 4);
  bad.sampling.top_p = 0;
  EXPECT_FALSE(e->Submit(bad).ok());
  EngineOptions unknown;
  unknown.policy = "lottery";
  EXPECT_FALSE(Engine::Create(*model_, *tokenizer_, pool_, unknown, &clock_).ok());
}

TEST_F(EngineTest, CancelEndsAProcessAndFreesItsMemory) {
  auto e = *Engine::Create(*model_, *tokenizer_, pool_, EngineOptions{}, &clock_);
  const ProcessId id = *e->Submit(Greedy(Prompt(40, 3), 50));
  ASSERT_TRUE(e->Step().ok());
  ASSERT_TRUE(e->Step().ok());
  EXPECT_GT(e->kv().Stats().used_blocks, 0u);
  ASSERT_TRUE(e->Cancel(id).ok());
  auto ended = e->TakeEnded();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].process->state(), ProcessState::kCancelled);
  EXPECT_EQ(ended[0].process->end_reason(), EndReason::kCancelled);
  EXPECT_EQ(e->kv().Stats().used_blocks, 0u);
  EXPECT_FALSE(e->HasWork());
}

// Under the priority policy, a step asked to stop for an arrival that outranks its batch
// (InterruptFor, here from inside the step, where an arrival on another thread would come in)
// is abandoned: no token, no progress; the next steps produce exactly the tokens an
// uninterrupted run gives. Between steps, and for an arrival that does not outrank the batch,
// nothing is asked.
TEST_F(EngineTest, AnInterruptedStepIsAbandonedAndTheRunContinuesExactly) {
  const std::vector<TokenId> a = Prompt(10, 31), b = Prompt(7, 32);
  const std::vector<TokenId> want_a = Alone(a, 6), want_b = Alone(b, 5);
  Engine* engine = nullptr;
  int step = 0;
  std::vector<bool> asked;
  EngineOptions o;
  o.policy = "priority";
  o.policy_options.priority.aging_per_second = 0;
  o.inject_step_fault = [&](std::span<const BatchEntry>) {
    ++step;
    // Step 2 (the first decodes): an arrival of priority 1 does not outrank the batch's
    // priority-1 process; one of 2 does. Step 4 is interrupted twice in a row.
    if (step == 2) {
      asked.push_back(engine->InterruptFor(1));
      asked.push_back(engine->InterruptFor(2));
    }
    if (step == 4 || step == 5) asked.push_back(engine->InterruptFor(7));
    return OkStatus();
  };
  auto e = *Engine::Create(*model_, *tokenizer_, pool_, o, &clock_);
  engine = e.get();
  EXPECT_FALSE(e->InterruptFor(100));  // no step in flight
  const ProcessId ia = *e->Submit(Greedy(a, 6, 1));
  const ProcessId ib = *e->Submit(Greedy(b, 5, 0));
  std::vector<bool> interrupted;
  std::map<ProcessId, const Process*> done;
  std::vector<EndedProcess> ended;
  while (e->HasWork()) {
    StatusOr<StepReport> r = e->Step();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    interrupted.push_back(r->interrupted);
    if (r->interrupted) {
      EXPECT_EQ(r->num_sampled, 0u);
    }
    for (EndedProcess& x : e->TakeEnded()) ended.push_back(std::move(x));
  }
  EXPECT_EQ(asked, (std::vector<bool>{false, true, true, true}));
  ASSERT_GE(interrupted.size(), 5u);
  EXPECT_EQ(std::vector<bool>(interrupted.begin(), interrupted.begin() + 5),
            (std::vector<bool>{false, true, false, true, true}));
  EXPECT_EQ(e->scheduler().stats().num_abandoned_steps, 3u);
  ASSERT_EQ(ended.size(), 2u);
  for (const EndedProcess& x : ended) {
    const Process& p = *x.process;
    EXPECT_EQ(p.state(), ProcessState::kFinished);
    const std::vector<TokenId> got(p.generated().begin(), p.generated().end());
    EXPECT_EQ(got, p.id() == ia ? want_a : want_b) << p.id();
  }
  (void)ib;
  EXPECT_EQ(e->kv().Stats().used_blocks, 0u);
  EXPECT_TRUE(e->kv().CheckInvariants().ok());
}

// A step whose forward pass fails (injected) ends the processes in it as errors, group
// followers included, and frees their blocks; a process that was not in the step, and one
// submitted after, run as they would alone.
TEST_F(EngineTest, AFailedStepEndsItsProcessesAsErrorsAndTheOthersGoOn) {
  const std::vector<TokenId> running = Prompt(10, 1), grouped = Prompt(13, 2), waiting = Prompt(9, 3),
                             later = Prompt(11, 4);
  const std::vector<TokenId> want_waiting = Alone(waiting, 6), want_later = Alone(later, 5);
  ProcessId poisoned = 0;
  int num_faults = 0;
  EngineOptions o;
  o.kv_block_tokens = 4;
  o.scheduler.max_running = 2;  // the step that fails holds `running` and the group's leader only
  o.inject_step_fault = [&](std::span<const BatchEntry> batch) {
    for (const BatchEntry& b : batch) {
      if (b.id == poisoned) {
        ++num_faults;
        return InternalError("injected fault");
      }
    }
    return OkStatus();
  };
  auto e = *Engine::Create(*model_, *tokenizer_, pool_, o, &clock_);
  const ProcessId running_id = *e->Submit(Greedy(running, 12));
  ASSERT_TRUE(e->Step().ok());  // its prefill: it holds blocks and decodes in the next step
  const std::vector<ProcessId> group = *e->SubmitGroup(Greedy(grouped, 8), 2);
  poisoned = group[0];
  const ProcessId waiting_id = *e->Submit(Greedy(waiting, 6));

  StatusOr<StepReport> failed = e->Step();
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kInternal);
  EXPECT_EQ(num_faults, 1);
  std::vector<EndedProcess> ended = e->TakeEnded();
  std::set<ProcessId> ended_ids;
  for (const EndedProcess& x : ended) {
    ended_ids.insert(x.process->id());
    EXPECT_EQ(x.process->state(), ProcessState::kFailed) << x.process->id();
    EXPECT_EQ(x.process->end_reason(), EndReason::kError) << x.process->id();
    EXPECT_NE(x.process->end_message().find("injected fault"), std::string::npos) << x.process->end_message();
  }
  EXPECT_EQ(ended_ids, (std::set<ProcessId>{running_id, group[0], group[1]}));
  // The waiting process was admitted to no step: nothing holds a block now.
  EXPECT_EQ(e->kv().Stats().used_blocks, 0u);
  EXPECT_TRUE(e->kv().CheckInvariants().ok());
  ASSERT_TRUE(e->HasWork());

  const ProcessId later_id = *e->Submit(Greedy(later, 5));
  auto rest = RunAll(*e);
  ASSERT_EQ(rest.size(), 2u);
  for (const auto& [id, want] : {std::pair{waiting_id, want_waiting}, std::pair{later_id, want_later}}) {
    ASSERT_TRUE(rest.count(id)) << id;
    const Process& p = *rest[id];
    EXPECT_EQ(p.state(), ProcessState::kFinished) << EndReasonName(p.end_reason());
    EXPECT_EQ(std::vector<TokenId>(p.generated().begin(), p.generated().end()), want) << id;
  }
  EXPECT_EQ(num_faults, 1);
  EXPECT_EQ(e->kv().Stats().used_blocks, 0u);
  EXPECT_TRUE(e->kv().CheckInvariants().ok());
}

}  // namespace
}  // namespace llmasos::kernel
