// llmasos keys create|list|revoke: the API keys in $LLMASOS_HOME/state.db. A running daemon
// reads the same file, so a new or revoked key takes effect at its next request.
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

#include "api/daemon.h"  // UnixSeconds
#include "services/auth/key_store.h"
#include "shell/commands.h"

namespace llmasos::shell {
namespace {

using auth::KeyRecord;
using auth::KeyStore;

struct CreateFlags {
  std::string tenant = "default";
  std::string name;
  std::string scopes = "infer";
  std::string expires = "never";
  int64_t rpm = 0, tpm = 0, concurrent = 0, token_budget = 0;
  int32_t priority = 0;
  std::optional<int32_t> max_priority;
  bool json = false;
};

// "never", a duration ("90s", "45m", "12h", "30d") from now, or a date ("2027-01-31", UTC
// midnight) -> Unix seconds.
StatusOr<std::optional<int64_t>> ParseExpiry(const std::string& text, int64_t now) {
  if (text == "never") return std::optional<int64_t>();
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
    std::tm tm{};
    if (strptime(text.c_str(), "%Y-%m-%d", &tm) != nullptr) {
      const int64_t at = static_cast<int64_t>(timegm(&tm));
      if (at <= now) return InvalidArgumentError("--expires " + text + " is in the past");
      return std::optional<int64_t>(at);
    }
  }
  if (text.size() >= 2 && text.size() <= 10) {
    int64_t unit = 0;
    switch (text.back()) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      default: break;
    }
    const std::string digits = text.substr(0, text.size() - 1);
    if (unit > 0 && digits.find_first_not_of("0123456789") == std::string::npos) {
      const int64_t n = std::stoll(digits);
      if (n > 0 && n <= int64_t{100} * 366 * 86400 / unit) return std::optional<int64_t>(now + n * unit);
    }
  }
  return InvalidArgumentError("--expires '" + text +
                              "': use never, a duration from now (90s, 45m, 12h, 30d; up to 100 years) or a "
                              "date (2027-01-31)");
}

std::string TimeText(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string StateOf(const KeyRecord& r, int64_t now) {
  if (r.revoked_unix) return "revoked";
  if (!r.ActiveAt(now)) return "expired";
  return "active";
}

nlohmann::json KeyJson(const KeyRecord& r, int64_t now) {
  const auth::KeySpec& s = r.spec;
  nlohmann::json j = {{"id", r.id},
                      {"name", s.name},
                      {"tenant", s.tenant},
                      {"scopes", auth::ScopesToString(s.scopes)},
                      {"state", StateOf(r, now)},
                      {"created", TimeText(r.created_unix)},
                      {"expires", s.expires_unix ? nlohmann::json(TimeText(*s.expires_unix)) : nlohmann::json()},
                      {"revoked", r.revoked_unix ? nlohmann::json(TimeText(*r.revoked_unix)) : nlohmann::json()},
                      {"limits",
                       {{"rpm", s.limits.requests_per_minute},
                        {"tpm", s.limits.tokens_per_minute},
                        {"concurrent", s.limits.concurrent},
                        {"token_budget", s.limits.token_budget}}},
                      {"priority", s.default_priority},
                      {"max_priority", s.max_priority},
                      {"usage",
                       {{"requests", r.usage.requests},
                        {"prompt_tokens", r.usage.prompt_tokens},
                        {"generated_tokens", r.usage.generated_tokens}}}};
  return j;
}

std::string LimitText(int64_t v) { return v == 0 ? "-" : std::to_string(v); }

int WithStore(const std::function<Status(KeyStore&)>& fn) {
  auto store = KeyStore::OpenDefault();
  if (!store.ok()) return ReportError(store.status());
  const Status s = fn(**store);
  return s.ok() ? 0 : ReportError(s);
}

}  // namespace

