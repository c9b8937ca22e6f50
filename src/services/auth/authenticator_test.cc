#include "services/auth/authenticator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <utility>

#include "services/registry/test_home.h"

namespace llmasos::auth {
namespace {

using registry::TempHome;
using Outcome = Decision::Outcome;

class AuthenticatorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Authenticator> Make(bool open_without_keys = true) {
    auto store = KeyStore::Open(home_.path() + "/state.db");
    EXPECT_TRUE(store.ok());
    return Authenticator::Create(std::move(store).value(),
                                 {.open_without_keys = open_without_keys, .now_ms = [this] {
                                    if (auto hook = std::exchange(on_next_clock_read_, nullptr)) hook();
                                    return now_ms_.load();
                                  }});
  }
  std::string NewKey(Authenticator& auth, KeySpec spec) {
    auto c = auth.store().Create(spec, now_ms_ / 1000);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c->key;
  }
  KeyRecord Reload(Authenticator& auth, const std::string& key) { return **auth.store().Find(key); }

  TempHome home_;
  std::atomic<int64_t> now_ms_{1'000'000'000};
  // Runs once, on the thread that next reads the clock (a test's own thread: the writer never does).
  std::function<void()> on_next_clock_read_;
};

TEST_F(AuthenticatorTest, WithoutKeysLoopbackServesAnonymouslyUntilTheFirstKey) {
  auto auth = Make();
  Decision d = auth->Admit("", Scope::kAdmin);
  ASSERT_EQ(d.outcome, Outcome::kAdmitted);
  EXPECT_TRUE(d.caller->anonymous());
  EXPECT_EQ(d.caller->tenant(), "default");
  EXPECT_EQ(auth->Admit("sk-whatever-a-client-sends", Scope::kInfer).outcome, Outcome::kAdmitted);

  const std::string key = NewKey(*auth, KeySpec{});
  EXPECT_EQ(auth->Admit("", Scope::kInfer).outcome, Outcome::kUnauthenticated);
  EXPECT_EQ(auth->Admit(key, Scope::kInfer).outcome, Outcome::kAdmitted);
  // Revoking every key does not open the door again.
  ASSERT_TRUE(auth->store().Revoke(ParseKey(key)->id, 1).ok());
  EXPECT_EQ(auth->Admit("", Scope::kInfer).outcome, Outcome::kUnauthenticated);
}

TEST_F(AuthenticatorTest, NotOpenWithoutKeysRefusesEvenWhenNoKeyExists) {
  auto auth = Make(/*open_without_keys=*/false);
  EXPECT_EQ(auth->Admit("", Scope::kInfer).outcome, Outcome::kUnauthenticated);
}

TEST_F(AuthenticatorTest, UnknownRevokedAndExpiredKeysGetTheSameAnswerAndWrongScopeIsForbidden) {
  auto auth = Make();
  KeySpec spec;
  spec.scopes = *ParseScopes("infer");
  const std::string good = NewKey(*auth, spec);
  spec.expires_unix = now_ms_ / 1000 + 10;
  const std::string expiring = NewKey(*auth, spec);
  spec.expires_unix.reset();
  const std::string revoked = NewKey(*auth, spec);
  ASSERT_TRUE(auth->store().Revoke(ParseKey(revoked)->id, now_ms_ / 1000).ok());

  std::string unknown = good;
  unknown.back() = unknown.back() == 'x' ? 'y' : 'x';
  now_ms_ += 10'000;  // `expiring` has expired
  std::vector<Decision> refused = {auth->Admit("", Scope::kInfer), auth->Admit("nonsense", Scope::kInfer),
                                   auth->Admit(unknown, Scope::kInfer), auth->Admit(revoked, Scope::kInfer),
                                   auth->Admit(expiring, Scope::kInfer)};
  for (const Decision& d : refused) {
    EXPECT_EQ(d.outcome, Outcome::kUnauthenticated);
    EXPECT_EQ(d.message, refused[0].message);
    EXPECT_EQ(d.caller, nullptr);
  }
  Decision forbidden = auth->Admit(good, Scope::kAdmin);
  EXPECT_EQ(forbidden.outcome, Outcome::kForbidden);
  EXPECT_NE(forbidden.message.find("'admin'"), std::string::npos);
  EXPECT_EQ(auth->Admit(good, Scope::kInfer).outcome, Outcome::kAdmitted);
}

TEST_F(AuthenticatorTest, CallerCarriesTenantAndClampsPriority) {
  auto auth = Make();
  KeySpec spec;
  spec.tenant = "acme";
  spec.default_priority = 2;
  spec.max_priority = 5;
  Decision d = auth->Admit(NewKey(*auth, spec), Scope::kInfer);
  ASSERT_EQ(d.outcome, Outcome::kAdmitted);
  EXPECT_EQ(d.caller->tenant(), "acme");
  EXPECT_EQ(d.caller->Priority(std::nullopt), 2);
  EXPECT_EQ(d.caller->Priority(4), 4);
  EXPECT_EQ(d.caller->Priority(100), 5);
  EXPECT_EQ(d.caller->Priority(-7), -7);
}

TEST_F(AuthenticatorTest, RequestsPerMinuteLimitAnswersWithSecondsUntilTheWindowFrees) {
  auto auth = Make();
  KeySpec spec;
  spec.limits.requests_per_minute = 2;
  const std::string key = NewKey(*auth, spec);
  EXPECT_EQ(auth->Admit(key, Scope::kInfer).outcome, Outcome::kAdmitted);
  now_ms_ += 20'000;
  EXPECT_EQ(auth->Admit(key, Scope::kInfer).outcome, Outcome::kAdmitted);
  now_ms_ += 10'000;
  Decision limited = auth->Admit(key, Scope::kInfer);
  ASSERT_EQ(limited.outcome, Outcome::kLimited);
  EXPECT_EQ(limited.retry_after_seconds, 30);  // the first admission leaves the window in 30 s
  now_ms_ += 30'000;
  EXPECT_EQ(auth->Admit(key, Scope::kInfer).outcome, Outcome::kAdmitted);
}

TEST_F(AuthenticatorTest, ConcurrentLimitCountsCallersAlive) {
  auto auth = Make();
  KeySpec spec;
  spec.limits.concurrent = 1;
  const std::string key = NewKey(*auth, spec);
  Decision first = auth->Admit(key, Scope::kInfer);
  ASSERT_EQ(first.outcome, Outcome::kAdmitted);
  Decision second = auth->Admit(key, Scope::kInfer);
  EXPECT_EQ(second.outcome, Outcome::kLimited);
  EXPECT_GE(second.retry_after_seconds, 1);
  first.caller.reset();  // the request ended
  EXPECT_EQ(auth->Admit(key, Scope::kInfer).outcome, Outcome::kAdmitted);
}

TEST_F(AuthenticatorTest, TokensPerMinuteCountsChargedTokens) {
  auto auth = Make();
  KeySpec spec;
  spec.limits.tokens_per_minute = 100;
  const std::string key = NewKey(*auth, spec);
  {
    Decision d = auth->Admit(key, Scope::kInfer);
    ASSERT_EQ(d.outcome, Outcome::kAdmitted);
    d.caller->Charge(30, 20, nullptr);
  }
  now_ms_ += 15'000;
  {
    Decision d = auth->Admit(key, Scope::kInfer);
    ASSERT_EQ(d.outcome, Outcome::kAdmitted);
    d.caller->Charge(40, 10, nullptr);
  }
  now_ms_ += 5'000;
  Decision limited = auth->Admit(key, Scope::kInfer);
  ASSERT_EQ(limited.outcome, Outcome::kLimited);
  // 100 tokens in the window; below 100 once the first 50 leave it, 40 s from now.
  EXPECT_EQ(limited.retry_after_seconds, 40);
  now_ms_ += 40'000;
  EXPECT_EQ(auth->Admit(key, Scope::kInfer).outcome, Outcome::kAdmitted);
}

TEST_F(AuthenticatorTest, TokenBudgetIsAQuotaThatDoesNotPassWithTime) {
  auto auth = Make();
  KeySpec spec;
  spec.limits.token_budget = 50;
  const std::string key = NewKey(*auth, spec);
  {
    Decision d = auth->Admit(key, Scope::kInfer);
    ASSERT_EQ(d.outcome, Outcome::kAdmitted);
    d.caller->Charge(45, 5, nullptr);
  }
  Decision spent = auth->Admit(key, Scope::kInfer);
  EXPECT_EQ(spent.outcome, Outcome::kQuotaExhausted);
  now_ms_ += 3'600'000;
  auth->Flush();
  EXPECT_EQ(auth->Admit(key, Scope::kInfer).outcome, Outcome::kQuotaExhausted);  // read back from state.db
}

// A commit that lands between Admit's read of the store and its limit check moves those tokens out
// of the ledger's uncommitted count after the read missed them; they must still count. The clock
// is read between the two (for the key's expiry), so the test commits from there.
TEST_F(AuthenticatorTest, TokensCommittedBetweenTheStoreReadAndTheCheckStillCount) {
  auto auth = Make();
  KeySpec spec;
  spec.limits.token_budget = 50;
  const std::string key = NewKey(*auth, spec);
  Decision first = auth->Admit(key, Scope::kInfer);
  ASSERT_EQ(first.outcome, Outcome::kAdmitted);
  bool committed = false;
  on_next_clock_read_ = [&] {
    first.caller->Charge(45, 5, nullptr);
    auth->Flush();
    committed = true;
  };
  EXPECT_EQ(auth->Admit(key, Scope::kInfer).outcome, Outcome::kQuotaExhausted);
  EXPECT_TRUE(committed);
}

TEST_F(AuthenticatorTest, UsageIsCommittedBeforeTheCallbackAndCountsEachRequestOnce) {
  auto auth = Make();
  const std::string key = NewKey(*auth, KeySpec{});
  std::atomic<bool> recorded{false};
  {
    Decision d = auth->Admit(key, Scope::kInfer);
    ASSERT_EQ(d.outcome, Outcome::kAdmitted);
    d.caller->Charge(7, 3, [&] {
      // Committed: another connection reads it (with what came next too, if it joined the batch).
      auto other = KeyStore::Open(home_.path() + "/state.db");
      ASSERT_TRUE(other.ok());
      KeyRecord r = **(*other)->Find(key);
      EXPECT_GE(r.usage.requests, 1);
      EXPECT_EQ(r.usage.prompt_tokens, 7);
      EXPECT_GE(r.usage.generated_tokens, 3);
      recorded = true;
    });
    d.caller->Charge(0, 2, nullptr);  // more tokens, the same request
  }
  // A request refused by its handler (never charged) still counts.
  { ASSERT_EQ(auth->Admit(key, Scope::kInfer).outcome, Outcome::kAdmitted); }
  auth->Flush();
  EXPECT_TRUE(recorded);
  KeyRecord r = Reload(*auth, key);
  EXPECT_EQ(r.usage.requests, 2);
  EXPECT_EQ(r.usage.prompt_tokens, 7);
  EXPECT_EQ(r.usage.generated_tokens, 5);
}

TEST_F(AuthenticatorTest, CallersOutlivingTheAuthenticatorStillRecord) {
  std::shared_ptr<Caller> late;
  std::string key;
  {
    auto auth = Make();
    key = NewKey(*auth, KeySpec{});
    Decision d = auth->Admit(key, Scope::kInfer);
    ASSERT_EQ(d.outcome, Outcome::kAdmitted);
    late = d.caller;
  }
  bool recorded = false;
  late->Charge(4, 4, [&] { recorded = true; });
  EXPECT_TRUE(recorded);
  late.reset();
  auto store = KeyStore::Open(home_.path() + "/state.db");
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*(*store)->Find(key))->usage.tokens(), 8);
}

}  // namespace
}  // namespace llmasos::auth
