// The /os/* inputs: process ids, process-table filters and renice bodies, good and bad.
#include "api/os_request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace llmasos::api {
namespace {

using testing::HasSubstr;

TEST(OsRequestTest, ProcessIdsRoundTripAndBadOnesAreRefused) {
  auto id = ParseProcessId("3-17");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, (GlobalProcessId{3, 17}));
  EXPECT_EQ(FormatProcessId(*id), "3-17");
  EXPECT_EQ(*ParseProcessId("18446744073709551615-1"), (GlobalProcessId{UINT64_MAX, 1}));
  for (const char* bad : {"", "3", "3-", "-17", "0-1", "1-0", "+1-2", "1--2", "1-2-3", "a-1", "1-2x", " 1-2",
                          "18446744073709551616-1"}) {
    auto r = ParseProcessId(bad);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("INSTANCE-PID")) << bad;
  }
}

TEST(OsRequestTest, FiltersMatchStateTenantAndModel) {
  std::string param;
  auto f = ParseProcessFilter({{"state", "running"}, {"tenant", "acme"}, {"model", "smollm2"}}, &param);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_TRUE(f->Matches(kernel::ProcessState::kRunning, "acme", "smollm2", "1.0.0"));
  EXPECT_FALSE(f->Matches(kernel::ProcessState::kQueued, "acme", "smollm2", "1.0.0"));
  EXPECT_FALSE(f->Matches(kernel::ProcessState::kRunning, "other", "smollm2", "1.0.0"));
  EXPECT_FALSE(f->Matches(kernel::ProcessState::kRunning, "acme", "smollm2-big", "1.0.0"));

  auto versioned = ParseProcessFilter({{"model", "smollm2@1.0.0"}});
  ASSERT_TRUE(versioned.ok());
  EXPECT_TRUE(versioned->Matches(kernel::ProcessState::kPreempted, "any", "smollm2", "1.0.0"));
  EXPECT_FALSE(versioned->Matches(kernel::ProcessState::kPreempted, "any", "smollm2", "1.1.0"));

  auto none = ParseProcessFilter({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->Matches(kernel::ProcessState::kQueued, "t", "m", "v"));
}

TEST(OsRequestTest, BadFiltersNameTheParameter) {
  struct Case {
    std::vector<std::pair<std::string, std::string>> query;
    std::string param, message;
  };
  for (const Case& c : std::vector<Case>{
           {{{"state", "finished"}}, "state", "must be queued, running or preempted"},
           {{{"state", "running"}, {"state", "queued"}}, "state", "given twice"},
           {{{"tenant", ""}}, "tenant", "must not be empty"},
           {{{"model", std::string(300, 'm')}}, "model", "longer than 256 bytes"},
           {{{"user", "x"}}, "user", "unknown (expected state, tenant or model)"},
       }) {
    std::string param;
    auto f = ParseProcessFilter(c.query, &param);
    ASSERT_FALSE(f.ok()) << c.message;
    EXPECT_EQ(f.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(param, c.param);
    EXPECT_THAT(f.status().message(), HasSubstr(c.message));
  }
}

TEST(OsRequestTest, EventsQueryNamesKnownKindsOnly) {
  std::string param;
  EXPECT_EQ(*ParseEventsQuery({}), kernel::kAllEventKinds);
  auto k = ParseEventsQuery({{"kinds", "admitted,killed"}}, &param);
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_EQ(*k, kernel::EventKindBit(kernel::EventKind::kAdmitted) | kernel::EventKindBit(kernel::EventKind::kKilled));
  for (const auto& [query, want] : std::vector<std::pair<std::vector<std::pair<std::string, std::string>>, std::string>>{
           {{{"kinds", "admitted,exploded"}}, "exploded"},
           {{{"kinds", "admitted,"}}, "unknown event kind"},
           {{{"kinds", ""}}, "must not be empty"},
           {{{"kinds", "killed"}, {"kinds", "loaded"}}, "given twice"},
           {{{"colour", "red"}}, "unknown"}}) {
    param.clear();
    auto r = ParseEventsQuery(query, &param);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << want;
    EXPECT_THAT(r.status().message(), HasSubstr(want));
    EXPECT_EQ(param, query.back().first);
  }
}

TEST(OsRequestTest, ReniceTakesOnePriorityInRange) {
  EXPECT_EQ(*ParseRenice(R"({"priority": -7})"), -7);
  EXPECT_EQ(*ParseRenice(R"({"priority": 1000})"), 1000);
  std::string param;
  for (auto [body, want_param, want] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {R"({})", "priority", "priority: is required"},
           {R"({"priority": 1001})", "priority", "must be an integer in -1000..1000"},
           {R"({"priority": 1.5})", "priority", "must be an integer"},
           {R"({"priority": "high"})", "priority", "must be an integer"},
           {R"({"priority": 1, "nice": 2})", "nice", "nice: is not a field of this request"},
           {R"([1])", "", "not a JSON object"},
           {"", "", "empty"},
       }) {
    param.clear();
    auto r = ParseRenice(body, &param);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << body;
    EXPECT_EQ(param, want_param) << body;
    EXPECT_THAT(r.status().message(), HasSubstr(want)) << body << " -> " << r.status().message();
  }
}

TEST(OsRequestTest, SchedulerUpdatesTakeAPolicyAndItsParameters) {
  auto all = ParseSchedulerUpdate(R"({"policy": "fair"})");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->update.policy, "fair");
  EXPECT_FALSE(all->instance.has_value());
  auto one = ParseSchedulerUpdate(R"({"policy": "rr", "instance": 2})");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->instance, 2u);
  auto params = ParseSchedulerUpdate(R"({"fair": {"weights": {"acme": 1, "beta": 3}, "default_weight": 0.5},
      "rr": {"slice_tokens": 32}, "sjf": {"aging_tokens_per_second": 5}, "priority": {"aging_per_second": 0},
      "preemption": {"waiting_may_preempt": false, "min_tokens_before_preempt": 0, "mode": "recompute",
                     "swap_seconds_per_byte": 1e-9, "recompute_seconds_per_token": 0.002}})");
  ASSERT_TRUE(params.ok()) << params.status().ToString();
  const kernel::SchedulingUpdate& u = params->update;
  EXPECT_FALSE(u.policy.has_value());  // parameters alone leave the policy as it is
  EXPECT_EQ(u.fair_weights->at("beta"), 3);
  EXPECT_EQ(u.fair_default_weight, 0.5);
  EXPECT_EQ(u.rr_slice_tokens, 32u);
  EXPECT_EQ(u.sjf_aging_tokens_per_second, 5);
  EXPECT_EQ(u.priority_aging_per_second, 0);
  EXPECT_EQ(u.waiting_may_preempt, false);
  EXPECT_EQ(u.min_tokens_before_preempt, 0u);
  EXPECT_EQ(u.preempt_mode, kernel::PreemptChoice::kRecompute);
  EXPECT_EQ(u.swap_seconds_per_byte, 1e-9);
  EXPECT_EQ(u.recompute_seconds_per_token, 0.002);
  std::string param;
  for (auto [body, want_param, want] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {R"({})", "policy", "nothing to change"},
           {R"({"instance": 1})", "policy", "nothing to change"},
           {R"({"policy": "lottery"})", "policy", "expected fcfs, sjf, rr, priority or fair"},
           {R"({"policy": 3})", "policy", "policy: must be a string"},
           {R"({"policy": "rr", "instance": 0})", "instance", "instance: must be an integer"},
           {R"({"policy": "rr", "slice": 4})", "slice", "slice: is not a field of this request"},
           {R"({"rr": {"slice": 4}})", "rr.slice", "rr.slice: is not a field of this request"},
           {R"({"rr": 4})", "rr", "rr: must be an object"},
           {R"({"rr": {"slice_tokens": 0}})", "rr.slice_tokens", "rr.slice_tokens: must be an integer"},
           {R"({"rr": {"slice_tokens": 2.5}})", "rr.slice_tokens", "rr.slice_tokens: must be an integer"},
           {R"({"rr": {"slice_tokens": "16"}})", "rr.slice_tokens", "rr.slice_tokens: must be an integer"},
           {R"({"sjf": {"aging_tokens_per_second": 0}})", "sjf.aging_tokens_per_second", "must be > 0"},
           {R"({"sjf": {"aging_tokens_per_second": 1e12}})", "sjf.aging_tokens_per_second", "must be a number in"},
           {R"({"priority": {"aging_per_second": -1}})", "priority.aging_per_second", "must be a number in"},
           {R"({"fair": {"weights": {"acme": 0}}})", "fair.weights.acme", "fair.weights.acme: must be > 0"},
           {R"({"fair": {"weights": {"acme": "3"}}})", "fair.weights.acme", "must be a number"},
           {R"({"fair": {"weights": {"acme": null}}})", "fair.weights.acme", "must be a number"},
           {R"({"fair": {"weights": {"": 1}}})", "fair.weights", "a tenant name must be"},
           {R"({"fair": {"weights": [1, 3]}})", "fair.weights", "must be an object"},
           {R"({"fair": {"default_weight": -2}})", "fair.default_weight", "must be a number in"},
           {R"({"fair": {"weight": {"acme": 1}}})", "fair.weight", "is not a field"},
           {R"({"preemption": {"mode": "lru"}})", "preemption.mode", "must be auto, swap or recompute"},
           {R"({"preemption": {"waiting_may_preempt": 1}})", "preemption.waiting_may_preempt", "must be true or false"},
           {R"({"preemption": {"min_tokens_before_preempt": -1}})", "preemption.min_tokens_before_preempt", "must be an integer"},
           {R"({"preemption": {"swap_seconds_per_byte": 2}})", "preemption.swap_seconds_per_byte", "must be a number in"},
           {R"({"preemption": {"swap": true}})", "preemption.swap", "is not a field"},
       }) {
    param.clear();
    auto r = ParseSchedulerUpdate(body, &param);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << body;
    EXPECT_EQ(param, want_param) << body;
    EXPECT_THAT(r.status().message(), HasSubstr(want)) << body << " -> " << r.status().message();
  }
}

