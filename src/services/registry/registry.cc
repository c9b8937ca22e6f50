#include "services/registry/registry.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "services/registry/registry_db.h"
#include "services/registry/validate.h"
#include "util/file.h"

namespace llmasos::registry {
namespace {

constexpr size_t kCopyChunkBytes = 1 << 20;

// Versions of one name with their parsed SemVer, sorted by descending precedence.
struct ParsedEntry {
  ModelEntry entry;
  Version version;
};

std::string JoinVersions(const std::vector<ParsedEntry>& entries) {
  std::string s;
  for (const ParsedEntry& e : entries) s += (s.empty() ? "" : ", ") + e.entry.manifest.version;
  return s.empty() ? "none" : s;
}

}  // namespace

std::string DefaultHome() {
  if (const char* env = std::getenv("LLMASOS_HOME"); env != nullptr && *env != '\0') return env;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return std::string(home) + "/.llmasos";
  }
  return ".llmasos";
}

// Serializes the calls of this object (mu_) and mutations across processes (flock). The file
// lock is taken first and mu_ after it, so a thread waiting for another process's (or an
// import's) file lock never holds mu_ and readers (Resolve, List) go on meanwhile.
class SCOPED_CAPABILITY Registry::MutationLock {
 public:
  // Takes the file lock (if `exclusive_file`), then mu_. mu_ is held afterwards even when
  // the file lock failed: check status() at once.
  MutationLock(Registry& r, bool exclusive_file) ACQUIRE(r.mu_) : mu_(r.mu_) {
    if (exclusive_file) status_ = LockFile(r.lock_path_);
    mu_.Lock();
  }
  ~MutationLock() RELEASE() {
    if (held_) mu_.Unlock();
    if (fd_ >= 0) ::close(fd_);  // releases the flock
  }
  MutationLock(const MutationLock&) = delete;
  MutationLock& operator=(const MutationLock&) = delete;

  // Why the file lock could not be taken (then nothing may be mutated).
  const Status& status() const { return status_; }
  // Lets readers in during slow work (copying a file) while the file lock still keeps every
  // other mutation out; RetakeMutex before touching the database again.
  void ReleaseMutex() RELEASE() {
    held_ = false;
    mu_.Unlock();
  }
  void RetakeMutex() ACQUIRE() {
    mu_.Lock();
    held_ = true;
  }

