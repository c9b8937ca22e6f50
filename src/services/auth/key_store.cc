#include "services/auth/key_store.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sqlite3.h>  // SQLITE_ROW, SQLITE_DONE

#include <filesystem>
#include <span>

#include "services/registry/blob_store.h"  // registry::Sha256
#include "services/registry/registry.h"    // registry::DefaultHome

namespace llmasos::auth {
namespace {

using store::Stmt;

constexpr std::string_view kKeyPrefix = "llmasos-";
constexpr size_t kIdBytes = 8;       // 16 hex digits
constexpr size_t kSecretBytes = 32;  // 256 bits
constexpr size_t kSecretChars = 43;  // base64url of 32 bytes, unpadded
constexpr size_t kMaxTenantBytes = 128;
constexpr size_t kMaxNameBytes = 128;

// Migrations of the auth tables; entry i brings the schema from version i to i + 1.
const char* const kMigrations[] = {
    R"sql(
    CREATE TABLE auth_keys(
      id TEXT PRIMARY KEY,
      hash TEXT NOT NULL,
      name TEXT NOT NULL,
      tenant TEXT NOT NULL,
      scopes INTEGER NOT NULL,
      created INTEGER NOT NULL,
      expires INTEGER,
      revoked INTEGER,
      rpm INTEGER NOT NULL,
      tpm INTEGER NOT NULL,
      concurrent INTEGER NOT NULL,
      token_budget INTEGER NOT NULL,
      default_priority INTEGER NOT NULL,
      max_priority INTEGER NOT NULL,
      requests INTEGER NOT NULL DEFAULT 0,
      prompt_tokens INTEGER NOT NULL DEFAULT 0,
      generated_tokens INTEGER NOT NULL DEFAULT 0);
    )sql",
};

constexpr const char* kColumns =
    "id, name, tenant, scopes, created, expires, revoked, rpm, tpm, concurrent, token_budget, "
    "default_priority, max_priority, requests, prompt_tokens, generated_tokens, hash";

KeyRecord RowToRecord(const Stmt& s) {
  KeyRecord r;
  r.id = s.Text(0);
  r.spec.name = s.Text(1);
  r.spec.tenant = s.Text(2);
  r.spec.scopes = static_cast<ScopeSet>(s.Int(3));
  r.created_unix = s.Int(4);
  if (!s.IsNull(5)) r.spec.expires_unix = s.Int(5);
  if (!s.IsNull(6)) r.revoked_unix = s.Int(6);
  r.spec.limits = {.requests_per_minute = s.Int(7), .tokens_per_minute = s.Int(8), .concurrent = s.Int(9),
                   .token_budget = s.Int(10)};
  r.spec.default_priority = static_cast<int32_t>(s.Int(11));
  r.spec.max_priority = static_cast<int32_t>(s.Int(12));
  r.usage = {.requests = s.Int(13), .prompt_tokens = s.Int(14), .generated_tokens = s.Int(15)};
  return r;
}

std::string Hex(std::span<const uint8_t> bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

std::string Base64Url(std::span<const uint8_t> bytes) {
  static const char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : bytes) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kDigits[(acc >> bits) & 63];
    }
  }
  if (bits > 0) out += kDigits[(acc << (6 - bits)) & 63];
  return out;
}

std::string HashKey(std::string_view key) {
  registry::Sha256 h;
  h.Update({reinterpret_cast<const uint8_t*>(key.data()), key.size()});
  return h.FinishDigest();
}

bool IsHexDigit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
bool IsBase64UrlDigit(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

Status ValidateSpec(const KeySpec& spec) {
  RETURN_IF_ERROR(ValidateTenant(spec.tenant));
  if (spec.name.size() > kMaxNameBytes) {
    return InvalidArgumentError("a key's name is at most " + std::to_string(kMaxNameBytes) + " bytes");
  }
  const ScopeSet all = static_cast<uint32_t>(Scope::kInfer) | static_cast<uint32_t>(Scope::kModels) |
                       static_cast<uint32_t>(Scope::kAdmin);
  if (spec.scopes == 0 || (spec.scopes & ~all) != 0) {
    return InvalidArgumentError("a key needs one or more of the scopes infer, models, admin");
  }
  const KeyLimits& l = spec.limits;
  for (const auto& [value, flag] : {std::pair{l.requests_per_minute, "--rpm"}, {l.tokens_per_minute, "--tpm"},
                                    {l.concurrent, "--concurrent"}, {l.token_budget, "--token-budget"}}) {
    if (value < 0) return InvalidArgumentError(std::string(flag) + " must be 0 (no limit) or more");
  }
  for (const auto& [value, flag] : {std::pair{spec.default_priority, "--priority"}, {spec.max_priority, "--max-priority"}}) {
    if (value < -kMaxPriority || value > kMaxPriority) {
      return InvalidArgumentError(std::string(flag) + " must be in [-" + std::to_string(kMaxPriority) + ", " +
                                  std::to_string(kMaxPriority) + "]");
    }
  }
  if (spec.default_priority > spec.max_priority) {
    return InvalidArgumentError("--priority " + std::to_string(spec.default_priority) + " is above --max-priority " +
                                std::to_string(spec.max_priority));
  }
  return OkStatus();
}

}  // namespace

