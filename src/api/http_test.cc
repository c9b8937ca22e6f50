// The HTTP layer's pure parts: error bodies in each API's shape, path scrubbing, the status
// mapping, query strings, and the router's matching (path parameters) and 404 / 405 answers
// (through a recording Exchange).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/errors.h"
#include "api/recording_exchange.h"
#include "api/router.h"

namespace llmasos::api {
namespace {

TEST(ErrorsTest, OpenAiShapeOnV1AndOllamaShapeOnApi) {
  ApiError e{.http_status = 400, .message = "temperature: out of range", .param = "temperature"};
  auto openai = nlohmann::json::parse(ErrorBody("/v1/chat/completions", e));
  EXPECT_EQ(openai["error"]["message"], "temperature: out of range");
  EXPECT_EQ(openai["error"]["type"], "invalid_request_error");
  EXPECT_EQ(openai["error"]["param"], "temperature");
  EXPECT_TRUE(openai["error"]["code"].is_null());
  auto ollama = nlohmann::json::parse(ErrorBody("/api/chat", e));
  EXPECT_EQ(ollama, nlohmann::json({{"error", "temperature: out of range"}}));
  e.http_status = 503;
  EXPECT_EQ(nlohmann::json::parse(ErrorBody("/v1/models", e))["error"]["type"], "server_error");
}

TEST(ErrorsTest, ScrubPathsHidesAbsolutePathsButKeepsOtherSlashes) {
  EXPECT_EQ(ScrubPaths("cannot open '/home/u/.llmasos/blobs/sha256-ab': no such file"),
            "cannot open '<path>': no such file");
  EXPECT_EQ(ScrubPaths("loading /root/x.gguf failed"), "loading <path> failed");
  EXPECT_EQ(ScrubPaths("a / b and http://host/x and 3/4"), "a / b and http://host/x and 3/4");
}

TEST(ErrorsTest, SendStatusMapsCodesScrubsAndSetsRetryAfter) {
  RecordingExchange ex("POST", "/api/generate");
  SendStatus(ex, UnavailableError("model m is loading from /srv/blobs/x"), 7);
  EXPECT_EQ(ex.status_, 503);
  EXPECT_EQ(ex.body_, R"({"error":"model m is loading from <path>"})");
  ASSERT_EQ(ex.headers_.size(), 1u);
  EXPECT_EQ(ex.headers_[0], (std::pair<std::string, std::string>{"Retry-After", "7"}));
  EXPECT_EQ(HttpStatusFor(StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusFor(StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusFor(StatusCode::kResourceExhausted), 507);
  EXPECT_EQ(HttpStatusFor(StatusCode::kInternal), 500);
}

// Match, then what the server does with a miss.
Router::Route MatchOrAnswer(const Router& router, RecordingExchange& ex) {
  Router::Route route = router.Match(ex.request_);
  if (route.handler == nullptr) Router::SendMiss(ex, route);
  return route;
}

TEST(RouterTest, FindsTheHandlerAndAnswersUnknownPathsAndMethods) {
  Router router;
  int calls = 0;
  router.Add("GET", "/v1/models", RouteScope::kInfer, [&](const ExchangePtr&) { ++calls; });
  router.Add("POST", "/api/pull", RouteScope::kModels, [&](const ExchangePtr&) { ++calls; }, Pool::kSlow);

  auto found = std::make_shared<RecordingExchange>("POST", "/api/pull");
  Router::Route route = MatchOrAnswer(router, *found);
  ASSERT_NE(route.handler, nullptr);
  EXPECT_EQ(route.pool, Pool::kSlow);
  (*route.handler)(found);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(found->status_, 0);  // the router itself answered nothing

  auto missing = std::make_shared<RecordingExchange>("GET", "/v1/nothing");
  EXPECT_EQ(MatchOrAnswer(router, *missing).handler, nullptr);
  EXPECT_EQ(missing->status_, 404);
  EXPECT_NE(missing->body_.find("/v1/nothing"), std::string::npos);

  auto wrong = std::make_shared<RecordingExchange>("DELETE", "/v1/models");
  EXPECT_EQ(MatchOrAnswer(router, *wrong).handler, nullptr);
  EXPECT_EQ(wrong->status_, 405);
  ASSERT_EQ(wrong->headers_.size(), 1u);
  EXPECT_EQ(wrong->headers_[0].second, "GET");
}

TEST(RouterTest, PathParametersMatchOneSegmentAndArePercentDecoded) {
  Router router;
  std::string seen;
  router.Add("GET", "/os/processes/{id}", RouteScope::kAdmin, [&](const ExchangePtr& ex) { seen = ex->request().PathParam("id"); });
  router.Add("DELETE", "/os/processes/{id}", RouteScope::kAdmin, [](const ExchangePtr&) {});

  auto ex = std::make_shared<RecordingExchange>("GET", "/os/processes/3-17");
  Router::Route route = MatchOrAnswer(router, *ex);
  ASSERT_NE(route.handler, nullptr);
  EXPECT_EQ(route.pattern, "/os/processes/{id}");  // what metrics label the request by
  (*route.handler)(ex);
  EXPECT_EQ(seen, "3-17");
  EXPECT_EQ(ex->request().PathParam("other"), "");

  auto escaped = std::make_shared<RecordingExchange>("GET", "/os/processes/a%20b");
  ASSERT_NE(MatchOrAnswer(router, *escaped).handler, nullptr);
  EXPECT_EQ(escaped->request().PathParam("id"), "a b");

  // A parameter is one non-empty, well-escaped segment: anything else names nothing.
  for (const char* path : {"/os/processes/", "/os/processes", "/os/processes/1/2", "/os/processes/%zz"}) {
    auto miss = std::make_shared<RecordingExchange>("GET", path);
    EXPECT_EQ(MatchOrAnswer(router, *miss).handler, nullptr) << path;
    EXPECT_EQ(miss->status_, 404) << path;
  }

  auto wrong = std::make_shared<RecordingExchange>("PUT", "/os/processes/4");
  EXPECT_EQ(MatchOrAnswer(router, *wrong).handler, nullptr);
  EXPECT_EQ(wrong->status_, 405);
  ASSERT_EQ(wrong->headers_.size(), 1u);
  EXPECT_EQ(wrong->headers_[0].second, "DELETE, GET");
}

TEST(RouterTest, LiteralSegmentsWinOverParametersWhateverTheOrderOfAdding) {
  Router router;
  std::string which;
  router.Add("GET", "/os/models/{name}", RouteScope::kAdmin, [&](const ExchangePtr&) { which = "param"; });
  router.Add("POST", "/os/models/{name}", RouteScope::kAdmin, [&](const ExchangePtr&) { which = "param-post"; });
  router.Add("GET", "/os/models/pins", RouteScope::kAdmin, [&](const ExchangePtr&) { which = "literal"; });
  router.Add("GET", "/{a}/models/{b}", RouteScope::kAdmin, [&](const ExchangePtr&) { which = "two-params"; });

  auto pins = std::make_shared<RecordingExchange>("GET", "/os/models/pins");
  (*MatchOrAnswer(router, *pins).handler)(pins);
  EXPECT_EQ(which, "literal");
  EXPECT_TRUE(pins->request().path_params.empty());

  auto named = std::make_shared<RecordingExchange>("GET", "/os/models/smollm2");
  (*MatchOrAnswer(router, *named).handler)(named);
  EXPECT_EQ(which, "param");
  EXPECT_EQ(named->request().PathParam("name"), "smollm2");

  // The literal route has no POST: the next pattern that matches and takes POST does.
  auto post = std::make_shared<RecordingExchange>("POST", "/os/models/pins");
  (*MatchOrAnswer(router, *post).handler)(post);
  EXPECT_EQ(which, "param-post");

  auto other = std::make_shared<RecordingExchange>("GET", "/v9/models/x");
  (*MatchOrAnswer(router, *other).handler)(other);
  EXPECT_EQ(which, "two-params");
  EXPECT_EQ(other->request().PathParam("a"), "v9");
  EXPECT_EQ(other->request().PathParam("b"), "x");
}

TEST(RouterTest, AddingARouteTwiceIsABug) {
  Router router;
  router.Add("GET", "/x/{id}", RouteScope::kAdmin, [](const ExchangePtr&) {});
  EXPECT_DEATH(router.Add("GET", "/x/{id}", RouteScope::kAdmin, [](const ExchangePtr&) {}), "added twice");
  EXPECT_DEATH(router.Add("GET", "/y/{id}/{id}", RouteScope::kAdmin, [](const ExchangePtr&) {}), "repeated parameter");
}

TEST(HttpTest, QueryStringsAreSplitAndDecoded) {
  auto q = ParseQuery("state=running&tenant=a%2Bb&model=x+y&flag&&empty=");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(*q, (HeaderList{{"state", "running"}, {"tenant", "a+b"}, {"model", "x y"}, {"flag", ""}, {"empty", ""}}));
  EXPECT_TRUE(ParseQuery("")->empty());
  auto bad = ParseQuery("tenant=%4");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tenant"), std::string::npos);
  EXPECT_FALSE(PercentDecode("%g0").ok());
  EXPECT_EQ(*PercentDecode("a+b%2f"), "a+b/");
}

}  // namespace
}  // namespace llmasos::api