 private:
  Status LockFile(const std::string& path) {
    ASSIGN_OR_RETURN(UniqueFd lock_fd, OpenFile(path, O_RDWR | O_CREAT));
    while (::flock(lock_fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return ErrnoError("locking the registry lock", path, errno);
    }
    fd_ = lock_fd.Release();
    return OkStatus();
  }

  Mutex& mu_;
  bool held_ = true;
  int fd_ = -1;
  Status status_;
};

namespace {

// Loads every version of `name` ("" = all) with tags, sorted by name then descending
// precedence. kDataLoss for a stored version that does not parse.
StatusOr<std::vector<ParsedEntry>> LoadEntries(RegistryDb& db, const std::string& name) {
  ASSIGN_OR_RETURN(auto versions, db.Versions(name));
  ASSIGN_OR_RETURN(auto tags, db.Tags(name));
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> tags_of;
  for (TagRow& t : tags) tags_of[{t.name, t.version}].push_back(t.tag);
  std::vector<ParsedEntry> out;
  for (StoredVersion& sv : versions) {
    auto v = ParseVersion(sv.manifest.version);
    if (!v.ok()) return DataLossError("stored version is malformed: " + v.status().message());
    ParsedEntry e{{std::move(sv.manifest), {}, sv.loaded}, std::move(v).value()};
    e.entry.tags = tags_of[{e.entry.manifest.name, e.entry.manifest.version}];
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const ParsedEntry& a, const ParsedEntry& b) {
    if (a.entry.manifest.name != b.entry.manifest.name) {
      return a.entry.manifest.name < b.entry.manifest.name;
    }
    return ComparePrecedence(a.version, b.version) > 0;
  });
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<Registry>> Registry::Open(const std::string& home,
                                                   const OpenOptions& options,
                                                   RecoveryReport* report) {
  std::unique_ptr<Registry> r(new Registry());
  r->home_ = home;
  r->lock_path_ = home + "/registry.lock";
  std::string db_path = home + "/state.db";
  if (!options.create) {
    if (::access(db_path.c_str(), F_OK) != 0) {
      return NotFoundError("no model registry at '" + home +
                           "' (state.db is missing); import a model first: llmasos import FILE --name NAME");
    }
  } else {
    std::error_code ec;
    std::filesystem::create_directories(home, ec);
    if (ec) return IoError("creating '" + home + "': " + ec.message());
  }
  ASSIGN_OR_RETURN(r->blobs_, BlobStore::Open(home + "/blobs"));
  {
    MutexLock lock(r->mu_);  // nobody else has it yet; the analysis wants db_ guarded all the same
    ASSIGN_OR_RETURN(r->db_, RegistryDb::Open(db_path));
  }
  if (options.recover) {
    ASSIGN_OR_RETURN(RecoveryReport rep, r->Recover());
    if (report != nullptr) *report = std::move(rep);
  }
  return r;
}

Registry::~Registry() = default;

StatusOr<RecoveryReport> Registry::Recover() {
  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  RecoveryReport report;
  ASSIGN_OR_RETURN(report.temp_files_removed, blobs_->RemoveStaleTempFiles());
  ASSIGN_OR_RETURN(auto referenced, db_->ReferencedDigests());
  ASSIGN_OR_RETURN(auto present, blobs_->List());
  std::set<std::string> kept;
  for (const std::string& digest : present) {
    if (referenced.count(digest) != 0) {
      kept.insert(digest);
      continue;
    }
    RETURN_IF_ERROR(blobs_->Remove(digest));
    report.orphan_blobs_removed.push_back(digest);
  }
  ASSIGN_OR_RETURN(auto derived, blobs_->ListDerived());
  for (const DerivedBlob& d : derived) {
    if (kept.count(d.digest) != 0) continue;
    ASSIGN_OR_RETURN(size_t n, blobs_->RemoveDerived(d.digest));
    report.derived_blobs_removed += n;
  }
  return report;
}

StatusOr<std::string> Registry::NextVersionLocked(const std::string& name) {
  ASSIGN_OR_RETURN(auto entries, LoadEntries(*db_, name));
  if (entries.empty()) return std::string("1.0.0");
  Version next = entries.front().version;
  next.minor += 1;
  next.patch = 0;
  next.prerelease.clear();
  next.build.clear();
  return next.ToString();
}

Status Registry::CheckVersionFreeLocked(const std::string& name, const std::string& version) {
  ASSIGN_OR_RETURN(auto existing, LoadEntries(*db_, name));
  ASSIGN_OR_RETURN(Version v, ParseVersion(version));
  for (const ParsedEntry& e : existing) {
    if (ComparePrecedence(e.version, v) == 0) {
      return FailedPreconditionError(name + "@" + e.entry.manifest.version +
                                     " already exists; choose another --version");
    }
  }
  return OkStatus();
}

void Registry::RemoveIfUnreferencedLocked(const std::string& digest) {
  // Do not leave an orphan behind (recovery would also remove it).
  auto referenced = db_->ReferencedDigests();
  if (referenced.ok() && referenced->count(digest) == 0) (void)blobs_->Remove(digest);
}

StatusOr<Manifest> Registry::AddVersionLocked(Manifest m, const ImportOptions& options) {
  ASSIGN_OR_RETURN(auto entries, LoadEntries(*db_, m.name));
  ASSIGN_OR_RETURN(Version version, ParseVersion(m.version));
  for (const ParsedEntry& e : entries) {
    if (ComparePrecedence(e.version, version) == 0) {
      return FailedPreconditionError(
          m.name + "@" + e.entry.manifest.version + " already exists" +
          (e.entry.manifest.version == m.version ? "" : " (same precedence as " + m.version + ")") +
          "; choose another --version");
    }
  }
  ASSIGN_OR_RETURN(auto latest, db_->TagTarget(m.name, std::string(kLatestTag)));
  m.lineage.parent_version = latest.value_or("");
  RETURN_IF_ERROR(db_->Begin());
  auto fail = [&](Status s) REQUIRES(mu_) {
    db_->Rollback();
    return s;
  };
  if (Status s = db_->InsertVersion(m); !s.ok()) return fail(s);
  std::vector<std::string> tags = options.tags;
  if (options.move_latest || !latest) tags.emplace_back(kLatestTag);
  for (const std::string& tag : tags) {
    if (Status s = db_->SetTag(m.name, tag, m.version); !s.ok()) return fail(s);
  }
  RETURN_IF_ERROR(db_->Commit());
  return m;
}

StatusOr<Manifest> Registry::Import(const ImportOptions& options) {
  RETURN_IF_ERROR(ValidateName(options.name));
  for (const std::string& tag : options.tags) RETURN_IF_ERROR(ValidateTag(tag));
  if (options.version) {
    auto v = ParseVersion(*options.version);
    if (!v.ok()) return v.status();
  }
  struct stat st;
  if (::stat(options.file.c_str(), &st) != 0) return ErrnoError("cannot import", options.file, errno);
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgumentError("cannot import '" + options.file + "': not a regular file");
  }
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(options.file, O_RDONLY));

  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  Manifest m;
  m.name = options.name;
  if (options.version) {
    m.version = ParseVersion(*options.version)->ToString();
  } else {
    ASSIGN_OR_RETURN(m.version, NextVersionLocked(m.name));
  }
  // Fail before copying gigabytes when the version is taken.
  RETURN_IF_ERROR(CheckVersionFreeLocked(m.name, m.version));
  // The copy runs without mu_: a daemon resolving models for requests is not held up by it.
  // The file lock keeps other mutations (in this process and others) out until the end.
  lock.ReleaseMutex();

