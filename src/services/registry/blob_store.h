// Content-addressed blob store: `<root>/sha256-<hex>`, one file per distinct content.
//
// A blob becomes visible only whole and verified: it is written to a temp file in the same
// directory (`.tmp-*`, held under an exclusive flock while open), hashed as it is written,
// fsynced, checked against the expected digest if one was given, renamed into place
// atomically, and the directory is fsynced. A crash leaves at most a temp file, which
// RemoveStaleTempFiles deletes (it skips temp files another writer still holds).
//
// Derived blobs: files made from a blob for faster use, such as a model's weights repacked for
// this CPU (model/arch/packed_blob.h), live next to it as `<root>/sha256-<hex>.<kind>`. Their
// writers replace them whole (temp file and rename); removing a blob removes its derived blobs
// (and their writers' leftover temp files); they are caches, so losing one costs only time.
//
// Thread safety: a BlobStore may be shared between threads; each Writer belongs to one thread.
#ifndef LLMASOS_SERVICES_REGISTRY_BLOB_STORE_H_
#define LLMASOS_SERVICES_REGISTRY_BLOB_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "util/status.h"

namespace llmasos::registry {

struct DerivedBlob {
  std::string digest;  // of the source blob, "sha256:<hex>"
  std::string kind;    // e.g. "packed-v1-avx3_zen4"
  uint64_t size_bytes = 0;
};

struct BlobInfo {
  std::string digest;  // "sha256:<hex>"
  uint64_t size_bytes = 0;
};

// Incremental SHA-256 (OpenSSL EVP).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::span<const uint8_t> bytes);
  // "sha256:<64 lowercase hex>". The hasher cannot be updated afterwards.
  std::string FinishDigest();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The digest of a whole file; kNotFound / kIoError naming the path.
StatusOr<BlobInfo> HashFile(const std::string& path);

class BlobStore {
 public:
  // A blob being written. Destroying a Writer that was not committed removes its temp file.
  class Writer {
   public:
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    Status Append(std::span<const uint8_t> bytes);
    uint64_t bytes_written() const { return bytes_written_; }
    // Finishes the blob: fsync, digest check (kDataLoss "expected X, got Y" on mismatch, and
    // the temp file is removed), rename to its content address, directory fsync. If the
    // blob already exists the temp file is dropped and the existing one kept.
    StatusOr<BlobInfo> Commit(const std::optional<std::string>& expected_digest);
    // The temp file's path, for callers that must read what was written before Commit
    // (the registry parses a model's metadata there, before it becomes visible).
    const std::string& temp_path() const { return temp_path_; }

   private:
    friend class BlobStore;
    Writer() = default;

    const BlobStore* store_ = nullptr;
    int fd_ = -1;
    std::string temp_path_;
    Sha256 hasher_;
    uint64_t bytes_written_ = 0;
    bool done_ = false;
  };

  // Creates `root` if needed.
  static StatusOr<std::unique_ptr<BlobStore>> Open(const std::string& root);

  const std::string& root() const { return root_; }

  StatusOr<std::unique_ptr<Writer>> NewWriter() const;
  // Moves a complete file that is on the same file system as the store into it: fsync, check
  // its size and digest against `blob` (kDataLoss on mismatch; the file is left alone),
  // rename to its content address, directory fsync. If the blob already exists the file is
  // removed and the existing blob kept. The caller hashed the file as it wrote it.
  Status AdoptFile(const std::string& path, const BlobInfo& blob) const;
  // Copies a file into the store through a Writer.
  StatusOr<BlobInfo> ImportFile(const std::string& source,
                                const std::optional<std::string>& expected_digest) const;

  // The blob's path; kInvalidArgument for a malformed digest (no path is built then).
  StatusOr<std::string> PathFor(std::string_view digest) const;
  bool Contains(std::string_view digest) const;
  // Re-hashes the blob: kDataLoss if its content no longer matches its name, kNotFound if
  // it is missing.
  Status Verify(std::string_view digest) const;
  // Removes the blob and its derived blobs.
  Status Remove(std::string_view digest) const;
  // Where the derived blob of `kind` ([a-z0-9_-], 1 to 64 characters) of the blob at
  // `blob_path` (PathFor) lives; kInvalidArgument for a malformed kind. The file may not exist.
  static StatusOr<std::string> DerivedPathOf(const std::string& blob_path, std::string_view kind);
  StatusOr<std::string> DerivedPathFor(std::string_view digest, std::string_view kind) const;
  // Every complete derived blob in the store (of any source, present or not).
  StatusOr<std::vector<DerivedBlob>> ListDerived() const;
  // Removes every derived blob of `digest`; returns how many files went.
  StatusOr<size_t> RemoveDerived(std::string_view digest) const;
  // Digests of every well-formed blob file in the store (other files are ignored).
  StatusOr<std::vector<std::string>> List() const;
  // Deletes temp files left by a crashed writer; returns how many.
  StatusOr<size_t> RemoveStaleTempFiles() const;

 private:
  explicit BlobStore(std::string root) : root_(std::move(root)) {}
  Status SyncDir() const;

  std::string root_;
};

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_BLOB_STORE_H_
