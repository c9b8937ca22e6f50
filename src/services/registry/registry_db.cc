#include "services/registry/registry_db.h"

#include <sqlite3.h>

#include <nlohmann/json.hpp>

namespace llmasos::registry {
namespace {

// One prepared statement; finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int idx, const std::string& s) {
    sqlite3_bind_text(stmt_, idx, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int idx, int64_t v) {
    sqlite3_bind_int64(stmt_, idx, v);
    return *this;
  }
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) const {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p),
                                                      static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

// Migrations of the registry's tables; entry i brings the schema from version i to i + 1.
const char* const kMigrations[] = {
    R"sql(
    CREATE TABLE registry_versions(
      name TEXT NOT NULL,
      version TEXT NOT NULL,
      digest TEXT NOT NULL,
      size_bytes INTEGER NOT NULL,
      manifest TEXT NOT NULL,
      loaded INTEGER NOT NULL DEFAULT 0,
      PRIMARY KEY (name, version));
    CREATE INDEX registry_versions_digest ON registry_versions(digest);
    CREATE TABLE registry_tags(
      name TEXT NOT NULL,
      tag TEXT NOT NULL,
      version TEXT NOT NULL,
      updated TEXT NOT NULL,
      PRIMARY KEY (name, tag),
      FOREIGN KEY (name, version) REFERENCES registry_versions(name, version) ON DELETE CASCADE);
    )sql",
};
static_assert(std::size(kMigrations) == kRegistrySchemaVersion);

}  // namespace

StatusOr<std::unique_ptr<RegistryDb>> RegistryDb::Open(const std::string& path) {
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<RegistryDb> db(new RegistryDb(raw, path));
  if (rc != SQLITE_OK) return db->Error("opening the database");
  sqlite3_busy_timeout(raw, 10000);
  RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(db->Exec("PRAGMA foreign_keys=ON"));
  RETURN_IF_ERROR(db->Exec("PRAGMA synchronous=FULL"));
  RETURN_IF_ERROR(db->Migrate());
  return db;
}

RegistryDb::~RegistryDb() { sqlite3_close(db_); }

Status RegistryDb::Error(const std::string& what) const {
  const char* msg = db_ == nullptr ? "out of memory" : sqlite3_errmsg(db_);
  int code = db_ == nullptr ? SQLITE_NOMEM : sqlite3_errcode(db_);
  std::string m = what + " in '" + path_ + "': " + msg;
  if (code == SQLITE_FULL) return ResourceExhaustedError(m);
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return DataLossError(m);
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return UnavailableError(m);
  return IoError(m);
}

Status RegistryDb::Exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return Error(std::string("running '") + std::string(sql).substr(0, 40) + "'");
  }
  return OkStatus();
}

Status RegistryDb::Migrate() {
  RETURN_IF_ERROR(Begin());
  auto fail = [&](Status s) {
    Rollback();
    return s;
  };
  if (Status s = Exec("CREATE TABLE IF NOT EXISTS schema_versions("
                      "component TEXT PRIMARY KEY, version INTEGER NOT NULL)");
      !s.ok()) {
    return fail(s);
  }
  int64_t current = 0;
  {
    Stmt q(db_, "SELECT version FROM schema_versions WHERE component = 'registry'");
    if (!q.ok()) return fail(Error("reading the schema version"));
    if (q.Step() == SQLITE_ROW) current = q.Int(0);
  }
  if (current > kRegistrySchemaVersion) {
    return fail(FailedPreconditionError(
        "'" + path_ + "' holds registry schema version " + std::to_string(current) +
        ", newer than this build understands (" + std::to_string(kRegistrySchemaVersion) +
        "); use a newer llmasos"));
  }
  for (int64_t v = current; v < kRegistrySchemaVersion; ++v) {
    if (Status s = Exec(kMigrations[v]); !s.ok()) return fail(s.Annotate("migrating the registry"));
  }
  if (current != kRegistrySchemaVersion) {
    Stmt up(db_, "INSERT OR REPLACE INTO schema_versions(component, version) VALUES('registry', ?)");
    up.Bind(1, static_cast<int64_t>(kRegistrySchemaVersion));
    if (!up.ok() || up.Step() != SQLITE_DONE) return fail(Error("recording the schema version"));
  }
  return Commit();
}