  // Copy, hashing as we go; read the model's facts from our own copy, not the source, so
  // what the manifest says is what the blob holds.
  ASSIGN_OR_RETURN(auto writer, blobs_->NewWriter());
  std::vector<uint8_t> buf(kCopyChunkBytes);
  while (true) {
    ASSIGN_OR_RETURN(size_t n, ReadSome(fd.get(), buf, options.file));
    if (n == 0) break;
    RETURN_IF_ERROR(writer->Append({buf.data(), n}));
  }
  if (options.during_copy) options.during_copy();
  if (Status s = ReadGgufFacts(writer->temp_path(), &m); !s.ok()) {
    return InvalidArgumentError("cannot import '" + options.file + "': " + s.message());
  }
  lock.RetakeMutex();
  ASSIGN_OR_RETURN(BlobInfo blob, writer->Commit(std::nullopt));
  m.digest = blob.digest;
  m.size_bytes = blob.size_bytes;
  m.lineage.created = NowUtc();
  m.lineage.command = options.command;
  m.lineage.notes = options.notes;
  m.lineage.training = options.training;
  if (!options.source.empty()) {
    m.lineage.source = options.source;
  } else {
    std::error_code ec;
    auto abs = std::filesystem::absolute(options.file, ec);
    m.lineage.source = ec ? options.file : abs.lexically_normal().string();
  }
  auto added = AddVersionLocked(m, options);
  if (!added.ok()) RemoveIfUnreferencedLocked(blob.digest);
  return added;
}

StatusOr<Manifest> Registry::NewManifestLocked(const std::string& gguf_path, const BlobInfo& blob,
                                                const ImportOptions& options) {
  Manifest m;
  m.name = options.name;
  if (options.version) {
    ASSIGN_OR_RETURN(Version v, ParseVersion(*options.version));
    m.version = v.ToString();
  } else {
    ASSIGN_OR_RETURN(m.version, NextVersionLocked(m.name));
  }
  if (Status s = ReadGgufFacts(gguf_path, &m); !s.ok()) {
    return InvalidArgumentError("blob " + blob.digest + " is not a usable model: " + s.message());
  }
  m.digest = blob.digest;
  m.size_bytes = blob.size_bytes;
  m.lineage.created = NowUtc();
  m.lineage.command = options.command;
  m.lineage.notes = options.notes;
  m.lineage.source = options.source;
  return m;
}

