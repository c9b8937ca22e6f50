// SchedulingSettings and SchedulingUpdate: merging, precedence and validation.
#include "kernel/scheduling.h"

#include "gtest/gtest.h"

namespace llmasos::kernel {
namespace {

TEST(SchedulingUpdateTest, ReplacesOnlyTheFieldsItGives) {
  SchedulingSettings s;
  s.policy_options.fair.tenant_weights = {{"old", 2}};
  SchedulingUpdate u;
  EXPECT_TRUE(u.empty());
  u.rr_slice_tokens = 4;
  u.fair_weights = std::map<std::string, double, std::less<>>{{"acme", 1}, {"beta", 3}};
  u.preempt_mode = PreemptChoice::kRecompute;
  EXPECT_FALSE(u.empty());
  const SchedulingSettings out = u.AppliedTo(s);
  EXPECT_EQ(out.policy, "fcfs");
  EXPECT_EQ(out.policy_options.rr.slice_tokens, 4u);
  // The table is replaced, not merged.
  EXPECT_EQ(out.policy_options.fair.tenant_weights,
            (std::map<std::string, double, std::less<>>{{"acme", 1}, {"beta", 3}}));
  EXPECT_EQ(out.preemption.mode, PreemptChoice::kRecompute);
  EXPECT_EQ(out.policy_options.sjf, s.policy_options.sjf);
  EXPECT_EQ(out.preemption.min_tokens_before_preempt, s.preemption.min_tokens_before_preempt);
}

TEST(SchedulingUpdateTest, OverLetsTheLaterSourceWinFieldByField) {
  SchedulingUpdate file{.policy = "fair", .rr_slice_tokens = 8, .waiting_may_preempt = false};
  SchedulingUpdate flags{.rr_slice_tokens = 32};
  const SchedulingUpdate merged = flags.Over(file);
  EXPECT_EQ(merged.policy, "fair");
  EXPECT_EQ(merged.rr_slice_tokens, 32u);
  EXPECT_EQ(merged.waiting_may_preempt, false);
  EXPECT_FALSE(merged.sjf_aging_tokens_per_second.has_value());
}

TEST(SchedulingSettingsTest, ValidationNamesTheField) {
  EXPECT_TRUE(ValidateSchedulingSettings({}).ok());
  SchedulingSettings s;
  s.policy = "lottery";
  Status st = ValidateSchedulingSettings(s);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("policy: ", 0), 0u) << st.message();
  s = SchedulingSettings{};
  s.policy_options.rr.slice_tokens = 0;
  EXPECT_EQ(ValidateSchedulingSettings(s).message().rfind("rr.slice_tokens", 0), 0u);
  s = SchedulingSettings{};
  s.preemption.costs.recompute_seconds_per_token = -1;
  EXPECT_EQ(ValidateSchedulingSettings(s).message().rfind("preemption.recompute_seconds_per_token", 0), 0u);
}

}  // namespace
}  // namespace llmasos::kernel