Status RegistryDb::Begin() { return Exec("BEGIN IMMEDIATE"); }
Status RegistryDb::Commit() { return Exec("COMMIT"); }
void RegistryDb::Rollback() { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

Status RegistryDb::InsertVersion(const Manifest& m) {
  Stmt s(db_, "INSERT INTO registry_versions(name, version, digest, size_bytes, manifest) "
              "VALUES(?, ?, ?, ?, ?)");
  s.Bind(1, m.name).Bind(2, m.version).Bind(3, m.digest);
  s.Bind(4, static_cast<int64_t>(m.size_bytes)).Bind(5, ManifestToJson(m).dump());
  int rc = s.ok() ? s.Step() : SQLITE_ERROR;
  if (rc == SQLITE_CONSTRAINT) {
    return FailedPreconditionError(m.name + "@" + m.version + " already exists");
  }
  if (rc != SQLITE_DONE) return Error("storing " + m.name + "@" + m.version);
  return OkStatus();
}

Status RegistryDb::DeleteVersion(const std::string& name, const std::string& version) {
  Stmt s(db_, "DELETE FROM registry_versions WHERE name = ? AND version = ?");
  s.Bind(1, name).Bind(2, version);
  if (!s.ok() || s.Step() != SQLITE_DONE) return Error("removing " + name + "@" + version);
  return OkStatus();
}

StatusOr<std::vector<StoredVersion>> RegistryDb::Versions(const std::string& name) {
  Stmt s(db_, name.empty() ? "SELECT manifest, loaded FROM registry_versions"
                           : "SELECT manifest, loaded FROM registry_versions WHERE name = ?");
  if (!name.empty()) s.Bind(1, name);
  if (!s.ok()) return Error("listing versions");
  std::vector<StoredVersion> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    auto json = nlohmann::json::parse(s.Text(0), nullptr, /*allow_exceptions=*/false);
    auto m = ManifestFromJson(json);
    if (!m.ok()) return m.status().Annotate("in '" + path_ + "'");
    out.push_back({std::move(m).value(), s.Int(1) != 0});
  }
  if (rc != SQLITE_DONE) return Error("listing versions");
  return out;
}

Status RegistryDb::SetLoaded(const std::string& name, const std::string& version, bool loaded) {
  Stmt s(db_, "UPDATE registry_versions SET loaded = ? WHERE name = ? AND version = ?");
  s.Bind(1, static_cast<int64_t>(loaded ? 1 : 0)).Bind(2, name).Bind(3, version);
  if (!s.ok() || s.Step() != SQLITE_DONE) return Error("marking " + name + "@" + version);
  return OkStatus();
}

Status RegistryDb::ClearLoaded() {
  return Exec("UPDATE registry_versions SET loaded = 0 WHERE loaded != 0");
}

Status RegistryDb::SetTag(const std::string& name, const std::string& tag,
                          const std::string& version) {
  Stmt s(db_, "INSERT OR REPLACE INTO registry_tags(name, tag, version, updated) VALUES(?, ?, ?, ?)");
  s.Bind(1, name).Bind(2, tag).Bind(3, version).Bind(4, NowUtc());
  if (!s.ok() || s.Step() != SQLITE_DONE) return Error("tagging " + name + "@" + version);
  return OkStatus();
}

Status RegistryDb::DeleteTag(const std::string& name, const std::string& tag) {
  Stmt s(db_, "DELETE FROM registry_tags WHERE name = ? AND tag = ?");
  s.Bind(1, name).Bind(2, tag);
  if (!s.ok() || s.Step() != SQLITE_DONE) return Error("removing tag " + name + ":" + tag);
  return OkStatus();
}

StatusOr<std::vector<TagRow>> RegistryDb::Tags(const std::string& name) {
  Stmt s(db_, name.empty() ? "SELECT name, tag, version FROM registry_tags ORDER BY name, tag"
                           : "SELECT name, tag, version FROM registry_tags WHERE name = ? ORDER BY tag");
  if (!name.empty()) s.Bind(1, name);
  if (!s.ok()) return Error("listing tags");
  std::vector<TagRow> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back({s.Text(0), s.Text(1), s.Text(2)});
  if (rc != SQLITE_DONE) return Error("listing tags");
  return out;
}

StatusOr<std::optional<std::string>> RegistryDb::TagTarget(const std::string& name,
                                                           const std::string& tag) {
  Stmt s(db_, "SELECT version FROM registry_tags WHERE name = ? AND tag = ?");
  s.Bind(1, name).Bind(2, tag);
  if (!s.ok()) return Error("reading tag " + name + ":" + tag);
  int rc = s.Step();
  if (rc == SQLITE_ROW) return std::optional<std::string>(s.Text(0));
  if (rc != SQLITE_DONE) return Error("reading tag " + name + ":" + tag);
  return std::optional<std::string>();
}

StatusOr<std::set<std::string>> RegistryDb::ReferencedDigests() {
  Stmt s(db_, "SELECT DISTINCT digest FROM registry_versions");
  if (!s.ok()) return Error("listing digests");
  std::set<std::string> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.insert(s.Text(0));
  if (rc != SQLITE_DONE) return Error("listing digests");
  return out;
}

}  // namespace llmasos::registry
