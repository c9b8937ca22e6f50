// The engine thread on a tiny model: many submitters at once get exactly the tokens their
// prompts give alone; cancelling, dropping a channel and shutting down end processes and free
// their memory; the text stream honours stop strings. No test waits on a timer: each blocks on
// a channel, and a wait that would hang fails after a generous bound instead.
#include "kernel/engine_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <thread>

#include "kernel/tiny_engine_test_util.h"

namespace llmasos::kernel {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kPatience(60000);  // only a hang reaches it

class EngineThreadTest : public TinyEngineTest {
 protected:
  EngineThreadTest() : TinyEngineTest(1024) {}

  std::unique_ptr<EngineThread> Start(EngineThreadOptions o = {}) {
    o.engine.kv_block_tokens = 4;
    auto t = EngineThread::Start(*model_, *tokenizer_, pool_, o, RealClock());
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? *std::move(t) : nullptr;
  }

  // Options under which a process runs to max_tokens, whatever it samples.
  static EngineThreadOptions NeverStopsEarly() {
    EngineThreadOptions o;
    o.engine.ignore_eog = true;
    return o;
  }

  struct Collected {
    std::vector<TokenId> tokens;
    std::string text;  // token pieces and the end's held-back text
    StreamEvent end;
  };
  // Reads a single-process channel to its end event.
  static Collected Drain(Channel& ch) {
    Collected c;
    for (;;) {
      StatusOr<StreamEvent> e = ch.Next(kPatience);
      if (!e.ok()) {
        ADD_FAILURE() << "channel: " << e.status().ToString();
        return c;
      }
      c.text += e->text;
      if (e->kind == StreamEvent::Kind::kEnd) {
        c.end = *std::move(e);
        return c;
      }
      c.tokens.push_back(e->token);
    }
  }

  std::string Decode(const std::vector<TokenId>& tokens) const {
    tokenizer::IncrementalDecoder d(*tokenizer_);
    std::string s;
    for (TokenId t : tokens) {
      if (!tokenizer_->IsEog(t)) s += d.Push(t);
    }
    return s + d.Flush();
  }
};

TEST_F(EngineThreadTest, ManySubmittersGetTheTokensTheirPromptsGiveAlone) {
  constexpr size_t kThreads = 4, kPerThread = 3;
  std::vector<std::vector<TokenId>> prompts;
  std::vector<std::vector<TokenId>> want;
  for (size_t i = 0; i < kThreads * kPerThread; ++i) {
    prompts.push_back(Prompt(5 + 7 * i, static_cast<uint32_t>(300 + i)));
    want.push_back(Alone(prompts.back(), 6 + i));
  }
  EngineThreadOptions o;
  o.engine.scheduler.max_batch_tokens = 32;  // prompts split into chunks beside decodes
  o.engine.scheduler.max_prefill_chunk_tokens = 16;
  o.engine.scheduler.max_running = 5;
  auto engine = Start(o);
  ASSERT_NE(engine, nullptr);
  std::vector<Collected> got(prompts.size());
  std::vector<std::thread> submitters;
  for (size_t t = 0; t < kThreads; ++t) {
    submitters.emplace_back([&, t] {
      // Submit all of this thread's processes, then read each channel in turn.
      std::vector<std::pair<size_t, std::unique_ptr<Channel>>> mine;
      for (size_t k = 0; k < kPerThread; ++k) {
        const size_t i = t * kPerThread + k;
        auto s = engine->Submit(Greedy(prompts[i], static_cast<int32_t>(want[i].size())));
        if (!s.ok()) {
          ADD_FAILURE() << s.status().ToString();
          continue;
        }
        mine.emplace_back(i, std::move(s->channel));
      }
      for (auto& [i, ch] : mine) got[i] = Drain(*ch);
    });
  }
  for (auto& th : submitters) th.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i]) << "process " << i;
    EXPECT_EQ(got[i].end.state, ProcessState::kFinished) << got[i].end.message;
    EXPECT_EQ(got[i].end.accounting.num_generated_tokens, static_cast<int64_t>(want[i].size()));
    EXPECT_EQ(got[i].text, Decode(want[i])) << "process " << i;
  }
  const EngineThreadStats st = engine->Stats();
  EXPECT_EQ(st.num_submitted, prompts.size());
  EXPECT_EQ(st.num_ended, prompts.size());
  EXPECT_EQ(st.num_live, 0u);
  EXPECT_EQ(st.kv.used_blocks, 0u);
  EXPECT_TRUE(st.error.ok());
}