std::string_view ScopeName(Scope s) {
  switch (s) {
    case Scope::kInfer:
      return "infer";
    case Scope::kModels:
      return "models";
    case Scope::kAdmin:
      return "admin";
  }
  return "?";
}

StatusOr<ScopeSet> ParseScopes(std::string_view text) {
  ScopeSet set = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = text.substr(start, end - start);
    bool known = false;
    for (Scope s : {Scope::kInfer, Scope::kModels, Scope::kAdmin}) {
      if (item == ScopeName(s)) {
        set |= static_cast<uint32_t>(s);
        known = true;
      }
    }
    if (!known) {
      return InvalidArgumentError("unknown scope '" + std::string(item) + "' (scopes: infer, models, admin)");
    }
    start = end + 1;
  }
  return set;
}

std::string ScopesToString(ScopeSet set) {
  std::string out;
  for (Scope s : {Scope::kInfer, Scope::kModels, Scope::kAdmin}) {
    if (HasScope(set, s)) out += (out.empty() ? "" : ",") + std::string(ScopeName(s));
  }
  return out;
}

bool KeyRecord::ActiveAt(int64_t now_unix) const {
  if (revoked_unix) return false;
  return !spec.expires_unix || now_unix < *spec.expires_unix;
}

Status ValidateTenant(std::string_view tenant) {
  if (tenant.empty() || tenant.size() > kMaxTenantBytes) {
    return InvalidArgumentError("a tenant is 1.." + std::to_string(kMaxTenantBytes) + " bytes");
  }
  for (char c : tenant) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return InvalidArgumentError("tenant '" + std::string(tenant) + "': only letters, digits, '.', '_', '-'");
  }
  return OkStatus();
}

std::optional<ParsedKey> ParseKey(std::string_view key) {
  if (!key.starts_with(kKeyPrefix)) return std::nullopt;
  key.remove_prefix(kKeyPrefix.size());
  if (key.size() != 2 * kIdBytes + 1 + kSecretChars || key[2 * kIdBytes] != '-') return std::nullopt;
  for (size_t i = 0; i < 2 * kIdBytes; ++i) {
    if (!IsHexDigit(key[i])) return std::nullopt;
  }
  for (size_t i = 2 * kIdBytes + 1; i < key.size(); ++i) {
    if (!IsBase64UrlDigit(key[i])) return std::nullopt;
  }
  return ParsedKey{std::string(key.substr(0, 2 * kIdBytes))};
}

StatusOr<std::unique_ptr<KeyStore>> KeyStore::Open(const std::string& path) {
  // Usage is written at the end of every request: NORMAL makes those commits cost no fsync
  // and still survive the daemon being killed (WAL); the keys themselves change rarely.
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> db, store::Database::Open(path, store::Durability::kNormal));
  RETURN_IF_ERROR(db->Migrate("auth", kMigrations));
  return std::unique_ptr<KeyStore>(new KeyStore(std::move(db)));
}

StatusOr<std::unique_ptr<KeyStore>> KeyStore::OpenDefault() {
  const std::string home = registry::DefaultHome();
  std::error_code ec;
  std::filesystem::create_directories(home, ec);
  if (ec) return IoError("creating '" + home + "': " + ec.message());
  return Open(home + "/state.db");
}

StatusOr<CreatedKey> KeyStore::Create(const KeySpec& spec, int64_t now_unix) {
  RETURN_IF_ERROR(ValidateSpec(spec));
  uint8_t id_bytes[kIdBytes];
  uint8_t secret[kSecretBytes];
  if (RAND_bytes(id_bytes, sizeof(id_bytes)) != 1 || RAND_bytes(secret, sizeof(secret)) != 1) {
    return InternalError("OpenSSL could not produce random bytes for a key");
  }
  CreatedKey out;
  out.record.id = Hex(id_bytes);
  out.record.spec = spec;
  out.record.created_unix = now_unix;
  out.key = std::string(kKeyPrefix) + out.record.id + "-" + Base64Url(secret);
  OPENSSL_cleanse(secret, sizeof(secret));

  MutexLock lock(mu_);
  Stmt s(*db_,
         "INSERT INTO auth_keys(id, hash, name, tenant, scopes, created, expires, revoked, rpm, tpm, concurrent, "
         "token_budget, default_priority, max_priority) VALUES(?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)");
  s.Bind(1, out.record.id).Bind(2, HashKey(out.key)).Bind(3, spec.name).Bind(4, spec.tenant);
  s.Bind(5, static_cast<int64_t>(spec.scopes)).Bind(6, now_unix);
  if (spec.expires_unix) {
    s.Bind(7, *spec.expires_unix);
  } else {
    s.BindNull(7);
  }
  s.Bind(8, spec.limits.requests_per_minute).Bind(9, spec.limits.tokens_per_minute);
  s.Bind(10, spec.limits.concurrent).Bind(11, spec.limits.token_budget);
  s.Bind(12, static_cast<int64_t>(spec.default_priority)).Bind(13, static_cast<int64_t>(spec.max_priority));
  RETURN_IF_ERROR(s.Run("storing a key"));
  return out;
}