void AddKeysCommand(CLI::App& app, int* exit_code) {
  CLI::App* keys = app.add_subcommand("keys", "API keys of the daemon: create, list, revoke");
  keys->require_subcommand(1);
  {
    auto f = std::make_shared<CreateFlags>();
    CLI::App* cmd = keys->add_subcommand("create", "create a key (printed once; only its hash is kept)");
    cmd->add_option("--tenant", f->tenant, "the tenant its requests run as (default: default)");
    cmd->add_option("--name", f->name, "a label for people");
    cmd->add_option("--scopes", f->scopes, "comma-separated: infer, models, admin (default: infer)");
    cmd->add_option("--expires", f->expires, "never (default), a duration (90s, 45m, 12h, 30d) or a date (2027-01-31)");
    cmd->add_option("--rpm", f->rpm, "requests per minute (0: no limit)");
    cmd->add_option("--tpm", f->tpm, "prompt + generated tokens per minute (0: no limit)");
    cmd->add_option("--concurrent", f->concurrent, "requests in flight at once (0: no limit)");
    cmd->add_option("--token-budget", f->token_budget, "prompt + generated tokens over the key's life (0: no limit)");
    cmd->add_option("--priority", f->priority, "priority of requests that name none (default 0)");
    cmd->add_option("--max-priority", f->max_priority, "highest priority a request may ask for (default: --priority)");
    cmd->add_flag("--json", f->json, "print JSON");
    cmd->callback([f, exit_code] {
      *exit_code = WithStore([&](KeyStore& store) -> Status {
        const int64_t now = api::UnixSeconds();
        auth::KeySpec spec;
        spec.tenant = f->tenant;
        spec.name = f->name;
        ASSIGN_OR_RETURN(spec.scopes, auth::ParseScopes(f->scopes));
        ASSIGN_OR_RETURN(spec.expires_unix, ParseExpiry(f->expires, now));
        spec.limits = {.requests_per_minute = f->rpm, .tokens_per_minute = f->tpm, .concurrent = f->concurrent,
                       .token_budget = f->token_budget};
        spec.default_priority = f->priority;
        spec.max_priority = f->max_priority.value_or(f->priority);
        ASSIGN_OR_RETURN(auth::CreatedKey created, store.Create(spec, now));
        if (f->json) {
          nlohmann::json j = KeyJson(created.record, now);
          j["key"] = created.key;
          std::printf("%s\n", j.dump(2).c_str());
        } else {
          std::printf("%s\n", created.key.c_str());
          std::fprintf(stderr,
                       "key %s for tenant '%s' (scopes %s). This is the only time the key is shown: store it now.\n"
                       "Clients send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.\n",
                       created.record.id.c_str(), spec.tenant.c_str(), auth::ScopesToString(spec.scopes).c_str());
        }
        return OkStatus();
      });
    });
  }
  {
    auto json = std::make_shared<bool>(false);
    CLI::App* cmd = keys->add_subcommand("list", "list the keys (ids, tenants, scopes, limits, usage; never secrets)");
    cmd->add_flag("--json", *json, "print JSON");
    cmd->callback([json, exit_code] {
      *exit_code = WithStore([&](KeyStore& store) -> Status {
        ASSIGN_OR_RETURN(std::vector<KeyRecord> all, store.List());
        const int64_t now = api::UnixSeconds();
        if (*json) {
          nlohmann::json out = nlohmann::json::array();
          for (const KeyRecord& r : all) out.push_back(KeyJson(r, now));
          std::printf("%s\n", out.dump(2).c_str());
          return OkStatus();
        }
        if (all.empty()) {
          std::printf("no keys: the daemon serves loopback clients without one. Create one with:\n"
                      "  llmasos keys create --tenant NAME --scopes infer\n");
          return OkStatus();
        }
        std::printf("%-16s  %-16s  %-18s  %-8s  %-20s  %6s %8s %5s %10s  %9s %12s %12s\n", "ID", "TENANT", "SCOPES",
                    "STATE", "EXPIRES", "RPM", "TPM", "CONC", "BUDGET", "REQUESTS", "PROMPT", "GENERATED");
        for (const KeyRecord& r : all) {
          const auth::KeyLimits& l = r.spec.limits;
          std::printf("%-16s  %-16s  %-18s  %-8s  %-20s  %6s %8s %5s %10s  %9lld %12lld %12lld\n", r.id.c_str(),
                      r.spec.tenant.c_str(), auth::ScopesToString(r.spec.scopes).c_str(), StateOf(r, now).c_str(),
                      r.spec.expires_unix ? TimeText(*r.spec.expires_unix).c_str() : "never",
                      LimitText(l.requests_per_minute).c_str(), LimitText(l.tokens_per_minute).c_str(),
                      LimitText(l.concurrent).c_str(), LimitText(l.token_budget).c_str(),
                      static_cast<long long>(r.usage.requests), static_cast<long long>(r.usage.prompt_tokens),
                      static_cast<long long>(r.usage.generated_tokens));
        }
        return OkStatus();
      });
    });
  }
  {
    auto id = std::make_shared<std::string>();
    CLI::App* cmd = keys->add_subcommand("revoke", "revoke a key (a running daemon refuses it at its next request)");
    cmd->add_option("id", *id, "the key's id (llmasos keys list)")->required();
    cmd->callback([id, exit_code] {
      *exit_code = WithStore([&](KeyStore& store) -> Status {
        RETURN_IF_ERROR(store.Revoke(*id, api::UnixSeconds()));
        std::printf("revoked %s\n", id->c_str());
        return OkStatus();
      });
    });
  }
}

}  // namespace llmasos::shell
