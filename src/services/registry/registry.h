// The model registry: LLMasOS's installed programs. What the daemon and the shell call to
// import, list, show, remove, copy, tag, compare and roll back model versions, and to resolve
// a reference (reference.h) to a manifest and the blob to load.
//
// Layout under the home directory ($LLMASOS_HOME, default ~/.llmasos):
//   blobs/sha256-<hex>   model files, content-addressed (blob_store.h)
//   blobs/sha256-<hex>.<kind>  derived blobs of a model file (its weights repacked for this
//                        CPU: kind "packed-v<layout>-<target>"), removed with their source
//   state.db             manifests and tags (SQLite, WAL; registry_db.h)
//   registry.lock        flock held by every mutation and by startup recovery
//
// Invariants, after every operation and after recovery from a crash at any point:
//   - every stored version's blob exists (a blob is written and renamed into place before its
//     version row is committed; a blob is deleted only after the last row naming it is gone);
//   - every blob is named by some version (recovery deletes the orphans a crash between the
//     two steps leaves, and leftover temp files);
//   - every derived blob's source blob exists (removing a blob removes them first; recovery
//     deletes any left without a source);
//   - every tag points at an existing version; a name with any version has a `latest` tag.
//
// Versions are ordered by SemVer precedence. `latest` moves to each new import or copy unless
// ImportOptions::move_latest is false; Rollback moves it back.
//
// Thread safety: a Registry may be shared by threads (calls are serialized), and several
// processes may open the same home (mutations are serialized by registry.lock and SQLite).
#ifndef LLMASOS_SERVICES_REGISTRY_REGISTRY_H_
#define LLMASOS_SERVICES_REGISTRY_REGISTRY_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/registry/blob_store.h"
#include "services/registry/manifest.h"
#include "services/registry/reference.h"
#include "util/mutex.h"
#include "util/status.h"
#include "util/thread_annotations.h"

namespace llmasos::registry {

class RegistryDb;

// $LLMASOS_HOME, or ~/.llmasos.
std::string DefaultHome();

struct OpenOptions {
  // Create the home, blobs/ and state.db when missing; otherwise kNotFound.
  bool create = true;
  // Run startup recovery (remove temp files and orphan blobs).
  bool recover = true;
};

struct RecoveryReport {
  size_t temp_files_removed = 0;
  std::vector<std::string> orphan_blobs_removed;  // digests
  size_t derived_blobs_removed = 0;  // of sources that are gone
};

struct ImportOptions {
  std::string file;                    // path of a GGUF file
  std::string name;                    // validated with ValidateName
  std::optional<std::string> version;  // SemVer; default 1.0.0, then the next minor
  std::string notes;
  std::vector<std::string> tags;  // extra tags to point at the new version
  // Move `latest` to the new version. Ignored for a name's first version, which always gets
  // `latest` (a name with versions always has one).
  bool move_latest = true;
  // Lineage: what made it ("import", "pull"), and the source to record ("" = the absolute path).
  std::string command = "import";
  std::string source;
  TrainingLineage training;  // what a fine-tune was made from (see manifest.h)
  // For crash tests (AdoptFile only): runs after the blob is in place, before its version is
  // recorded, to stand for a crash between the two.
  std::function<void()> after_blob_stored;
  // For tests (Import only): runs after the file is copied, while only the file lock is held.
  std::function<void()> during_copy;
};

struct ModelEntry {
  Manifest manifest;
  std::vector<std::string> tags;  // tags pointing at this version, sorted
  bool loaded = false;
};

struct ResolvedModel {
  Manifest manifest;
  std::string blob_path;
};

struct RemoveResult {
  std::string name;
  std::string version;
  std::vector<std::string> blobs_removed;  // digests no version references any more
};

class Registry {
 public:
  static StatusOr<std::unique_ptr<Registry>> Open(const std::string& home,
                                                  const OpenOptions& options = {},
                                                  RecoveryReport* report = nullptr);
  ~Registry();

  const std::string& home() const { return home_; }
  const BlobStore& blobs() const { return *blobs_; }