TEST_F(EngineThreadTest, OneChannelCarriesManyProcessesAndClosesAfterTheLastEnd) {
  const std::vector<TokenId> a = Prompt(9, 1), b = Prompt(17, 2);
  const std::vector<TokenId> want_a = Alone(a, 5), want_b = Alone(b, 7);
  auto engine = Start();
  ASSERT_NE(engine, nullptr);
  Channel ch;
  const ProcessId ia = *engine->SubmitTo(ch, Greedy(a, 5));
  const ProcessId ib = *engine->SubmitTo(ch, Greedy(b, 7));
  std::map<ProcessId, std::vector<TokenId>> tokens;
  size_t ends = 0;
  for (;;) {
    StatusOr<StreamEvent> e = ch.Next(kPatience);
    if (!e.ok()) {
      EXPECT_EQ(e.status().code(), StatusCode::kOutOfRange) << e.status().ToString();
      break;
    }
    if (e->kind == StreamEvent::Kind::kEnd) {
      ++ends;
    } else {
      tokens[e->id].push_back(e->token);
    }
  }
  EXPECT_EQ(ends, 2u);
  EXPECT_EQ(tokens[ia], want_a);
  EXPECT_EQ(tokens[ib], want_b);
}

TEST_F(EngineThreadTest, StopStringEndsTheProcessAndCutsTheText) {
  const std::vector<TokenId> prompt = Prompt(12, 44);
  const std::vector<TokenId> full = Alone(prompt, 40);
  const std::string text = Decode(full);
  ASSERT_GT(text.size(), 20u);
  const std::string stop = text.substr(text.size() / 2, 3);
  const std::string want = text.substr(0, text.find(stop));
  auto engine = Start();
  ASSERT_NE(engine, nullptr);
  auto s = engine->Submit(Greedy(prompt, 40), {stop});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  Collected c = Drain(*s->channel);
  EXPECT_EQ(c.text, want);
  EXPECT_EQ(c.end.state, ProcessState::kFinished);
  EXPECT_EQ(c.end.reason, EndReason::kStopString);
  EXPECT_LT(c.tokens.size(), full.size());  // generation stopped at the match
  EXPECT_EQ(c.tokens, std::vector<TokenId>(full.begin(), full.begin() + c.tokens.size()));
}

TEST_F(EngineThreadTest, CancelFromAnotherThreadFreesEveryBlockWithinOneStep) {
  auto engine = Start(NeverStopsEarly());
  ASSERT_NE(engine, nullptr);
  auto s = engine->Submit(Greedy(Prompt(40, 5), 900));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  ASSERT_TRUE(s->channel->Next(kPatience).ok());  // running: it holds blocks
  uint64_t steps_at_cancel = 0;
  std::thread canceller([&] {
    steps_at_cancel = engine->Stats().num_steps;
    EXPECT_TRUE(engine->Cancel(s->id, EndReason::kKilled, "by the operator").ok());
  });
  canceller.join();
  Collected c = Drain(*s->channel);
  EXPECT_EQ(c.end.state, ProcessState::kCancelled);
  EXPECT_EQ(c.end.reason, EndReason::kKilled);
  EXPECT_EQ(c.end.message, "by the operator");
  const EngineThreadStats st = engine->Stats();  // published before the end event
  EXPECT_EQ(st.kv.used_blocks, 0u);
  EXPECT_LE(st.num_steps, steps_at_cancel + 1);
  EXPECT_EQ(engine->Cancel(999).code(), StatusCode::kNotFound);
  EXPECT_TRUE(engine->Cancel(s->id).ok());  // already ended: nothing happens
}

