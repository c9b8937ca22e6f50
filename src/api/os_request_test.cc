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

TEST(OsRequestTest, SchedulerUpdatesNameAKnownPolicy) {
  auto all = ParseSchedulerUpdate(R"({"policy": "fair"})");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->policy, "fair");
  EXPECT_FALSE(all->instance.has_value());
  auto one = ParseSchedulerUpdate(R"({"policy": "rr", "instance": 2})");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->instance, 2u);
  std::string param;
  for (auto [body, want_param, want] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {R"({})", "policy", "policy: is required"},
           {R"({"policy": "lottery"})", "policy", "expected fcfs, sjf, rr, priority or fair"},
           {R"({"policy": "rr", "instance": 0})", "instance", "instance: must be an integer"},
           {R"({"policy": "rr", "slice": 4})", "slice", "slice: is not a field of this request"},
       }) {
    param.clear();
    auto r = ParseSchedulerUpdate(body, &param);
    ASSERT_FALSE(r.ok()) << body;
    EXPECT_EQ(param, want_param) << body;
    EXPECT_THAT(r.status().message(), HasSubstr(want)) << body << " -> " << r.status().message();
  }
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