TEST(OsRequestTest, SchedulingSettingsJsonReadsBackToTheSameSettings) {
  kernel::SchedulingSettings s;
  s.policy = "fair";
  s.policy_options.fair.tenant_weights = {{"acme", 1}, {"beta", 3}};
  s.policy_options.rr.slice_tokens = 7;
  s.preemption.mode = kernel::PreemptChoice::kSwap;
  s.preemption.waiting_may_preempt = false;
  auto u = ParseSchedulingUpdate(SchedulingSettingsJson(s), nullptr);
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  const kernel::SchedulingSettings back = u->AppliedTo(kernel::SchedulingSettings{});
  EXPECT_EQ(back.policy, s.policy);
  EXPECT_EQ(back.policy_options, s.policy_options);
  EXPECT_EQ(back.preemption.mode, s.preemption.mode);
  EXPECT_EQ(back.preemption.waiting_may_preempt, false);
  EXPECT_EQ(back.preemption.min_tokens_before_preempt, s.preemption.min_tokens_before_preempt);
  EXPECT_EQ(back.preemption.costs.swap_seconds_per_byte, s.preemption.costs.swap_seconds_per_byte);
}

TEST(OsRequestTest, ModelActionsTakeAModelAndOnlyTheirOwnOptions) {
  auto load = ParseModelAction(ModelAction::kLoad, R"({"model": "tiny", "keep_alive": "5m"})");
  ASSERT_TRUE(load.ok()) << load.status().ToString();
  EXPECT_EQ(load->model, "tiny");
  EXPECT_EQ(load->keep_alive, std::chrono::minutes(5));
  auto unload = ParseModelAction(ModelAction::kUnload, R"({"model": "tiny", "unpin": true})");
  ASSERT_TRUE(unload.ok());
  EXPECT_TRUE(unload->unpin);
  std::string param;
  EXPECT_FALSE(ParseModelAction(ModelAction::kPin, R"({"model": "tiny", "unpin": true})", &param).ok());
  EXPECT_EQ(param, "unpin");
  EXPECT_FALSE(ParseModelAction(ModelAction::kUnload, R"({"model": "tiny", "keep_alive": 1})", &param).ok());
  EXPECT_EQ(param, "keep_alive");
  EXPECT_FALSE(ParseModelAction(ModelAction::kUnpin, R"({"model": ""})", &param).ok());
  EXPECT_EQ(param, "model");
  EXPECT_FALSE(ParseModelAction(ModelAction::kLoad, R"({"model": "tiny", "keep_alive": "soon"})", &param).ok());
  EXPECT_EQ(param, "keep_alive");
}

}  // namespace
}  // namespace llmasos::api