TEST_F(EngineThreadTest, TheProcessTableShowsLiveProcessesAndFollowsARenice) {
  auto engine = Start(NeverStopsEarly());
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->Stats().policy, "fcfs");
  auto s = engine->Submit(Greedy(Prompt(40, 5), 900, /*priority=*/2, "tenant-a"));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  // Running; the table is published after the step that pushed the first token, before the
  // next step pushes the second.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(s->channel->Next(kPatience).ok());
  std::vector<ProcessSnapshot> table = engine->Processes();
  ASSERT_EQ(table.size(), 1u);
  EXPECT_EQ(table[0].id, s->id);
  EXPECT_EQ(table[0].tenant, "tenant-a");
  EXPECT_EQ(table[0].priority, 2);
  EXPECT_EQ(table[0].state, ProcessState::kRunning);
  EXPECT_EQ(table[0].num_prompt_tokens, 40u);
  EXPECT_EQ(table[0].max_tokens, 900);
  EXPECT_GE(table[0].kv_resident_blocks, 40u / 4);  // 4-token blocks
  EXPECT_EQ(table[0].kv_swapped_blocks, 0u);

  ASSERT_TRUE(engine->Renice(s->id, 7).ok());
  // The renice lands at the top of the loop iteration after the one running at the call;
  // that iteration publishes its step count and the table together. (Tokens queued in the
  // channel cannot tell: the engine runs ahead of the reader.) The count read here may lag the
  // tokens read above by one step (a step pushes its tokens before it publishes), so three
  // more steps make sure of at least four tokens.
  const uint64_t steps_at_renice = engine->Stats().num_steps;
  const auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (engine->Stats().num_steps < steps_at_renice + 3 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  table = engine->Processes();
  ASSERT_EQ(table.size(), 1u);
  EXPECT_EQ(table[0].priority, 7);
  EXPECT_GT(table[0].num_generated_tokens, 3u);
  EXPECT_EQ(engine->Renice(999, 1).code(), StatusCode::kNotFound);

  ASSERT_TRUE(engine->Cancel(s->id, EndReason::kKilled, "killed").ok());
  EXPECT_EQ(Drain(*s->channel).end.reason, EndReason::kKilled);
  EXPECT_TRUE(engine->Processes().empty());  // published before the end event
  EXPECT_TRUE(engine->Renice(s->id, 1).ok());  // ended: nothing happens
}

TEST_F(EngineThreadTest, DroppingTheChannelCancelsTheProcess) {
  auto engine = Start(NeverStopsEarly());
  ASSERT_NE(engine, nullptr);
  auto dropped = engine->Submit(Greedy(Prompt(30, 6), 900));
  ASSERT_TRUE(dropped.ok());
  ASSERT_TRUE(dropped->channel->Next(kPatience).ok());
  dropped->channel.reset();
  // A second process on a channel we keep: once it has ended, the engine has looked at the
  // dropped channel many times over.
  auto kept = engine->Submit(Greedy(Prompt(8, 7), 4));
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(Drain(*kept->channel).end.state, ProcessState::kFinished);
  const EngineThreadStats st = engine->Stats();
  EXPECT_EQ(st.num_ended, 2u);
  EXPECT_EQ(st.num_live, 0u);
  EXPECT_EQ(st.kv.used_blocks, 0u);
  EXPECT_LT(st.num_sampled, 900u + 4u);  // the dropped process did not run to its end
}

TEST_F(EngineThreadTest, ShutdownWithLiveProcessesEndsEveryStream) {
  EngineThreadOptions o = NeverStopsEarly();
  o.engine.scheduler.max_running = 2;  // the rest wait in the queue
  auto engine = Start(o);
  ASSERT_NE(engine, nullptr);
  std::vector<std::unique_ptr<Channel>> channels;
  for (uint32_t i = 0; i < 5; ++i) {
    auto s = engine->Submit(Greedy(Prompt(20, 10 + i), 900));
    ASSERT_TRUE(s.ok());
    channels.push_back(std::move(s->channel));
  }
  ASSERT_TRUE(channels[0]->Next(kPatience).ok());
  engine->Shutdown();
  for (auto& ch : channels) {
    Collected c = Drain(*ch);
    EXPECT_EQ(c.end.state, ProcessState::kCancelled);
    EXPECT_EQ(c.end.reason, EndReason::kShutdown);
    EXPECT_EQ(ch->Next(milliseconds(0)).status().code(), StatusCode::kOutOfRange);
  }
  EXPECT_EQ(engine->Stats().kv.used_blocks, 0u);
  EXPECT_EQ(engine->Submit(Greedy(Prompt(4, 1), 2)).status().code(), StatusCode::kFailedPrecondition);
  engine->Shutdown();  // idempotent
}

