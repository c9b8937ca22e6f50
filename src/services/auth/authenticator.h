// The authentication step every non-public request goes through before its handler: the key
// it presents, the scope the route needs, and the key's limits, answered as a Decision; an
// admitted request gets a Caller, which carries its identity (key, tenant, scopes, priority
// range) to the handlers and accounts its usage when it ends.
//
// Limits (0 = none), checked in this order at admission:
//   token budget   the key's lifetime prompt + generated tokens (persisted usage plus what is
//                  not yet written) has reached it: kQuotaExhausted (it never passes by itself);
//   concurrent     requests of the key in flight (Callers alive) has reached it: kLimited, retry
//                  after 1 s;
//   requests/min   admissions in the last 60 s: kLimited, retry when the oldest leaves the window;
//   tokens/min     tokens charged in the last 60 s (a request's tokens count when it ends): kLimited,
//                  retry when enough of them leave the window.
// A request admitted under a limit may take its key past the token limits: tokens are known
// only at the end.
//
// Without keys: while no key was ever created and `open_without_keys` is set (the daemon on a
// loopback address), every request is admitted as the anonymous caller (tenant "default", all
// scopes, no limits). Once a key exists, every request needs one, even after all are revoked.
//
// Usage: each admitted request is counted once (requests + its tokens) in the key's row of
// state.db, by a writer thread that commits whatever accumulated in one transaction (a burst of
// request ends is one commit). Charge's callback runs once that commit is done, so a response
// that waits for it is only sent after its usage is on disk (WAL: it survives kill -9).
//
// Revocation and expiry take effect at the next request: each one reads its key's row.
//
// Thread safety: Admit, and Callers' methods, from any thread.
#ifndef LLMASOS_SERVICES_AUTH_AUTHENTICATOR_H_
#define LLMASOS_SERVICES_AUTH_AUTHENTICATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "services/auth/key_store.h"

namespace llmasos::auth {

struct Ledger;  // limits and usage shared by the Authenticator and its Callers

// Who an admitted request comes from. Lives as long as the request (the HTTP exchange holds it);
// destroying it ends the request for the concurrency limit.
class Caller {
 public:
  ~Caller();
  Caller(const Caller&) = delete;
  Caller& operator=(const Caller&) = delete;

  bool anonymous() const { return key_id_.empty(); }
  const std::string& key_id() const { return key_id_; }  // "" when anonymous
  const std::string& tenant() const { return tenant_; }
  ScopeSet scopes() const { return scopes_; }
  int32_t default_priority() const { return default_priority_; }
  int32_t max_priority() const { return max_priority_; }
  // The priority a request runs at: its own (or the key's default when it has none), clamped
  // to the key's maximum.
  int32_t Priority(std::optional<int32_t> requested) const;

  // Accounts the request's tokens (the request itself is counted once, with its first charge
  // or when the Caller goes without one). `recorded`, if set, runs once the usage is committed
  // (on the writer's thread, or at once when the caller is anonymous); it runs even when the
  // write failed (logged), so a response never waits forever.
  void Charge(int64_t prompt_tokens, int64_t generated_tokens, std::function<void()> recorded);

 private:
  friend class Authenticator;
  Caller() = default;

  std::shared_ptr<Ledger> ledger_;  // null when anonymous
  std::string key_id_;
  std::string tenant_ = "default";
  ScopeSet scopes_ = 0;
  int32_t default_priority_ = 0;
  int32_t max_priority_ = kMaxPriority;
  bool counted_ = false;  // the request was counted by a Charge
};

struct Decision {
  enum class Outcome {
    kAdmitted,
    kUnauthenticated,  // no key, or one that is malformed, unknown, revoked or expired (401)
    kForbidden,        // the key lacks the scope (403)
    kLimited,          // a rate or concurrency limit (429 with Retry-After)
    kQuotaExhausted,   // the token budget is spent (429, no Retry-After)
    kError,            // the key store failed (503)
  };
  Outcome outcome = Outcome::kUnauthenticated;
  std::string message;
  int64_t retry_after_seconds = 0;  // kLimited: seconds until the request would pass, >= 1
  std::shared_ptr<Caller> caller;   // kAdmitted only
};

struct AuthenticatorOptions {
  // Admit requests without a key while no key exists (see above).
  bool open_without_keys = true;
  // Milliseconds since the Unix epoch; the system clock by default. For tests.
  std::function<int64_t()> now_ms;
};

class Authenticator {
 public:
  // Takes the store; starts the usage writer.
  static std::unique_ptr<Authenticator> Create(std::unique_ptr<KeyStore> store, AuthenticatorOptions options);
  // Writes what usage is pending and stops the writer; Callers that outlive it still record
  // theirs (synchronously).
  ~Authenticator();
  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // `presented` is the key as sent ("" when none); `needed` the route's scope.
  Decision Admit(std::string_view presented, Scope needed);

  // Blocks until every charge made so far is committed. For tests and shutdown.
  void Flush();

  KeyStore& store();

 private:
  explicit Authenticator(std::shared_ptr<Ledger> ledger) : ledger_(std::move(ledger)) {}
  std::shared_ptr<Ledger> ledger_;
};

// The message every 401 carries, whatever was wrong with the key (so that an answer never
// tells whether a key exists).
inline constexpr std::string_view kInvalidKeyMessage =
    "a valid API key is required (Authorization: Bearer KEY or x-api-key: KEY); "
    "an administrator creates one with `llmasos keys create`";

}  // namespace llmasos::auth

#endif  // LLMASOS_SERVICES_AUTH_AUTHENTICATOR_H_
