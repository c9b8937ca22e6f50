// Ranking tests for each policy on hand-built processes, and the preemption cost model.
#include <chrono>
#include <cmath>

#include "gtest/gtest.h"
#include "kernel/memory_model.h"
#include "kernel/policy.h"

namespace llmasos::kernel {
namespace {

using std::chrono::seconds;

class PolicyTest : public ::testing::Test {
 protected:
  Process* Make(int32_t max_tokens, int32_t priority = 0, std::string tenant = "t") {
    ProcessSpec spec;
    spec.tenant = std::move(tenant);
    spec.priority = priority;
    spec.limits.max_tokens = max_tokens;
    spec.prompt = {1, 2};
    auto p = Process::Create(next_id_++, std::move(spec), clock_.Now());
    CHECK(p.ok());
    owned_.push_back(std::move(p).value());
    return owned_.back().get();
  }
  std::vector<ProcessId> Ids(SchedulerPolicy& policy) {
    std::vector<Process*> ranked;
    for (auto& p : owned_) ranked.push_back(p.get());
    policy.Rank(ranked, clock_.Now());
    std::vector<ProcessId> ids;
    for (Process* p : ranked) ids.push_back(p->id());
    return ids;
  }

  SimulatedClock clock_;
  ProcessId next_id_ = 1;
  std::vector<std::unique_ptr<Process>> owned_;
};

TEST_F(PolicyTest, FcfsRanksByArrival) {
  auto policy = NewFcfsPolicy();
  Make(100, 5);
  Make(1, 9);
  Make(50, -1);
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{1, 2, 3}));
  EXPECT_FALSE(policy->preemptive());
}

TEST_F(PolicyTest, ShortestJobFirstRanksByRemainingTokensAndAges) {
  auto policy = NewShortestJobFirstPolicy(SjfOptions{.aging_tokens_per_second = 10});
  Make(100);
  Make(5);
  Make(40);
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{2, 3, 1}));
  // 9 s later the 100-token job scores 100 - 90 = 10; a new 20-token job scores 20.
  clock_.Advance(seconds(9));
  Make(20);
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{2, 3, 1, 4}));  // -85, -50, 10, 20
}

TEST_F(PolicyTest, RoundRobinSendsAProcessThatUsedItsSliceToTheBack) {
  auto policy = NewRoundRobinPolicy(RoundRobinOptions{.slice_tokens = 4});
  for (int i = 0; i < 3; ++i) policy->OnSubmitted(*Make(100));
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{1, 2, 3}));
  policy->OnServed(*owned_[0], 3);
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{1, 2, 3}));  // slice not used up
  policy->OnServed(*owned_[0], 1);
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{2, 3, 1}));
  policy->OnServed(*owned_[1], 10);
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{3, 1, 2}));
}

TEST_F(PolicyTest, PriorityRanksHigherFirstAndAgingLiftsOldProcesses) {
  auto policy = NewPriorityPolicy(PriorityOptions{.aging_per_second = 0.5});
  Make(10, 0);
  Make(10, 3);
  Make(10, 1);
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{2, 3, 1}));
  EXPECT_TRUE(policy->preemptive());
  clock_.Advance(seconds(10));  // everyone +5
  Make(10, 4);                  // effective 4 < 5..8
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{2, 3, 1, 4}));
  auto strict = NewPriorityPolicy(PriorityOptions{.aging_per_second = 0});
  EXPECT_EQ(Ids(*strict), (std::vector<ProcessId>{4, 2, 3, 1}));
}

TEST_F(PolicyTest, FairShareRanksTheTenantWithLeastServicePerWeightFirst) {
  FairShareOptions options;
  options.tenant_weights = {{"a", 1.0}, {"b", 3.0}};
  auto policy = NewFairSharePolicy(options);
  Process* a = Make(100, 0, "a");
  Process* b = Make(100, 0, "b");
  policy->OnSubmitted(*a);
  policy->OnSubmitted(*b);
  policy->OnServed(*a, 10);  // a: 10 / 1 = 10
  policy->OnServed(*b, 27);  // b: 27 / 3 = 9
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{2, 1}));
  policy->OnServed(*b, 6);  // b: 11
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{1, 2}));
}

TEST_F(PolicyTest, FairShareStartsANewTenantLevelWithTheLeastServed) {
  auto policy = NewFairSharePolicy();
  Process* a = Make(100, 0, "a");
  policy->OnSubmitted(*a);
  policy->OnServed(*a, 1000);
  Process* b = Make(100, 0, "b");
  policy->OnSubmitted(*b);  // starts at 1000, not 0
  policy->OnServed(*b, 1);
  EXPECT_EQ(Ids(*policy), (std::vector<ProcessId>{1, 2}));
}

TEST(PolicyByNameTest, BuildsEveryPolicyAndRejectsUnknownNames) {
  for (const char* name : {"fcfs", "sjf", "rr", "priority", "fair"}) {
    auto p = NewPolicyByName(name);
    ASSERT_TRUE(p.ok()) << name;
    EXPECT_EQ((*p)->name(), name);
  }
  auto bad = NewPolicyByName("lottery");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("lottery"), std::string::npos);
}

