// The authentication step over the daemon's real route table: every route but /health, /ready
// and the console's static files refuses a request without a valid key, with one 401 body whatever was wrong; scopes
// give 403; limits give 429 with Retry-After.
#include "api/auth_gate.h"

#include <gtest/gtest.h>

#include <set>

#include <nlohmann/json.hpp>

#include "api/daemon.h"
#include "api/generation.h"
#include "api/recording_exchange.h"
#include "services/registry/test_home.h"

namespace llmasos::api {
namespace {

using nlohmann::json;

// A path the pattern matches: each {param} segment becomes "1".
std::string PathFor(const std::string& pattern) {
  std::string out;
  size_t i = 0;
  while (i < pattern.size()) {
    if (pattern[i] == '{') {
      out += "1";
      i = pattern.find('}', i) + 1;
      continue;
    }
    out += pattern[i++];
  }
  return out;
}

class AuthGateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = auth::KeyStore::Open(home_.path() + "/state.db");
    ASSERT_TRUE(store.ok());
    auth_ = auth::Authenticator::Create(std::move(store).value(), auth::AuthenticatorOptions());
    gate_ = std::make_unique<AuthGate>(auth_.get());
    AddRoutes(router_, daemon_);
    router_.SetGate(gate_.get());
  }

  std::string NewKey(const std::string& scopes, auth::KeyLimits limits = {}) {
    auth::KeySpec spec;
    spec.scopes = *auth::ParseScopes(scopes);
    spec.limits = limits;
    auto c = auth_->store().Create(spec, UnixSeconds());
    EXPECT_TRUE(c.ok());
    return c->key;
  }

  // Runs the router and the gate on one request; whether the handler would run.
  bool Admitted(RecordingExchange& ex) {
    Router::Route route = router_.Match(ex.request_);
    EXPECT_NE(route.handler, nullptr) << ex.request().method << " " << ex.request().path;
    if (route.handler == nullptr) return false;
    return router_.Admit(ex, route);
  }

  registry::TempHome home_;
  std::unique_ptr<auth::Authenticator> auth_;
  std::unique_ptr<AuthGate> gate_;
  Daemon daemon_;
  Router router_;
};

TEST(PresentedKeyTest, ReadsBearerInAnyCaseThenXApiKey) {
  HttpRequest r;
  r.headers = {{"authorization", "Bearer  abc "}};
  EXPECT_EQ(PresentedKey(r), "abc");
  r.headers = {{"Authorization", "bearer xyz"}, {"x-api-key", "other"}};
  EXPECT_EQ(PresentedKey(r), "xyz");
  r.headers = {{"Authorization", "Basic dXNlcjpwYXNz"}, {"X-Api-Key", "k1"}};
  EXPECT_EQ(PresentedKey(r), "k1");
  r.headers = {};
  EXPECT_EQ(PresentedKey(r), "");
}

TEST_F(AuthGateTest, EveryNonPublicRouteRefusesMissingUnknownRevokedAndExpiredKeysAlike) {
  const std::string good = NewKey("infer,models,admin");
  const std::string revoked = NewKey("infer,models,admin");
  ASSERT_TRUE(auth_->store().Revoke(auth::ParseKey(revoked)->id, UnixSeconds()).ok());
  auth::KeySpec expiring;
  expiring.scopes = *auth::ParseScopes("infer,models,admin");
  expiring.expires_unix = UnixSeconds() - 1;
  auto expired = auth_->store().Create(expiring, UnixSeconds() - 10);
  ASSERT_TRUE(expired.ok());
  std::string unknown = good;
  unknown.back() = unknown.back() == 'q' ? 'r' : 'q';

  const std::vector<HeaderList> bad = {{},
                                       {{"Authorization", "Bearer " + unknown}},
                                       {{"x-api-key", revoked}},
                                       {{"Authorization", "Bearer " + expired->key}},
                                       {{"Authorization", "Bearer not-a-key"}}};
  std::set<std::string> public_paths;
  const auto table = router_.Table();
  ASSERT_GE(table.size(), 18u);
  for (const Router::RouteInfo& r : table) {
    if (r.scope == RouteScope::kPublic) {
      public_paths.insert(r.path);
      RecordingExchange ex(r.method, PathFor(r.path));
      EXPECT_TRUE(Admitted(ex)) << r.path;
      continue;
    }
    std::string first_body;
    for (const HeaderList& headers : bad) {
      RecordingExchange ex(r.method, PathFor(r.path), headers);
      EXPECT_FALSE(Admitted(ex)) << r.method << " " << r.path;
      EXPECT_EQ(ex.status_, 401) << r.method << " " << r.path;
      EXPECT_EQ(ex.ResponseHeader("WWW-Authenticate"), "Bearer");
      EXPECT_EQ(ex.caller(), nullptr);
      if (first_body.empty()) first_body = ex.body_;
      EXPECT_EQ(ex.body_, first_body) << r.path << ": the answer must not tell which keys exist";
      // In the route's API shape.
      const json body = json::parse(ex.body_);
      if (r.path.starts_with("/api/")) {
        EXPECT_EQ(body, json({{"error", std::string(auth::kInvalidKeyMessage)}}));
      } else {
        EXPECT_EQ(body["error"]["code"], "invalid_api_key");
        EXPECT_EQ(body["error"]["message"], std::string(auth::kInvalidKeyMessage));
      }
    }
    RecordingExchange ok(r.method, PathFor(r.path), {{"Authorization", "Bearer " + good}});
    EXPECT_TRUE(Admitted(ok)) << r.path;
    ASSERT_NE(ok.caller(), nullptr);
    EXPECT_EQ(ok.caller()->key_id(), auth::ParseKey(good)->id);
  }
  // The public list: /health, /ready, and the console's static files (the page holds no data;
  // it asks for a key and sends it with each call).
  EXPECT_TRUE(public_paths.count("/health") && public_paths.count("/ready"));
  for (const std::string& path : public_paths) {
    EXPECT_TRUE(path == "/health" || path == "/ready" || path == "/" || path.starts_with("/console/")) << path;
  }
}

