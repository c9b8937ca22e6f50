#include "services/registry/registry_db.h"

#include <sqlite3.h>  // SQLITE_ROW, SQLITE_DONE, SQLITE_CONSTRAINT

#include <nlohmann/json.hpp>

namespace llmasos::registry {
namespace {

using store::Stmt;

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
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> db, store::Database::Open(path));
  RETURN_IF_ERROR(db->Migrate("registry", kMigrations));
  return std::unique_ptr<RegistryDb>(new RegistryDb(std::move(db)));
}

RegistryDb::~RegistryDb() = default;

Status RegistryDb::InsertVersion(const Manifest& m) {
  Stmt s(*db_, "INSERT INTO registry_versions(name, version, digest, size_bytes, manifest) "
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
  Stmt s(*db_, "DELETE FROM registry_versions WHERE name = ? AND version = ?");
  s.Bind(1, name).Bind(2, version);
  if (!s.ok() || s.Step() != SQLITE_DONE) return Error("removing " + name + "@" + version);
  return OkStatus();
}

StatusOr<std::vector<StoredVersion>> RegistryDb::Versions(const std::string& name) {
  Stmt s(*db_, name.empty() ? "SELECT manifest, loaded FROM registry_versions"
                           : "SELECT manifest, loaded FROM registry_versions WHERE name = ?");
  if (!name.empty()) s.Bind(1, name);
  if (!s.ok()) return Error("listing versions");
  std::vector<StoredVersion> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) {
    auto json = nlohmann::json::parse(s.Text(0), nullptr, /*allow_exceptions=*/false);
    auto m = ManifestFromJson(json);
    if (!m.ok()) return m.status().Annotate("in '" + db_->path() + "'");
    out.push_back({std::move(m).value(), s.Int(1) != 0});
  }
  if (rc != SQLITE_DONE) return Error("listing versions");
  return out;
}

Status RegistryDb::SetLoaded(const std::string& name, const std::string& version, bool loaded) {
  Stmt s(*db_, "UPDATE registry_versions SET loaded = ? WHERE name = ? AND version = ?");
  s.Bind(1, static_cast<int64_t>(loaded ? 1 : 0)).Bind(2, name).Bind(3, version);
  if (!s.ok() || s.Step() != SQLITE_DONE) return Error("marking " + name + "@" + version);
  return OkStatus();
}

Status RegistryDb::ClearLoaded() {
  return db_->Exec("UPDATE registry_versions SET loaded = 0 WHERE loaded != 0");
}

Status RegistryDb::SetTag(const std::string& name, const std::string& tag,
                          const std::string& version) {
  Stmt s(*db_, "INSERT OR REPLACE INTO registry_tags(name, tag, version, updated) VALUES(?, ?, ?, ?)");
  s.Bind(1, name).Bind(2, tag).Bind(3, version).Bind(4, NowUtc());
  if (!s.ok() || s.Step() != SQLITE_DONE) return Error("tagging " + name + "@" + version);
  return OkStatus();
}

Status RegistryDb::DeleteTag(const std::string& name, const std::string& tag) {
  Stmt s(*db_, "DELETE FROM registry_tags WHERE name = ? AND tag = ?");
  s.Bind(1, name).Bind(2, tag);
  if (!s.ok() || s.Step() != SQLITE_DONE) return Error("removing tag " + name + ":" + tag);
  return OkStatus();
}

StatusOr<std::vector<TagRow>> RegistryDb::Tags(const std::string& name) {
  Stmt s(*db_, name.empty() ? "SELECT name, tag, version FROM registry_tags ORDER BY name, tag"
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
  Stmt s(*db_, "SELECT version FROM registry_tags WHERE name = ? AND tag = ?");
  s.Bind(1, name).Bind(2, tag);
  if (!s.ok()) return Error("reading tag " + name + ":" + tag);
  int rc = s.Step();
  if (rc == SQLITE_ROW) return std::optional<std::string>(s.Text(0));
  if (rc != SQLITE_DONE) return Error("reading tag " + name + ":" + tag);
  return std::optional<std::string>();
}

StatusOr<std::set<std::string>> RegistryDb::ReferencedDigests() {
  Stmt s(*db_, "SELECT DISTINCT digest FROM registry_versions");
  if (!s.ok()) return Error("listing digests");
  std::set<std::string> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.insert(s.Text(0));
  if (rc != SQLITE_DONE) return Error("listing digests");
  return out;
}

}  // namespace llmasos::registry
