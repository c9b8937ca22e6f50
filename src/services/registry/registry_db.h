// The registry's tables in $LLMASOS_HOME/state.db (SQLite, WAL). Internal to the registry.
//
// The connection, statements and per-component schema versions are store::Database's
// (services/store/sqlite.h); the registry migrates its own tables.
//
//   registry_versions(name, version, digest, size_bytes, manifest JSON, loaded)
//       PRIMARY KEY (name, version); index on digest (for garbage collection)
//   registry_tags(name, tag, version, updated)
//       PRIMARY KEY (name, tag); (name, version) references registry_versions, ON DELETE CASCADE
//
// Thread safety: not thread-safe; the Registry serializes calls.
#ifndef LLMASOS_SERVICES_REGISTRY_REGISTRY_DB_H_
#define LLMASOS_SERVICES_REGISTRY_REGISTRY_DB_H_

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "services/registry/manifest.h"
#include "services/store/sqlite.h"
#include "util/status.h"

namespace llmasos::registry {

inline constexpr int kRegistrySchemaVersion = 1;

struct StoredVersion {
  Manifest manifest;
  bool loaded = false;
};

struct TagRow {
  std::string name;
  std::string tag;
  std::string version;
};

class RegistryDb {
 public:
  static StatusOr<std::unique_ptr<RegistryDb>> Open(const std::string& path);
  ~RegistryDb();
  RegistryDb(const RegistryDb&) = delete;
  RegistryDb& operator=(const RegistryDb&) = delete;

  // BEGIN IMMEDIATE / COMMIT / ROLLBACK.
  Status Begin() { return db_->Begin(); }
  Status Commit() { return db_->Commit(); }
  void Rollback() { db_->Rollback(); }

  Status InsertVersion(const Manifest& manifest);
  Status DeleteVersion(const std::string& name, const std::string& version);
  // Every version of `name` ("" for all names), unordered.
  StatusOr<std::vector<StoredVersion>> Versions(const std::string& name);
  Status SetLoaded(const std::string& name, const std::string& version, bool loaded);
  Status ClearLoaded();

  Status SetTag(const std::string& name, const std::string& tag, const std::string& version);
  Status DeleteTag(const std::string& name, const std::string& tag);
  // Tags of `name` ("" for all names).
  StatusOr<std::vector<TagRow>> Tags(const std::string& name);
  StatusOr<std::optional<std::string>> TagTarget(const std::string& name, const std::string& tag);

  // Digests referenced by any version.
  StatusOr<std::set<std::string>> ReferencedDigests();

 private:
  explicit RegistryDb(std::unique_ptr<store::Database> db) : db_(std::move(db)) {}
  Status Error(const std::string& what) const { return db_->Error(what); }

  std::unique_ptr<store::Database> db_;
};

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_REGISTRY_DB_H_