TEST_F(AuthGateTest, AKeyWithoutTheRoutesScopeIsForbidden) {
  const std::string infer = NewKey("infer");
  const std::string models = NewKey("models");
  size_t num_forbidden = 0;
  for (const Router::RouteInfo& r : router_.Table()) {
    if (r.scope == RouteScope::kPublic) continue;
    for (const auto& [key, scope] : {std::pair{infer, RouteScope::kInfer}, {models, RouteScope::kModels}}) {
      RecordingExchange ex(r.method, PathFor(r.path), {{"x-api-key", key}});
      const bool admitted = Admitted(ex);
      EXPECT_EQ(admitted, r.scope == scope) << r.path;
      if (!admitted) {
        ++num_forbidden;
        EXPECT_EQ(ex.status_, 403) << r.path;
        EXPECT_NE(ex.body_.find(std::string(RouteScopeName(r.scope))), std::string::npos) << ex.body_;
      }
    }
  }
  EXPECT_GT(num_forbidden, 0u);
}

TEST_F(AuthGateTest, LimitsAnswer429WithRetryAfterAndTheBudgetWithout) {
  const std::string limited = NewKey("infer", {.requests_per_minute = 1});
  RecordingExchange first("GET", "/v1/models", {{"Authorization", "Bearer " + limited}});
  EXPECT_TRUE(Admitted(first));
  RecordingExchange second("GET", "/v1/models", {{"Authorization", "Bearer " + limited}});
  EXPECT_FALSE(Admitted(second));
  EXPECT_EQ(second.status_, 429);
  const std::string retry = second.ResponseHeader("Retry-After");
  ASSERT_FALSE(retry.empty());
  EXPECT_GE(std::stoi(retry), 1);
  EXPECT_LE(std::stoi(retry), 60);
  EXPECT_EQ(json::parse(second.body_)["error"]["code"], "rate_limit_exceeded");

  const std::string spent = NewKey("infer", {.token_budget = 10});
  {
    RecordingExchange ex("POST", "/api/generate", {{"x-api-key", spent}});
    ASSERT_TRUE(Admitted(ex));
    ex.caller()->Charge(8, 2, nullptr);
    ex.set_caller(nullptr);
  }
  RecordingExchange over("POST", "/api/generate", {{"x-api-key", spent}});
  EXPECT_FALSE(Admitted(over));
  EXPECT_EQ(over.status_, 429);
  EXPECT_EQ(over.ResponseHeader("Retry-After"), "");
  EXPECT_NE(json::parse(over.body_)["error"].get<std::string>().find("budget"), std::string::npos);
}

TEST_F(AuthGateTest, TheKeysTenantAndPriorityRangeGoOnTheProcess) {
  auth::KeySpec spec;
  spec.tenant = "acme";
  spec.default_priority = 1;
  spec.max_priority = 3;
  auto created = auth_->store().Create(spec, UnixSeconds());
  ASSERT_TRUE(created.ok());
  RecordingExchange ex("POST", "/v1/chat/completions", {{"Authorization", "Bearer " + created->key}});
  ASSERT_TRUE(Admitted(ex));
  kernel::ProcessSpec process;
  process.tenant = "default";
  ApplyCaller(ex.caller().get(), std::nullopt, process);
  EXPECT_EQ(process.tenant, "acme");
  EXPECT_EQ(ex.record().tenant, "acme");
  EXPECT_EQ(process.priority, 1);
  ApplyCaller(ex.caller().get(), 50, process);
  EXPECT_EQ(process.priority, 3);
  ApplyCaller(ex.caller().get(), -2, process);
  EXPECT_EQ(process.priority, -2);
}

TEST_F(AuthGateTest, WithoutAnyKeyEveryRouteServesAnonymously) {
  for (const Router::RouteInfo& r : router_.Table()) {
    RecordingExchange ex(r.method, PathFor(r.path));
    EXPECT_TRUE(Admitted(ex)) << r.path;
    if (r.scope != RouteScope::kPublic) {
      ASSERT_NE(ex.caller(), nullptr);
      EXPECT_TRUE(ex.caller()->anonymous());
    }
  }
}

}  // namespace
}  // namespace llmasos::api