TEST(PreemptModeTest, SwapsWhenCheaperAndItFitsElseRecomputes) {
  PreemptionCosts costs{.swap_seconds_per_byte = 1e-9, .recompute_seconds_per_token = 1e-3};
  // 1 MB swapped twice: 2 ms; 100 tokens recomputed: 100 ms.
  EXPECT_EQ(ChoosePreemptMode(1'000'000, 10'000'000, 100, costs), PreemptMode::kSwap);
  EXPECT_EQ(ChoosePreemptMode(1'000'000, 999'999, 100, costs), PreemptMode::kRecompute);  // no room
  // 1 token recomputed: 1 ms < 2 ms.
  EXPECT_EQ(ChoosePreemptMode(1'000'000, 10'000'000, 1, costs), PreemptMode::kRecompute);
  EXPECT_EQ(ChoosePreemptMode(0, 10'000'000, 100, costs), PreemptMode::kRecompute);
}

TEST(PreemptModeTest, AChoiceOverridesTheCostModelWhereSwapIsPossible) {
  PreemptionCosts swap_cheaper{.swap_seconds_per_byte = 1e-9, .recompute_seconds_per_token = 1e-3};
  EXPECT_EQ(ChoosePreemptMode(1'000'000, 10'000'000, 100, swap_cheaper, PreemptChoice::kRecompute),
            PreemptMode::kRecompute);
  PreemptionCosts recompute_cheaper{.swap_seconds_per_byte = 1e-3, .recompute_seconds_per_token = 1e-9};
  EXPECT_EQ(ChoosePreemptMode(1'000'000, 10'000'000, 100, recompute_cheaper, PreemptChoice::kSwap), PreemptMode::kSwap);
  // Swap needs room and something resident, whatever the choice.
  EXPECT_EQ(ChoosePreemptMode(1'000'000, 999'999, 100, swap_cheaper, PreemptChoice::kSwap), PreemptMode::kRecompute);
  EXPECT_EQ(ChoosePreemptMode(0, 10'000'000, 100, swap_cheaper, PreemptChoice::kSwap), PreemptMode::kRecompute);
  for (PreemptChoice c : {PreemptChoice::kCheaper, PreemptChoice::kSwap, PreemptChoice::kRecompute}) {
    EXPECT_EQ(ParsePreemptChoice(PreemptChoiceName(c)), c);
  }
  EXPECT_EQ(ParsePreemptChoice("lru"), std::nullopt);
}

TEST(PolicyOptionsTest, ValidationNamesTheFieldOutOfRange) {
  struct Case {
    void (*set)(PolicyOptions&);
    const char* field;
  };
  const Case cases[] = {
      {[](PolicyOptions& o) { o.rr.slice_tokens = 0; }, "rr.slice_tokens"},
      {[](PolicyOptions& o) { o.rr.slice_tokens = kMaxSliceTokens + 1; }, "rr.slice_tokens"},
      {[](PolicyOptions& o) { o.sjf.aging_tokens_per_second = 0; }, "sjf.aging_tokens_per_second"},
      {[](PolicyOptions& o) { o.sjf.aging_tokens_per_second = std::nan(""); }, "sjf.aging_tokens_per_second"},
      {[](PolicyOptions& o) { o.priority.aging_per_second = -0.5; }, "priority.aging_per_second"},
      {[](PolicyOptions& o) { o.priority.aging_per_second = INFINITY; }, "priority.aging_per_second"},
      {[](PolicyOptions& o) { o.fair.default_weight = 0; }, "fair.default_weight"},
      {[](PolicyOptions& o) { o.fair.tenant_weights["acme"] = -1; }, "fair.weights.acme"},
      {[](PolicyOptions& o) { o.fair.tenant_weights["acme"] = kMaxFairWeight * 2; }, "fair.weights.acme"},
      {[](PolicyOptions& o) { o.fair.tenant_weights[""] = 1; }, "fair.weights"},
  };
  EXPECT_TRUE(ValidatePolicyOptions({}).ok());
  for (const Case& c : cases) {
    PolicyOptions o;
    c.set(o);
    Status st = ValidatePolicyOptions(o);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << c.field;
    EXPECT_EQ(st.message().rfind(c.field, 0), 0u) << st.message();
    // The factory refuses them too, rather than CHECK-failing in a policy's constructor.
    EXPECT_EQ(NewPolicyByName("fair", o).status().code(), StatusCode::kInvalidArgument) << c.field;
  }
}

TEST_F(PolicyTest, NewPolicyByNameBuildsThePolicyWithItsOptions) {
  PolicyOptions o;
  o.fair.tenant_weights = {{"heavy", 4}};
  auto fair = NewPolicyByName("fair", o);
  ASSERT_TRUE(fair.ok());
  Process* light = Make(100, 0, "light");
  Process* heavy = Make(100, 0, "heavy");
  (*fair)->OnSubmitted(*light);
  (*fair)->OnSubmitted(*heavy);
  // Both served 40 tokens: light is at 40 / 1, heavy at 40 / 4, so heavy goes first.
  (*fair)->OnServed(*light, 40);
  (*fair)->OnServed(*heavy, 40);
  EXPECT_EQ(Ids(**fair), (std::vector<ProcessId>{heavy->id(), light->id()}));
  // With default options they would be level, and arrival order decides.
  auto plain = NewPolicyByName("fair");
  ASSERT_TRUE(plain.ok());
  (*plain)->OnSubmitted(*light);
  (*plain)->OnSubmitted(*heavy);
  (*plain)->OnServed(*light, 40);
  (*plain)->OnServed(*heavy, 40);
  EXPECT_EQ(Ids(**plain), (std::vector<ProcessId>{light->id(), heavy->id()}));
}

}  // namespace
}  // namespace llmasos::kernel
