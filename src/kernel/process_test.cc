#include "kernel/process.h"

#include <chrono>
#include <set>

#include "gtest/gtest.h"

namespace llmasos::kernel {
namespace {

using std::chrono::milliseconds;
using S = ProcessState;

ProcessSpec ValidSpec() {
  ProcessSpec spec;
  spec.tenant = "acme";
  spec.prompt = {1, 2, 3, 4};
  spec.limits.max_tokens = 8;
  return spec;
}

TEST(ProcessTest, CreateRejectsBadSpecsNamingTheField) {
  SimulatedClock clock;
  struct Case {
    void (*mutate)(ProcessSpec&, TimePoint);
    const char* field;
  };
  const Case cases[] = {
      {[](ProcessSpec& s, TimePoint) { s.prompt.clear(); }, "prompt"},
      {[](ProcessSpec& s, TimePoint) { s.prompt[2] = -5; }, "prompt token 2"},
      {[](ProcessSpec& s, TimePoint) { s.limits.max_tokens = 0; }, "max_tokens"},
      {[](ProcessSpec& s, TimePoint) { s.tenant = ""; }, "tenant"},
      {[](ProcessSpec& s, TimePoint) { s.tenant = std::string(200, 'x'); }, "tenant"},
      {[](ProcessSpec& s, TimePoint now) { s.limits.deadline = now; }, "deadline"},
      {[](ProcessSpec& s, TimePoint) { s.sampling.top_p = 1.5f; }, "sampling"},
  };
  for (const Case& c : cases) {
    ProcessSpec spec = ValidSpec();
    c.mutate(spec, clock.Now());
    auto p = Process::Create(1, std::move(spec), clock.Now());
    ASSERT_FALSE(p.ok()) << c.field;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find(c.field), std::string::npos) << p.status().message();
  }
  EXPECT_TRUE(Process::Create(1, ValidSpec(), clock.Now()).ok());
}

TEST(ProcessTest, StartsQueuedWithThePromptAsItsTokens) {
  SimulatedClock clock;
  auto p = std::move(Process::Create(42, ValidSpec(), clock.Now())).value();
  EXPECT_EQ(p->id(), 42u);
  EXPECT_EQ(p->state(), S::kQueued);
  EXPECT_EQ(p->tenant(), "acme");
  EXPECT_EQ(p->num_prompt_tokens(), 4u);
  EXPECT_EQ(p->num_generated_tokens(), 0u);
  EXPECT_EQ(p->num_pending_tokens(), 4u);
  EXPECT_EQ(p->num_remaining_tokens(), 8u);
  EXPECT_EQ(p->accounting().num_prompt_tokens, 4);
}

TEST(ProcessTest, LegalTransitionsAreExactlyTheStateMachine) {
  const S all[] = {S::kQueued, S::kRunning, S::kPreempted, S::kFinished, S::kCancelled, S::kFailed};
  int num_legal = 0;
  for (S from : all) {
    for (S to : all) num_legal += IsLegalTransition(from, to);
  }
  // queued: running, cancelled, failed; running: preempted, finished, cancelled, failed;
  // preempted: queued, cancelled, failed; terminal: none.
  EXPECT_EQ(num_legal, 10);
  EXPECT_TRUE(IsLegalTransition(S::kPreempted, S::kQueued));
  EXPECT_FALSE(IsLegalTransition(S::kQueued, S::kFinished));
  EXPECT_FALSE(IsLegalTransition(S::kPreempted, S::kRunning));
  EXPECT_FALSE(IsLegalTransition(S::kQueued, S::kPreempted));
  for (S to : all) {
    EXPECT_FALSE(IsLegalTransition(S::kFinished, to));
    EXPECT_FALSE(IsLegalTransition(S::kCancelled, to));
    EXPECT_FALSE(IsLegalTransition(S::kFailed, to));
  }
}

TEST(ProcessTest, IllegalTransitionIsAnErrorAndChangesNothing) {
  SimulatedClock clock;
  auto p = std::move(Process::Create(7, ValidSpec(), clock.Now())).value();
  Status st = p->End(EndReason::kLength, clock.Now());
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("queued -> finished"), std::string::npos) << st.message();
  EXPECT_EQ(p->state(), S::kQueued);
  EXPECT_EQ(p->end_reason(), EndReason::kNone);
  // Terminal states are entered through End only, with a reason.
  EXPECT_EQ(p->TransitionTo(S::kCancelled, clock.Now()).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(p->End(EndReason::kNone, clock.Now()).code(), StatusCode::kFailedPrecondition);

  ASSERT_TRUE(p->TransitionTo(S::kRunning, clock.Now()).ok());
  ASSERT_TRUE(p->End(EndReason::kCancelled, clock.Now(), "client went away").ok());
  EXPECT_EQ(p->state(), S::kCancelled);
  EXPECT_EQ(p->end_reason(), EndReason::kCancelled);
  EXPECT_EQ(p->end_message(), "client went away");
  EXPECT_EQ(p->TransitionTo(S::kRunning, clock.Now()).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(p->state(), S::kCancelled);
}

TEST(ProcessTest, AccountsQueuedAndRunningTimeOnTheInjectedClock) {
  SimulatedClock clock;
  auto p = std::move(Process::Create(1, ValidSpec(), clock.Now())).value();
  clock.Advance(milliseconds(30));
  EXPECT_EQ(p->TimeQueued(clock.Now()), milliseconds(30));
  ASSERT_TRUE(p->TransitionTo(S::kRunning, clock.Now()).ok());
  clock.Advance(milliseconds(50));
  EXPECT_EQ(p->TimeRunning(clock.Now()), milliseconds(50));
  ASSERT_TRUE(p->TransitionTo(S::kPreempted, clock.Now()).ok());
  p->CountPreemption(/*swapped=*/true);
  clock.Advance(milliseconds(20));
  ASSERT_TRUE(p->TransitionTo(S::kQueued, clock.Now()).ok());
  clock.Advance(milliseconds(5));
  ASSERT_TRUE(p->TransitionTo(S::kRunning, clock.Now()).ok());
  clock.Advance(milliseconds(7));
  ASSERT_TRUE(p->End(EndReason::kLength, clock.Now()).ok());
  clock.Advance(milliseconds(1000));  // after the end nothing accrues
  EXPECT_EQ(p->TimeQueued(clock.Now()), milliseconds(55));
  EXPECT_EQ(p->TimeRunning(clock.Now()), milliseconds(57));
  EXPECT_EQ(p->accounting().num_preemptions, 1);
  EXPECT_EQ(p->accounting().num_swap_preemptions, 1);
  EXPECT_EQ(p->accounting().ended_at, p->accounting().submitted_at + milliseconds(112));
}

TEST(ProcessTest, TracksComputedGeneratedAndPrefixCachedTokens) {
  SimulatedClock clock;
  auto p = std::move(Process::Create(1, ValidSpec(), clock.Now())).value();
  ASSERT_TRUE(p->TransitionTo(S::kRunning, clock.Now()).ok());
  p->MarkPrefixCached(2);
  EXPECT_EQ(p->num_computed_tokens(), 2u);
  EXPECT_EQ(p->accounting().num_prefix_cached_tokens, 2);
  p->MarkComputed(2);
  EXPECT_EQ(p->num_pending_tokens(), 0u);
  clock.Advance(milliseconds(3));
  p->AppendToken(99, clock.Now());
  EXPECT_EQ(p->num_generated_tokens(), 1u);
  EXPECT_EQ(p->generated()[0], 99);
  EXPECT_EQ(p->tokens().size(), 5u);
  EXPECT_EQ(p->num_pending_tokens(), 1u);
  EXPECT_EQ(p->num_remaining_tokens(), 7u);
  EXPECT_EQ(p->accounting().first_token_at, p->accounting().submitted_at + milliseconds(3));
  EXPECT_EQ(p->accounting().num_computed_tokens, 2);
  EXPECT_EQ(p->num_tokens_since_admitted(), 2u);
  p->ResetComputed();
  EXPECT_EQ(p->num_pending_tokens(), 5u);
}

}  // namespace
TEST(ProcessTest, EachEndReasonHasANameAndATerminalState) {
  const EndReason all[] = {EndReason::kEndOfGeneration, EndReason::kStopString, EndReason::kLength,
                           EndReason::kDeadline,        EndReason::kCancelled,  EndReason::kKilled,
                           EndReason::kShutdown,        EndReason::kError};
  std::set<std::string_view> names;
  for (EndReason r : all) {
    names.insert(EndReasonName(r));
    EXPECT_TRUE(IsTerminal(TerminalStateOf(r))) << EndReasonName(r);
  }
  EXPECT_EQ(names.size(), std::size(all));
  EXPECT_EQ(TerminalStateOf(EndReason::kStopString), S::kFinished);
  EXPECT_EQ(TerminalStateOf(EndReason::kKilled), S::kCancelled);
  EXPECT_EQ(TerminalStateOf(EndReason::kError), S::kFailed);
  EXPECT_EQ(EndReasonName(EndReason::kEndOfGeneration), "end_of_generation");
}

}  // namespace llmasos::kernel
