// The registry's tables in $LLMASOS_HOME/state.db (SQLite, WAL). Internal to the registry.
//
// Schema versions are kept per component in `schema_versions`, so the other services that
// will share state.db (keys, usage, audit) migrate their own tables independently. A
// database written by a newer build (a higher version than this one knows) is refused.
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
#include "util/status.h"

struct sqlite3;

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
  Status Begin();
  Status Commit();
  void Rollback();

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
  explicit RegistryDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  Status Exec(const char* sql);
  Status Migrate();
  Status Error(const std::string& what) const;

  sqlite3* db_;
  std::string path_;
};

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_REGISTRY_DB_H_