StatusOr<Manifest> Registry::RegisterBlob(const BlobInfo& blob, const ImportOptions& options) {
  RETURN_IF_ERROR(ValidateName(options.name));
  RETURN_IF_ERROR(ValidateDigest(blob.digest));
  for (const std::string& tag : options.tags) RETURN_IF_ERROR(ValidateTag(tag));
  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(std::string path, blobs_->PathFor(blob.digest));
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return NotFoundError("blob " + blob.digest + " is not in the store");
  if (static_cast<uint64_t>(st.st_size) != blob.size_bytes) {
    return DataLossError("blob " + blob.digest + " holds " + std::to_string(st.st_size) +
                         " bytes, expected " + std::to_string(blob.size_bytes));
  }
  ASSIGN_OR_RETURN(Manifest m, NewManifestLocked(path, blob, options));
  return AddVersionLocked(std::move(m), options);
}

StatusOr<Manifest> Registry::AdoptFile(const std::string& file, const BlobInfo& blob,
                                       const ImportOptions& options) {
  RETURN_IF_ERROR(ValidateName(options.name));
  RETURN_IF_ERROR(ValidateDigest(blob.digest));
  for (const std::string& tag : options.tags) RETURN_IF_ERROR(ValidateTag(tag));
  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(Manifest m, NewManifestLocked(file, blob, options));
  // Fail before the move when the version is taken, so the download is kept for a retry.
  RETURN_IF_ERROR(CheckVersionFreeLocked(m.name, m.version));
  RETURN_IF_ERROR(blobs_->AdoptFile(file, blob));
  if (options.after_blob_stored) options.after_blob_stored();
  auto added = AddVersionLocked(std::move(m), options);
  if (!added.ok()) RemoveIfUnreferencedLocked(blob.digest);
  return added;
}

StatusOr<std::vector<ModelEntry>> Registry::List() {
  MutationLock lock(*this, false);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(auto entries, LoadEntries(*db_, ""));
  std::vector<ModelEntry> out;
  for (ParsedEntry& e : entries) out.push_back(std::move(e.entry));
  return out;
}

StatusOr<ModelEntry> Registry::ResolveLocked(std::string_view text) {
  ASSIGN_OR_RETURN(Reference ref, ParseReference(text));
  ASSIGN_OR_RETURN(auto entries, LoadEntries(*db_, ref.name));
  if (entries.empty()) {
    return NotFoundError("no model named '" + ref.name + "' in the registry (see llmasos list)");
  }
  switch (ref.kind) {
    case Reference::Kind::kTag: {
      ASSIGN_OR_RETURN(auto target, db_->TagTarget(ref.name, ref.tag));
      if (!target) {
        std::set<std::string> tags;
        for (const ParsedEntry& e : entries) tags.insert(e.entry.tags.begin(), e.entry.tags.end());
        std::string list;
        for (const std::string& t : tags) list += (list.empty() ? "" : ", ") + t;
        return NotFoundError("model '" + ref.name + "' has no tag '" + ref.tag + "' (tags: " +
                             (list.empty() ? "none" : list) + ")");
      }
      for (ParsedEntry& e : entries) {
        if (e.entry.manifest.version == *target) return std::move(e.entry);
      }
      return DataLossError("tag " + ref.name + ":" + ref.tag + " points at missing version " + *target);
    }
    case Reference::Kind::kVersion:
      for (ParsedEntry& e : entries) {
        if (ComparePrecedence(e.version, ref.version) == 0) return std::move(e.entry);
      }
      return NotFoundError("model '" + ref.name + "' has no version " + ref.version.ToString() +
                           " (versions: " + JoinVersions(entries) + ")");
    case Reference::Kind::kRange: {
      std::vector<Version> versions;
      for (const ParsedEntry& e : entries) versions.push_back(e.version);
      auto best = HighestMatching(*ref.range, versions);
      if (!best) {
        return NotFoundError("no version of '" + ref.name + "' matches '" + ref.range->text() +
                             "' (versions: " + JoinVersions(entries) + ")");
      }
      return std::move(entries[*best].entry);
    }
  }
  return InternalError("unreachable");
}

