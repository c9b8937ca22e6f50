#include "services/auth/key_store.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <set>

#include "services/registry/test_home.h"

namespace llmasos::auth {
namespace {

using registry::TempHome;

std::unique_ptr<KeyStore> OpenStore(const TempHome& home) {
  auto store = KeyStore::Open(home.path() + "/state.db");
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return std::move(store).value();
}

TEST(ScopesTest, ParseAndPrintRoundTripAndUnknownScopesAreRefused) {
  auto all = ParseScopes("admin,infer,models");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(ScopesToString(*all), "infer,models,admin");
  EXPECT_TRUE(HasScope(*ParseScopes("models"), Scope::kModels));
  EXPECT_FALSE(HasScope(*ParseScopes("models"), Scope::kInfer));
  auto bad = ParseScopes("infer,root");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'root'"), std::string::npos);
  EXPECT_FALSE(ParseScopes("").ok());
  EXPECT_FALSE(ParseScopes("infer,").ok());
}

TEST(KeyStoreTest, CreatedKeyIsFoundByItselfOnlyAndOnlyItsHashIsStored) {
  TempHome home;
  auto store = OpenStore(home);
  KeySpec spec;
  spec.tenant = "acme";
  spec.scopes = *ParseScopes("infer,admin");
  spec.limits.requests_per_minute = 10;
  spec.max_priority = 5;
  auto created = store->Create(spec, 1000);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  const std::string& key = created->key;
  // llmasos-<16 hex>-<43 base64url>: 256 bits of secret.
  EXPECT_EQ(key.size(), std::string("llmasos-").size() + 16 + 1 + 43);
  ASSERT_TRUE(ParseKey(key).has_value());
  EXPECT_EQ(ParseKey(key)->id, created->record.id);

  auto found = store->Find(key);
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->spec.tenant, "acme");
  EXPECT_EQ((*found)->spec.scopes, spec.scopes);
  EXPECT_EQ((*found)->spec.limits.requests_per_minute, 10);
  EXPECT_EQ((*found)->spec.max_priority, 5);

  // The same id with another secret, a truncated key, and junk are not found.
  std::string forged = key;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(store->Find(forged)->has_value());
  EXPECT_FALSE(store->Find(key.substr(0, key.size() - 1))->has_value());
  EXPECT_FALSE(store->Find("sk-anything")->has_value());
  EXPECT_FALSE(store->Find("")->has_value());

  // The file holds no copy of the secret.
  std::ifstream in(home.path() + "/state.db", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ifstream wal(home.path() + "/state.db-wal", std::ios::binary);
  bytes.append((std::istreambuf_iterator<char>(wal)), std::istreambuf_iterator<char>());
  // The secret is the key's last 43 characters (base64url of 32 bytes; it may hold a '-'
  // itself, so it is not "what follows the last '-'").
  ASSERT_GT(key.size(), 43u);
  const std::string secret = key.substr(key.size() - 43);
  EXPECT_EQ(bytes.find(secret), std::string::npos);
}

TEST(KeyStoreTest, KeysAreDistinct) {
  TempHome home;
  auto store = OpenStore(home);
  std::set<std::string> keys, ids;
  for (int i = 0; i < 20; ++i) {
    auto c = store->Create(KeySpec{}, 1);
    ASSERT_TRUE(c.ok());
    keys.insert(c->key);
    ids.insert(c->record.id);
  }
  EXPECT_EQ(keys.size(), 20u);
  EXPECT_EQ(ids.size(), 20u);
}

TEST(KeyStoreTest, RevokeAndExpiryMakeKeysInactiveAndAnotherConnectionSeesIt) {
  TempHome home;
  auto store = OpenStore(home);
  EXPECT_FALSE(*store->AnyKeys());
  KeySpec spec;
  spec.expires_unix = 2000;
  auto expiring = store->Create(spec, 1000);
  auto plain = store->Create(KeySpec{}, 1000);
  ASSERT_TRUE(expiring.ok() && plain.ok());
  EXPECT_TRUE(*store->AnyKeys());
  EXPECT_TRUE((*store->Find(expiring->key))->ActiveAt(1999));
  EXPECT_FALSE((*store->Find(expiring->key))->ActiveAt(2000));

  // A second connection (another process: `llmasos keys revoke` beside the daemon).
  auto other = OpenStore(home);
  ASSERT_TRUE(other->Revoke(plain->record.id, 1500).ok());
  EXPECT_TRUE(other->Revoke(plain->record.id, 1600).ok());  // again: keeps the first time
  auto after = store->Find(plain->key);
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_FALSE((*after)->ActiveAt(1501));
  EXPECT_EQ((*after)->revoked_unix, 1500);
  EXPECT_TRUE(*store->AnyActiveKeys(1999));
  EXPECT_FALSE(*store->AnyActiveKeys(2000));
  EXPECT_TRUE(*store->AnyKeys());

  auto missing = store->Revoke("0123456789abcdef", 1);
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);
}

TEST(KeyStoreTest, UsageAddsUpAcrossBatchesAndReopens) {
  TempHome home;
  std::string key, id;
  {
    auto store = OpenStore(home);
    auto c = store->Create(KeySpec{}, 1);
    ASSERT_TRUE(c.ok());
    key = c->key;
    id = c->record.id;
    ASSERT_TRUE(store->AddUsage({{id, {.requests = 1, .prompt_tokens = 10, .generated_tokens = 5}},
                                 {"ffffffffffffffff", {.requests = 7}}})
                    .ok());
    ASSERT_TRUE(store->AddUsage({{id, {.requests = 2, .prompt_tokens = 1, .generated_tokens = 2}}}).ok());
  }
  auto store = OpenStore(home);
  auto r = store->Find(key);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->usage.requests, 3);
  EXPECT_EQ((*r)->usage.prompt_tokens, 11);
  EXPECT_EQ((*r)->usage.generated_tokens, 7);
  auto list = store->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].usage.tokens(), 18);
}

TEST(KeyStoreTest, BadSpecsAreRefusedNamingTheProblem) {
  TempHome home;
  auto store = OpenStore(home);
  auto refused = [&](KeySpec spec, const std::string& needle) {
    auto c = store->Create(spec, 1);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find(needle), std::string::npos) << c.status().message();
  };
  KeySpec s;
  s.tenant = "";
  refused(s, "tenant");
  s.tenant = "a b";
  refused(s, "tenant");
  s = {};
  s.scopes = 0;
  refused(s, "scopes");
  s = {};
  s.limits.tokens_per_minute = -1;
  refused(s, "--tpm");
  s = {};
  s.default_priority = 3;
  s.max_priority = 2;
  refused(s, "--max-priority");
  s = {};
  s.max_priority = 5000;
  refused(s, "--max-priority");
  EXPECT_FALSE(*store->AnyKeys());
}

}  // namespace
}  // namespace llmasos::auth