StatusOr<std::vector<KeyRecord>> KeyStore::List() {
  MutexLock lock(mu_);
  const std::string sql = std::string("SELECT ") + kColumns + " FROM auth_keys ORDER BY created, id";
  Stmt s(*db_, sql.c_str());
  std::vector<KeyRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(RowToRecord(s));
  if (rc != SQLITE_DONE) return db_->Error("listing keys");
  return out;
}

Status KeyStore::Revoke(std::string_view id, int64_t now_unix) {
  MutexLock lock(mu_);
  Stmt s(*db_, "UPDATE auth_keys SET revoked = COALESCE(revoked, ?) WHERE id = ?");
  s.Bind(1, now_unix).Bind(2, id);
  RETURN_IF_ERROR(s.Run("revoking a key"));
  if (sqlite3_changes(db_->handle()) == 0) {
    return NotFoundError("no key with id '" + std::string(id) + "' (llmasos keys list shows them)");
  }
  return OkStatus();
}

StatusOr<std::optional<KeyRecord>> KeyStore::FindById(std::string_view id, std::string* hash) {
  const std::string sql = std::string("SELECT ") + kColumns + " FROM auth_keys WHERE id = ?";
  Stmt s(*db_, sql.c_str());
  s.Bind(1, id);
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<KeyRecord>();
  if (rc != SQLITE_ROW) return db_->Error("reading a key");
  *hash = s.Text(16);
  return std::optional<KeyRecord>(RowToRecord(s));
}

StatusOr<std::optional<KeyRecord>> KeyStore::Find(std::string_view key) {
  const std::optional<ParsedKey> parsed = ParseKey(key);
  if (!parsed) return std::optional<KeyRecord>();
  return Find(*parsed, key);
}

StatusOr<std::optional<KeyRecord>> KeyStore::Find(const ParsedKey& parsed, std::string_view key) {
  std::string stored;
  std::optional<KeyRecord> record;
  {
    MutexLock lock(mu_);
    ASSIGN_OR_RETURN(record, FindById(parsed.id, &stored));
  }
  if (!record) return record;
  const std::string presented = HashKey(key);
  if (presented.size() != stored.size() || CRYPTO_memcmp(presented.data(), stored.data(), stored.size()) != 0) {
    return std::optional<KeyRecord>();
  }
  return record;
}

StatusOr<bool> KeyStore::AnyKeys() {
  MutexLock lock(mu_);
  Stmt s(*db_, "SELECT EXISTS(SELECT 1 FROM auth_keys)");
  if (s.Step() != SQLITE_ROW) return db_->Error("counting keys");
  return s.Int(0) != 0;
}

StatusOr<bool> KeyStore::AnyActiveKeys(int64_t now_unix) {
  MutexLock lock(mu_);
  Stmt s(*db_, "SELECT EXISTS(SELECT 1 FROM auth_keys WHERE revoked IS NULL AND (expires IS NULL OR expires > ?))");
  s.Bind(1, now_unix);
  if (s.Step() != SQLITE_ROW) return db_->Error("counting keys");
  return s.Int(0) != 0;
}

Status KeyStore::AddUsage(const std::vector<UsageDelta>& deltas) {
  if (deltas.empty()) return OkStatus();
  MutexLock lock(mu_);
  RETURN_IF_ERROR(db_->Begin());
  for (const UsageDelta& d : deltas) {
    Stmt s(*db_,
           "UPDATE auth_keys SET requests = requests + ?, prompt_tokens = prompt_tokens + ?, "
           "generated_tokens = generated_tokens + ? WHERE id = ?");
    s.Bind(1, d.add.requests).Bind(2, d.add.prompt_tokens).Bind(3, d.add.generated_tokens).Bind(4, d.key_id);
    if (Status st = s.Run("recording usage"); !st.ok()) {
      db_->Rollback();
      return st;
    }
  }
  return db_->Commit();
}

}  // namespace llmasos::auth
