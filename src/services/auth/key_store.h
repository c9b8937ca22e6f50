// API keys: who may use the daemon, as which tenant, for what, and how much.
//
// A key is `llmasos-<id>-<secret>`: a public id (16 hex digits, what `keys list` and logs
// show) and a 256-bit random secret (OpenSSL RAND_bytes, 43 base64url characters). The key
// is shown once, when created; state.db keeps only the SHA-256 of the whole key, and a
// presented key is found by its id and then compared hash to hash in constant time
// (CRYPTO_memcmp), so neither timing nor the database gives the secret away.
//
// Tables in $LLMASOS_HOME/state.db (component "auth", services/store/sqlite.h):
//   auth_keys(id PRIMARY KEY, hash, name, tenant, scopes, created, expires, revoked,
//             rpm, tpm, concurrent, token_budget, default_priority, max_priority,
//             requests, prompt_tokens, generated_tokens)
// Usage counters live in the key's row: AddUsage adds to them, one transaction per batch.
//
// Thread safety: a KeyStore serializes its calls (one connection behind a mutex); several
// processes may open the same state.db (the daemon reads what `llmasos keys` writes).
#ifndef LLMASOS_SERVICES_AUTH_KEY_STORE_H_
#define LLMASOS_SERVICES_AUTH_KEY_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/store/sqlite.h"
#include "util/mutex.h"
#include "util/status.h"

namespace llmasos::auth {

// What a key may do. A route needs one scope; a key holds a set of them.
enum class Scope : uint32_t {
  kInfer = 1,   // generation and embeddings, and reading the model list
  kModels = 2,  // installing, copying and removing models
  kAdmin = 4,   // the daemon's own surface (/os/*, /debug/*)
};
using ScopeSet = uint32_t;
inline bool HasScope(ScopeSet set, Scope s) { return (set & static_cast<uint32_t>(s)) != 0; }
// "infer,models" -> set; InvalidArgument naming an unknown scope or an empty list.
StatusOr<ScopeSet> ParseScopes(std::string_view text);
// The set as "infer,models,admin" (in that order).
std::string ScopesToString(ScopeSet set);
std::string_view ScopeName(Scope s);

inline constexpr int32_t kMaxPriority = 1000;  // the API's priority range is [-1000, 1000]

// 0 means "no limit" for each.
struct KeyLimits {
  int64_t requests_per_minute = 0;
  int64_t tokens_per_minute = 0;  // prompt + generated tokens
  int64_t concurrent = 0;         // requests in flight at once
  int64_t token_budget = 0;       // prompt + generated tokens over the key's life
};

struct KeySpec {
  std::string tenant = "default";  // 1..128 bytes of [A-Za-z0-9._-]
  std::string name;                // a label for people, <= 128 bytes
  ScopeSet scopes = static_cast<uint32_t>(Scope::kInfer);
  std::optional<int64_t> expires_unix;  // none: never
  KeyLimits limits;
  int32_t default_priority = 0;  // a request without "priority" runs at this
  int32_t max_priority = 0;      // a request's priority is clamped to this
};

struct KeyUsage {
  int64_t requests = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  int64_t tokens() const { return prompt_tokens + generated_tokens; }
};

struct KeyRecord {
  std::string id;
  KeySpec spec;
  int64_t created_unix = 0;
  std::optional<int64_t> revoked_unix;
  KeyUsage usage;
  // Whether it lets anyone in at `now_unix`: not revoked, not expired.
  bool ActiveAt(int64_t now_unix) const;
};

struct CreatedKey {
  KeyRecord record;
  std::string key;  // the whole key; never stored
};

// The parts of a presented key, or nullopt when it is not shaped like one of ours.
struct ParsedKey {
  std::string id;
};
std::optional<ParsedKey> ParseKey(std::string_view key);
// Validates a tenant name (the kernel's 1..128 bytes, limited to [A-Za-z0-9._-] so that it
// is safe in logs and metric labels).
Status ValidateTenant(std::string_view tenant);

class KeyStore {
 public:
  // Opens (creating) `path`, usually $LLMASOS_HOME/state.db, and migrates the auth tables.
  static StatusOr<std::unique_ptr<KeyStore>> Open(const std::string& path);
  // $LLMASOS_HOME/state.db, creating $LLMASOS_HOME when missing.
  static StatusOr<std::unique_ptr<KeyStore>> OpenDefault();

  // A new key; InvalidArgument for a bad tenant, name, priority pair or limit.
  StatusOr<CreatedKey> Create(const KeySpec& spec, int64_t now_unix);
  // Every key, oldest first.
  StatusOr<std::vector<KeyRecord>> List();
  // NotFound for an unknown id; revoking a revoked key keeps the first time.
  Status Revoke(std::string_view id, int64_t now_unix);
  // The key `key` names, if its id exists and its hash matches (in constant time); nullopt
  // for a key that is malformed or unknown. Revoked and expired keys are returned: the caller
  // decides (and answers them like unknown ones).
  StatusOr<std::optional<KeyRecord>> Find(std::string_view key);
  // The same for a key its caller has parsed already. REQUIRES: parsed is ParseKey(key).
  StatusOr<std::optional<KeyRecord>> Find(const ParsedKey& parsed, std::string_view key);
  // Whether any key was ever created (revoked and expired ones count).
  StatusOr<bool> AnyKeys();
  // Whether a key that is neither revoked nor expired exists.
  StatusOr<bool> AnyActiveKeys(int64_t now_unix);

  struct UsageDelta {
    std::string key_id;
    KeyUsage add;
  };
  // Adds every delta in one transaction. Deltas for ids that no longer exist are ignored.
  Status AddUsage(const std::vector<UsageDelta>& deltas);

 private:
  explicit KeyStore(std::unique_ptr<store::Database> db) : db_(std::move(db)) {}
  StatusOr<std::optional<KeyRecord>> FindById(std::string_view id, std::string* hash) REQUIRES(mu_);

  Mutex mu_;
  std::unique_ptr<store::Database> db_ GUARDED_BY(mu_);
};

}  // namespace llmasos::auth

#endif  // LLMASOS_SERVICES_AUTH_KEY_STORE_H_