TEST_F(EngineThreadTest, AdmissionBoundRefusesSubmissionsPastMaxLiveUntilOneEnds) {
  EngineThreadOptions o = NeverStopsEarly();
  o.engine.scheduler.max_running = 1;
  o.max_live = 2;  // one running, one waiting
  auto engine = Start(o);
  ASSERT_NE(engine, nullptr);
  auto first = engine->Submit(Greedy(Prompt(10, 1), 900));
  auto second = engine->Submit(Greedy(Prompt(10, 2), 900));
  ASSERT_TRUE(first.ok() && second.ok());
  auto third = engine->Submit(Greedy(Prompt(10, 3), 4));
  EXPECT_EQ(third.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(third.status().message().find("queue is full"), std::string::npos) << third.status().ToString();
  Channel group;
  EXPECT_EQ(engine->SubmitGroupTo(group, Greedy(Prompt(10, 4), 4), 2).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(engine->Stats().num_submitted, 2u);
  ASSERT_TRUE(engine->Cancel(first->id).ok());
  EXPECT_EQ(Drain(*first->channel).end.reason, EndReason::kCancelled);  // delivered: counted as ended
  auto fourth = engine->Submit(Greedy(Prompt(10, 5), 4));
  EXPECT_TRUE(fourth.ok()) << fourth.status().ToString();
}

// A step that fails (an injected fault in the forward pass) ends its processes' streams as
// errors, not cancels, and frees their blocks; the engine thread goes on serving the process
// that waited and one submitted after the failure.
TEST_F(EngineThreadTest, AFailedStepEndsItsStreamsAsErrorsAndTheEngineGoesOn) {
  constexpr size_t kPoisonTokens = 13;  // the prefill that fails is the only one this long
  const std::vector<TokenId> poison = Prompt(kPoisonTokens, 21), waiting = Prompt(9, 22), later = Prompt(11, 23);
  const std::vector<TokenId> want_waiting = Alone(waiting, 6), want_later = Alone(later, 5);
  std::atomic<int> num_faults{0};
  EngineThreadOptions o;
  o.engine.scheduler.max_running = 1;  // the group's leader runs alone; the other waits
  o.engine.inject_step_fault = [&num_faults](std::span<const BatchEntry> batch) {
    for (const BatchEntry& b : batch) {
      if (b.is_prefill && b.first_token_idx == 0 && b.num_tokens == kPoisonTokens) {
        num_faults.fetch_add(1);
        return InternalError("injected fault");
      }
    }
    return OkStatus();
  };
  auto engine = Start(o);
  ASSERT_NE(engine, nullptr);
  Channel group;
  auto ids = engine->SubmitGroupTo(group, Greedy(poison, 8), 2);
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  auto other = engine->Submit(Greedy(waiting, 6));
  ASSERT_TRUE(other.ok()) << other.status().ToString();

  std::set<ProcessId> ended;
  for (size_t i = 0; i < 2; ++i) {
    StatusOr<StreamEvent> e = group.Next(kPatience);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    ASSERT_EQ(e->kind, StreamEvent::Kind::kEnd) << "the failed group produced a token";
    EXPECT_EQ(e->state, ProcessState::kFailed);
    EXPECT_EQ(e->reason, EndReason::kError);
    EXPECT_NE(e->message.find("injected fault"), std::string::npos) << e->message;
    ended.insert(e->id);
  }
  EXPECT_EQ(ended, (std::set<ProcessId>(ids->begin(), ids->end())));
  EXPECT_EQ(group.Next(milliseconds(0)).status().code(), StatusCode::kOutOfRange);

  Collected c = Drain(*other->channel);
  EXPECT_EQ(c.end.state, ProcessState::kFinished);
  EXPECT_EQ(c.tokens, want_waiting);
  auto after = engine->Submit(Greedy(later, 5));
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  c = Drain(*after->channel);
  EXPECT_EQ(c.end.state, ProcessState::kFinished);
  EXPECT_EQ(c.tokens, want_later);

  const EngineThreadStats st = engine->Stats();
  EXPECT_EQ(num_faults.load(), 1);
  EXPECT_EQ(st.error.code(), StatusCode::kInternal);
  EXPECT_EQ(st.num_ended, 4u);
  EXPECT_EQ(st.num_live, 0u);
  EXPECT_EQ(st.kv.used_blocks, 0u);
}

// Under the priority policy, a higher-priority submission that arrives while a step is in
// flight stops that step at its next layer: the next step is the arrival's prompt alone, and
// both processes still get exactly the tokens they would alone. (The step is held in its
// fault hook until the arrival is queued, so the arrival always lands mid-step.)
TEST_F(EngineThreadTest, AHigherPriorityArrivalInterruptsTheStepInFlight) {
  const std::vector<TokenId> low = Prompt(10, 41), high = Prompt(6, 42);
  const std::vector<TokenId> want_low = Alone(low, 8), want_high = Alone(high, 3);
  std::mutex mu;
  std::vector<std::vector<BatchEntry>> batches;  // every forward pass asked for, in order
  std::promise<void> in_flight, arrived;
  std::future<void> arrived_future = arrived.get_future();
  bool held = false;
  EngineThreadOptions o;
  o.engine.policy = "priority";
  o.engine.inject_step_fault = [&](std::span<const BatchEntry> batch) {
    bool hold = false;
    {
      std::lock_guard<std::mutex> lock(mu);
      batches.emplace_back(batch.begin(), batch.end());
      // The low process's second decode: hold it until the arrival is queued.
      hold = !held && batch.size() == 1 && !batch[0].is_prefill && batch[0].first_token_idx == low.size() + 1;
      held |= hold;
    }
    if (hold) {
      in_flight.set_value();
      EXPECT_EQ(arrived_future.wait_for(kPatience), std::future_status::ready);
    }
    return OkStatus();
  };
  auto engine = Start(o);
  ASSERT_NE(engine, nullptr);
  auto low_sub = engine->Submit(Greedy(low, 8, 0));
  ASSERT_TRUE(low_sub.ok()) << low_sub.status().ToString();
  ASSERT_EQ(in_flight.get_future().wait_for(kPatience), std::future_status::ready);
  auto high_sub = engine->Submit(Greedy(high, 3, 5));
  ASSERT_TRUE(high_sub.ok()) << high_sub.status().ToString();
  arrived.set_value();

  EXPECT_EQ(Drain(*high_sub->channel).tokens, want_high);
  EXPECT_EQ(Drain(*low_sub->channel).tokens, want_low);
  EXPECT_EQ(engine->Stats().scheduler.num_abandoned_steps, 1u);
  std::lock_guard<std::mutex> lock(mu);
  size_t held_idx = 0;
  while (held_idx < batches.size() && !(batches[held_idx].size() == 1 && batches[held_idx][0].first_token_idx == low.size() + 1)) {
    ++held_idx;
  }
  ASSERT_LT(held_idx + 1, batches.size());
  // The interrupted decode was replaced by the arrival's prompt, alone.
  ASSERT_EQ(batches[held_idx + 1].size(), 1u);
  EXPECT_EQ(batches[held_idx + 1][0].id, high_sub->id);
  EXPECT_TRUE(batches[held_idx + 1][0].is_prefill);
}

TEST_F(EngineThreadTest, RefusesBadRequestsOnTheCallersThread) {
  auto engine = Start();
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->Submit(Greedy({1, 999999}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy({}, 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy(Prompt(1000, 1), 100)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->UpdateScheduling({.policy = "lottery"}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(engine->UpdateScheduling({.policy = "priority"}).ok());
  EXPECT_EQ(engine->Stats().num_submitted, 0u);
}

TEST_F(EngineThreadTest, AnIdleEngineReportsItsPoolBeforeItsFirstStep) {
  EngineThreadOptions o;
  o.engine.swap_budget_bytes = size_t{1} << 20;
  auto engine = Start(o);
  ASSERT_NE(engine, nullptr);
  const EngineThreadStats st = engine->Stats();  // nothing submitted: no loop iteration needed
  EXPECT_GT(st.kv.total_blocks, 0u);
  EXPECT_EQ(st.kv.free_blocks, st.kv.total_blocks);
  EXPECT_GT(st.kv.swap_capacity_blocks, 0u);
  EXPECT_EQ(st.scheduling.policy, "fcfs");
}

TEST_F(EngineThreadTest, SchedulingUpdatesMergeAndAreInForceBeforeTheNextProcessRuns) {
  auto engine = Start();
  ASSERT_NE(engine, nullptr);
  auto first = engine->UpdateScheduling({.policy = "fair", .fair_weights = {{{"acme", 1}, {"beta", 3}}}});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  // A second update of other fields keeps the first's.
  auto second = engine->UpdateScheduling({.rr_slice_tokens = 5, .preempt_mode = PreemptChoice::kRecompute});
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->policy, "fair");
  EXPECT_EQ(second->policy_options.fair.tenant_weights.at("beta"), 3);
  EXPECT_EQ(second->policy_options.rr.slice_tokens, 5u);
  // A bad value changes nothing.
  auto bad = engine->UpdateScheduling({.policy = "rr", .rr_slice_tokens = 0});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message().rfind("rr.slice_tokens", 0), 0u) << bad.status().message();
  // The engine thread installs what was asked before it takes the next submission in.
  auto s = engine->Submit(Greedy(Prompt(6, 2), 3));
  ASSERT_TRUE(s.ok());
  Drain(*s->channel);
  const EngineThreadStats st = engine->Stats();
  EXPECT_EQ(st.policy, "fair");
  EXPECT_EQ(st.scheduling.policy, "fair");
  EXPECT_EQ(st.scheduling.policy_options, second->policy_options);
  EXPECT_EQ(st.scheduling.preemption.mode, PreemptChoice::kRecompute);
  engine->Shutdown();
  EXPECT_EQ(engine->UpdateScheduling({.policy = "sjf"}).status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(EngineThreadTest, StatsKeepABoundedHistoryOfSteps) {
  EngineThreadOptions o;
  o.history_steps = 4;
  auto engine = Start(o);
  ASSERT_NE(engine, nullptr);
  auto s = engine->Submit(Greedy(Prompt(10, 3), 12));
  ASSERT_TRUE(s.ok());
  Collected c = Drain(*s->channel);
  const EngineThreadStats st = engine->Stats();
  EXPECT_GE(st.num_steps, c.tokens.size());  // one step per generated token at least
  EXPECT_EQ(st.num_sampled, c.tokens.size());
  EXPECT_EQ(st.num_tokens, 10 + c.tokens.size() - 1);  // the last token is never fed back
  ASSERT_EQ(st.recent.size(), 4u);
  for (size_t i = 1; i < st.recent.size(); ++i) EXPECT_EQ(st.recent[i].step_idx, st.recent[i - 1].step_idx + 1);
  EXPECT_EQ(st.recent.back().step_idx, st.num_steps);
  for (const StepTiming& t : st.recent) {
    EXPECT_GT(t.step.num_tokens, 0u);
    EXPECT_GE(t.step.seconds, 0.0);
    EXPECT_LE(t.kv_utilisation, 1.0);
    if (t.kv_used_blocks > 0) {
      EXPECT_GT(t.kv_utilisation, 0.0);
    }
  }
}

TEST_F(EngineThreadTest, ANotifierWakesAConsumerThatNeverBlocksInNext) {
  const std::vector<TokenId> prompt = Prompt(9, 61);
  const std::vector<TokenId> want = Alone(prompt, 12);
  auto engine = Start();
  ASSERT_NE(engine, nullptr);
  // The notifier stands in for posting to an executor: it only bumps a counter and signals.
  struct Wake {
    std::mutex mu;
    std::condition_variable cv;
    uint64_t calls = 0;
  };
  auto wake = std::make_shared<Wake>();
  Channel channel;
  channel.SetNotifier([wake] {
    {
      std::lock_guard<std::mutex> lock(wake->mu);
      ++wake->calls;
    }
    wake->cv.notify_one();
  });
  ASSERT_TRUE(engine->SubmitTo(channel, Greedy(prompt, static_cast<int32_t>(want.size()))).ok());
  std::vector<TokenId> tokens;
  bool ended = false;
  uint64_t seen = 0;
  while (!ended) {
    {
      std::unique_lock<std::mutex> lock(wake->mu);
      ASSERT_TRUE(wake->cv.wait_for(lock, kPatience, [&] { return wake->calls > seen; })) << "no wake-up";
      seen = wake->calls;
    }
    // Each wake-up: read everything there is, without waiting.
    for (StatusOr<StreamEvent> e = channel.Next(milliseconds(0)); e.ok(); e = channel.Next(milliseconds(0))) {
      if (e->kind == StreamEvent::Kind::kEnd) {
        ended = true;
        EXPECT_EQ(e->state, ProcessState::kFinished);
      } else {
        tokens.push_back(e->token);
      }
    }
  }
  // Every token arrived although the consumer only ever read after a wake-up. How many calls
  // that took depends on timing (one call may cover several events), so it is not asserted.
  EXPECT_EQ(tokens, want);
}

}  // namespace
}  // namespace llmasos::kernel

namespace llmasos::kernel {
namespace {

TEST_F(EngineThreadTest, TheKernelLogTellsAdmissionsPreemptionsRenicesAndEnds) {
  EngineThreadOptions o = NeverStopsEarly();
  o.engine.policy = "priority";  // preemptive: the urgent process evicts the running one
  o.engine.scheduler.max_running = 1;
  o.engine.swap_budget_bytes = size_t{64} << 20;
  auto engine = Start(o);
  ASSERT_NE(engine, nullptr);
  EventBus bus;
  auto sub = bus.Subscribe(4096, kAllEventKinds, nullptr);
  engine->SetEventBus(&bus, 3, "tiny@1.0.0");

  auto low = engine->Submit(Greedy(Prompt(20, 5), 900, /*priority=*/0, "tenant-a"));
  ASSERT_TRUE(low.ok());
  // Past min_tokens_before_preempt, so the urgent one may evict it.
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(low->channel->Next(kPatience).ok());
  auto urgent = engine->Submit(Greedy(Prompt(8, 6), 4, /*priority=*/5, "tenant-b"));
  ASSERT_TRUE(urgent.ok());
  EXPECT_EQ(Drain(*urgent->channel).end.reason, EndReason::kLength);
  ASSERT_TRUE(engine->Renice(low->id, 9).ok());
  ASSERT_TRUE(engine->Cancel(low->id, EndReason::kKilled, "by the operator").ok());
  EXPECT_EQ(Drain(*low->channel).end.reason, EndReason::kKilled);

  std::vector<Event> all;
  while (auto e = sub->Next()) all.push_back(*e);
  auto of = [&](ProcessId pid) {
    std::vector<Event> v;
    for (const Event& e : all) {
      if (e.pid == pid) v.push_back(e);
    }
    return v;
  };
  const std::vector<Event> u = of(urgent->id);
  ASSERT_EQ(u.size(), 2u);
  EXPECT_EQ(u[0].kind, EventKind::kAdmitted);
  EXPECT_EQ(u[1].kind, EventKind::kFinished);
  EXPECT_EQ(u[1].reason, "length");
  EXPECT_EQ(u[1].tenant, "tenant-b");

  const std::vector<Event> l = of(low->id);
  ASSERT_GE(l.size(), 4u);
  EXPECT_EQ(l.front().kind, EventKind::kAdmitted);
  EXPECT_EQ(l.front().reason, "");
  EXPECT_EQ(l.front().instance, 3u);
  EXPECT_EQ(l.front().model, "tiny@1.0.0");
  EXPECT_EQ(l.front().tenant, "tenant-a");
  EXPECT_EQ(l[1].kind, EventKind::kPreempted);
  ASSERT_TRUE(l[1].reason == "swap" || l[1].reason == "recompute") << l[1].reason;
  EXPECT_EQ(l.back().kind, EventKind::kKilled);
  EXPECT_EQ(l.back().reason, "killed");
  // It was preempted before the urgent process was admitted, and resumed after it finished.
  EXPECT_LT(l[1].seq, u[0].seq);
  bool resumed = false, reniced = false, swapped_out = false, swapped_in = false;
  for (const Event& e : l) {
    if (e.kind == EventKind::kAdmitted && e.reason == "resume") {
      resumed = true;
      EXPECT_GT(e.seq, u[1].seq);
    }
    if (e.kind == EventKind::kReniced) {
      reniced = true;
      EXPECT_EQ(e.priority, 9);
    }
    swapped_out |= e.kind == EventKind::kSwapped && e.direction == "out";
    swapped_in |= e.kind == EventKind::kSwapped && e.direction == "in";
  }
  EXPECT_TRUE(reniced);
  EXPECT_EQ(swapped_out, l[1].reason == "swap");
  if (resumed) {
    EXPECT_EQ(swapped_in, swapped_out);
  }
  for (size_t i = 1; i < all.size(); ++i) EXPECT_LT(all[i - 1].seq, all[i].seq);
}

}  // namespace
}  // namespace llmasos::kernel