StatusOr<ModelEntry> Registry::Show(std::string_view ref) {
  MutationLock lock(*this, false);
  RETURN_IF_ERROR(lock.status());
  return ResolveLocked(ref);
}

Status Registry::ReassignLatestLocked(const std::string& name) {
  ASSIGN_OR_RETURN(auto latest, db_->TagTarget(name, std::string(kLatestTag)));
  if (latest) return OkStatus();
  ASSIGN_OR_RETURN(auto entries, LoadEntries(*db_, name));
  if (entries.empty()) return OkStatus();
  const ParsedEntry* pick = &entries.front();  // highest precedence
  for (const ParsedEntry& e : entries) {
    if (!e.version.is_prerelease()) {
      pick = &e;  // highest release, if any
      break;
    }
  }
  return db_->SetTag(name, std::string(kLatestTag), pick->entry.manifest.version);
}

StatusOr<RemoveResult> Registry::Remove(std::string_view ref, bool force) {
  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(ModelEntry entry, ResolveLocked(ref));
  const Manifest& m = entry.manifest;
  if (entry.loaded && !force) {
    return FailedPreconditionError(m.name + "@" + m.version +
                                   " is loaded; unload it first or remove it with --force");
  }
  RETURN_IF_ERROR(db_->Begin());
  if (Status s = db_->DeleteVersion(m.name, m.version); !s.ok()) {
    db_->Rollback();
    return s;
  }
  if (Status s = ReassignLatestLocked(m.name); !s.ok()) {
    db_->Rollback();
    return s;
  }
  RETURN_IF_ERROR(db_->Commit());
  RemoveResult result{m.name, m.version, {}};
  // The row is gone; now the blob, if nothing else names it.
  ASSIGN_OR_RETURN(auto referenced, db_->ReferencedDigests());
  if (referenced.count(m.digest) == 0) {
    RETURN_IF_ERROR(blobs_->Remove(m.digest));
    result.blobs_removed.push_back(m.digest);
  }
  return result;
}

StatusOr<Manifest> Registry::Copy(std::string_view src, std::string_view dst) {
  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(ModelEntry from, ResolveLocked(src));
  ASSIGN_OR_RETURN(Reference to, ParseReference(dst));
  ImportOptions options;
  options.name = to.name;
  Manifest m = from.manifest;
  m.name = to.name;
  if (to.kind == Reference::Kind::kRange) {
    return InvalidArgumentError("copy destination '" + std::string(dst) +
                                "' is a range; give NAME, NAME:TAG or NAME@VERSION");
  }
  if (to.kind == Reference::Kind::kVersion) m.version = to.version.ToString();
  if (to.kind == Reference::Kind::kTag && to.tag != kLatestTag) options.tags.push_back(to.tag);
  m.lineage.source = from.manifest.name + "@" + from.manifest.version;
  m.lineage.created = NowUtc();
  m.lineage.command = "cp";
  options.command = "cp";
  return AddVersionLocked(std::move(m), options);
}

StatusOr<Manifest> Registry::Tag(std::string_view ref, std::string_view tag) {
  RETURN_IF_ERROR(ValidateTag(tag));
  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(ModelEntry entry, ResolveLocked(ref));
  RETURN_IF_ERROR(db_->SetTag(entry.manifest.name, std::string(tag), entry.manifest.version));
  return entry.manifest;
}

StatusOr<std::vector<ModelEntry>> Registry::History(std::string_view name) {
  RETURN_IF_ERROR(ValidateName(name));
  MutationLock lock(*this, false);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(auto entries, LoadEntries(*db_, std::string(name)));
  if (entries.empty()) {
    return NotFoundError("no model named '" + std::string(name) + "' in the registry (see llmasos list)");
  }
  std::vector<ModelEntry> out;
  for (ParsedEntry& e : entries) out.push_back(std::move(e.entry));
  return out;
}

