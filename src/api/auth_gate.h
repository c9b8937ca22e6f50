// The router's gate over the authenticator (services/auth): reads the key a request presents,
// asks the authenticator, and answers refusals in the route's API shape:
//   401 invalid_api_key      no key, or a malformed, unknown, revoked or expired one (one body
//                            for all, with WWW-Authenticate: Bearer)
//   403 insufficient_scope   the key lacks the route's scope
//   429 rate_limit_exceeded  a per-key rate or concurrency limit, with Retry-After
//   429 insufficient_quota   the key's token budget is spent
//   503                      the key store cannot be read (Retry-After: 1)
//
// Thread safety: Admit from any thread (the authenticator is thread-safe).
#ifndef LLMASOS_API_AUTH_GATE_H_
#define LLMASOS_API_AUTH_GATE_H_

#include <string_view>

#include "api/router.h"
#include "services/auth/authenticator.h"

namespace llmasos::api {

// The key a request presents: "Authorization: Bearer KEY" (the scheme in any case), else
// "x-api-key: KEY"; "" when neither is there.
std::string_view PresentedKey(const HttpRequest& request);

class AuthGate : public Gate {
 public:
  explicit AuthGate(auth::Authenticator* authenticator) : authenticator_(authenticator) {}
  bool Admit(Exchange& exchange, RouteScope scope) const override;

 private:
  auth::Authenticator* authenticator_;
};

}  // namespace llmasos::api

#endif  // LLMASOS_API_AUTH_GATE_H_