  // Copies `file` into the store and records a new version. The file must be a GGUF the
  // reader accepts (its facts fill the manifest). kFailedPrecondition if the version exists
  // or has the same precedence as an existing one.
  StatusOr<Manifest> Import(const ImportOptions& options);
  // Records a version for a blob already in the store (what pull will call after verifying
  // the download). The blob's size and digest must match `blob`.
  StatusOr<Manifest> RegisterBlob(const BlobInfo& blob, const ImportOptions& options);
  // What pull calls with a verified download: `file` (on the home's file system, hashed by the
  // caller to `blob`) is parsed as a GGUF, moved into the store and recorded as a version, all
  // under the registry lock, so recovery in another process never sees the blob without its
  // version. On error before the move the file is left where it is; after it, a blob no
  // version names is removed again. `options.file` is ignored.
  StatusOr<Manifest> AdoptFile(const std::string& file, const BlobInfo& blob,
                               const ImportOptions& options);

  // Every version of every model, by name then descending precedence.
  StatusOr<std::vector<ModelEntry>> List();
  StatusOr<ModelEntry> Show(std::string_view ref);
  // Removes the version `ref` resolves to and its tags, then garbage-collects its blob if no
  // other version uses it. `latest` moves to the highest remaining release (or pre-release).
  // kFailedPrecondition if the version is marked loaded, unless `force`.
  StatusOr<RemoveResult> Remove(std::string_view ref, bool force);
  // Records the version `src` resolves to under `dst`: "name" (same version number),
  // "name@1.2.3" or "name:tag" (same version number, and the tag). Shares the blob.
  StatusOr<Manifest> Copy(std::string_view src, std::string_view dst);
  // Points `tag` of the referenced model at the referenced version (moving it if it exists).
  StatusOr<Manifest> Tag(std::string_view ref, std::string_view tag);
  // Every version of `name`, newest (highest precedence) first.
  StatusOr<std::vector<ModelEntry>> History(std::string_view name);
  // The manifest fields that differ between the two versions.
  StatusOr<std::vector<FieldDiff>> Diff(std::string_view ref_a, std::string_view ref_b);
  // Moves `latest` to `to_version`, or to the highest release below the current `latest`.
  // kFailedPrecondition when there is no earlier release.
  StatusOr<Manifest> Rollback(std::string_view name, const std::optional<std::string>& to_version);
  // The manifest and the blob path. kNotFound naming what is missing; kDataLoss if the blob
  // is missing or its size differs from the manifest (a full re-hash is Verify).
  StatusOr<ResolvedModel> Resolve(std::string_view ref);
  // Re-hashes the referenced version's blob against its digest.
  Status Verify(std::string_view ref);
  // For the model manager: Remove refuses loaded versions unless forced. The mark lives in
  // state.db, so the daemon clears stale marks (ClearLoadedMarks) when it starts.
  Status SetLoaded(std::string_view ref, bool loaded);
  Status ClearLoadedMarks();

  // Startup recovery (Open runs it unless told not to); safe to run at any time.
  StatusOr<RecoveryReport> Recover();

 private:
  Registry() = default;
  class MutationLock;

  StatusOr<ModelEntry> ResolveLocked(std::string_view ref) REQUIRES(mu_);
  StatusOr<Manifest> AddVersionLocked(Manifest manifest, const ImportOptions& options) REQUIRES(mu_);
  StatusOr<std::string> NextVersionLocked(const std::string& name) REQUIRES(mu_);
  Status CheckVersionFreeLocked(const std::string& name, const std::string& version) REQUIRES(mu_);
  void RemoveIfUnreferencedLocked(const std::string& digest) REQUIRES(mu_);
  StatusOr<Manifest> NewManifestLocked(const std::string& gguf_path, const BlobInfo& blob,
                                       const ImportOptions& options) REQUIRES(mu_);
  Status ReassignLatestLocked(const std::string& name) REQUIRES(mu_);

  std::string home_;
  std::string lock_path_;
  std::unique_ptr<BlobStore> blobs_;
  Mutex mu_;  // serializes every call on db_
  std::unique_ptr<RegistryDb> db_ GUARDED_BY(mu_);
};

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_REGISTRY_H_