StatusOr<std::vector<FieldDiff>> Registry::Diff(std::string_view ref_a, std::string_view ref_b) {
  MutationLock lock(*this, false);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(ModelEntry a, ResolveLocked(ref_a));
  ASSIGN_OR_RETURN(ModelEntry b, ResolveLocked(ref_b));
  return DiffManifests(a.manifest, b.manifest);
}

StatusOr<Manifest> Registry::Rollback(std::string_view name_view,
                                      const std::optional<std::string>& to_version) {
  std::string name(name_view);
  RETURN_IF_ERROR(ValidateName(name));
  std::optional<Version> to;
  if (to_version) {
    ASSIGN_OR_RETURN(to, ParseVersion(*to_version));
  }
  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(auto entries, LoadEntries(*db_, name));
  if (entries.empty()) {
    return NotFoundError("no model named '" + name + "' in the registry (see llmasos list)");
  }
  ASSIGN_OR_RETURN(auto latest, db_->TagTarget(name, std::string(kLatestTag)));
  const ParsedEntry* current = nullptr;
  for (const ParsedEntry& e : entries) {
    if (latest && e.entry.manifest.version == *latest) current = &e;
  }
  const ParsedEntry* target = nullptr;
  if (to) {
    for (const ParsedEntry& e : entries) {
      if (ComparePrecedence(e.version, *to) == 0) target = &e;
    }
    if (target == nullptr) {
      return NotFoundError("model '" + name + "' has no version " + to->ToString() +
                           " (versions: " + JoinVersions(entries) + ")");
    }
  } else {
    // entries are in descending precedence: the first release below the current latest.
    for (const ParsedEntry& e : entries) {
      if (e.version.is_prerelease()) continue;
      if (current == nullptr || ComparePrecedence(e.version, current->version) < 0) {
        target = &e;
        break;
      }
    }
    if (target == nullptr) {
      return FailedPreconditionError(
          "nothing to roll back to: " + name + ":latest is " +
          (current ? current->entry.manifest.version : std::string("unset")) +
          " and there is no earlier release (versions: " + JoinVersions(entries) + ")");
    }
  }
  RETURN_IF_ERROR(db_->SetTag(name, std::string(kLatestTag), target->entry.manifest.version));
  return target->entry.manifest;
}

StatusOr<ResolvedModel> Registry::Resolve(std::string_view ref) {
  MutationLock lock(*this, false);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(ModelEntry entry, ResolveLocked(ref));
  ResolvedModel out{std::move(entry.manifest), ""};
  ASSIGN_OR_RETURN(out.blob_path, blobs_->PathFor(out.manifest.digest));
  struct stat st;
  if (::stat(out.blob_path.c_str(), &st) != 0) {
    const std::string label = out.manifest.name + "@" + out.manifest.version;
    const Status s = ErrnoError("reading the blob", out.blob_path, errno);
    // A blob the manifest names but the disk lacks is lost data, not an unknown model.
    if (s.code() == StatusCode::kNotFound) return DataLossError(label + ": " + s.message());
    return s.Annotate(label);
  }
  if (static_cast<uint64_t>(st.st_size) != out.manifest.size_bytes) {
    return DataLossError(out.manifest.name + "@" + out.manifest.version + ": blob '" +
                         out.blob_path + "' holds " + std::to_string(st.st_size) +
                         " bytes but the manifest says " + std::to_string(out.manifest.size_bytes));
  }
  return out;
}

Status Registry::Verify(std::string_view ref) {
  ASSIGN_OR_RETURN(ResolvedModel resolved, Resolve(ref));
  Status s = blobs_->Verify(resolved.manifest.digest);
  if (!s.ok()) return s.Annotate(resolved.manifest.name + "@" + resolved.manifest.version);
  return OkStatus();
}

Status Registry::SetLoaded(std::string_view ref, bool loaded) {
  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  ASSIGN_OR_RETURN(ModelEntry entry, ResolveLocked(ref));
  return db_->SetLoaded(entry.manifest.name, entry.manifest.version, loaded);
}

Status Registry::ClearLoadedMarks() {
  MutationLock lock(*this, true);
  RETURN_IF_ERROR(lock.status());
  return db_->ClearLoaded();
}

}  // namespace llmasos::registry
