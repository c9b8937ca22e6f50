#include "services/registry/blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <random>

#include "services/registry/validate.h"
#include "util/file.h"

namespace llmasos::registry {
namespace {

constexpr std::string_view kTempPrefix = ".tmp-";
constexpr size_t kCopyChunkBytes = 1 << 20;

std::string RandomSuffix() {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^
                                         static_cast<uint64_t>(::getpid()) << 32);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s;
  uint64_t r = rng();
  for (int i = 0; i < 16; ++i, r >>= 4) s += kHex[r & 15];
  return s;
}

}  // namespace

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  CHECK(impl_->ctx != nullptr) << "EVP_MD_CTX_new failed";
  CHECK(EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) == 1) << "EVP_DigestInit_ex failed";
}

Sha256::~Sha256() { EVP_MD_CTX_free(impl_->ctx); }

void Sha256::Update(std::span<const uint8_t> bytes) {
  CHECK(EVP_DigestUpdate(impl_->ctx, bytes.data(), bytes.size()) == 1) << "EVP_DigestUpdate failed";
}

std::string Sha256::FinishDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  CHECK(EVP_DigestFinal_ex(impl_->ctx, md, &len) == 1 && len == 32) << "EVP_DigestFinal_ex failed";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kDigestPrefix);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

StatusOr<BlobInfo> HashFile(const std::string& path) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  Sha256 hasher;
  std::vector<uint8_t> buf(kCopyChunkBytes);
  BlobInfo info;
  while (true) {
    ASSIGN_OR_RETURN(size_t n, ReadSome(fd.get(), buf, path));
    if (n == 0) break;
    hasher.Update({buf.data(), n});
    info.size_bytes += n;
  }
  info.digest = hasher.FinishDigest();
  return info;
}

BlobStore::Writer::~Writer() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Status BlobStore::Writer::Append(std::span<const uint8_t> bytes) {
  CHECK(!done_) << "Append after Commit";
  RETURN_IF_ERROR(WriteAll(fd_, bytes, temp_path_));
  hasher_.Update(bytes);
  bytes_written_ += bytes.size();
  return OkStatus();
}

StatusOr<BlobInfo> BlobStore::Writer::Commit(const std::optional<std::string>& expected_digest) {
  CHECK(!done_) << "Commit twice";
  if (expected_digest) RETURN_IF_ERROR(ValidateDigest(*expected_digest));
  RETURN_IF_ERROR(SyncFile(fd_, temp_path_));
  BlobInfo info{hasher_.FinishDigest(), bytes_written_};
  if (expected_digest && *expected_digest != info.digest) {
    return DataLossError("content does not match its digest: expected " + *expected_digest +
                         ", got " + info.digest + " (" + std::to_string(info.size_bytes) +
                         " bytes); nothing was stored");
  }
  std::string final_path = store_->root_ + "/" + BlobFileName(info.digest);
  // rename() replaces an existing blob with identical content, which is harmless; keeping
  // the existing one avoids rewriting a file another process may have mapped.
  if (::access(final_path.c_str(), F_OK) != 0) {
    if (::rename(temp_path_.c_str(), final_path.c_str()) != 0) {
      return ErrnoError("renaming into place", final_path, errno);
    }
    done_ = true;
    RETURN_IF_ERROR(store_->SyncDir());
  }
  ::close(fd_);
  fd_ = -1;
  if (!done_) ::unlink(temp_path_.c_str());
  done_ = true;
  return info;
}

StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(const std::string& root) {
  if (::mkdir(root.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoError("creating the blob directory", root, errno);
  }
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) return ErrnoError("reading", root, errno);
  if (!S_ISDIR(st.st_mode)) return FailedPreconditionError("'" + root + "' is not a directory");
  return std::unique_ptr<BlobStore>(new BlobStore(root));
}

StatusOr<std::unique_ptr<BlobStore::Writer>> BlobStore::NewWriter() const {
  std::unique_ptr<Writer> w(new Writer());
  w->store_ = this;
  w->temp_path_ = root_ + "/" + std::string(kTempPrefix) + RandomSuffix();
  w->fd_ = ::open(w->temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (w->fd_ < 0) {
    Status s = ErrnoError("creating", w->temp_path_, errno);
    w->temp_path_.clear();
    return s;
  }
  // Marks the temp file as live for RemoveStaleTempFiles in other processes.
  if (::flock(w->fd_, LOCK_EX | LOCK_NB) != 0) return ErrnoError("locking", w->temp_path_, errno);
  return w;
}

StatusOr<BlobInfo> BlobStore::ImportFile(const std::string& source,
                                         const std::optional<std::string>& expected_digest) const {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(source, O_RDONLY));
  ASSIGN_OR_RETURN(auto writer, NewWriter());
  std::vector<uint8_t> buf(kCopyChunkBytes);
  while (true) {
    ASSIGN_OR_RETURN(size_t n, ReadSome(fd.get(), buf, source));
    if (n == 0) break;
    RETURN_IF_ERROR(writer->Append({buf.data(), n}));
  }
  return writer->Commit(expected_digest);
}

Status BlobStore::AdoptFile(const std::string& path, const BlobInfo& blob) const {
  ASSIGN_OR_RETURN(std::string final_path, PathFor(blob.digest));
  struct stat st;
  {
    ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
    if (::fstat(fd.get(), &st) != 0) return ErrnoError("reading", path, errno);
    RETURN_IF_ERROR(SyncFile(fd.get(), path));
  }
  if (static_cast<uint64_t>(st.st_size) != blob.size_bytes) {
    return DataLossError("'" + path + "' holds " + std::to_string(st.st_size) + " bytes, expected " +
                         std::to_string(blob.size_bytes));
  }
  if (::access(final_path.c_str(), F_OK) == 0) {
    if (::unlink(path.c_str()) != 0) return ErrnoError("removing", path, errno);
    return OkStatus();
  }
  if (::rename(path.c_str(), final_path.c_str()) != 0) {
    return ErrnoError("renaming into place", final_path, errno);
  }
  return SyncDir();
}

StatusOr<std::string> BlobStore::PathFor(std::string_view digest) const {
  RETURN_IF_ERROR(ValidateDigest(digest));
  return root_ + "/" + BlobFileName(digest);
}

bool BlobStore::Contains(std::string_view digest) const {
  auto path = PathFor(digest);
  return path.ok() && ::access(path->c_str(), F_OK) == 0;
}

Status BlobStore::Verify(std::string_view digest) const {
  ASSIGN_OR_RETURN(std::string path, PathFor(digest));
  ASSIGN_OR_RETURN(BlobInfo info, HashFile(path));
  if (info.digest != digest) {
    return DataLossError("blob '" + path + "' is corrupt: its content hashes to " + info.digest);
  }
  return OkStatus();
}

Status BlobStore::Remove(std::string_view digest) const {
  ASSIGN_OR_RETURN(std::string path, PathFor(digest));
  RETURN_IF_ERROR(RemoveDerived(digest).status());
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("removing", path, errno);
  return SyncDir();
}

StatusOr<std::vector<std::string>> BlobStore::List() const {
  DIR* dir = ::opendir(root_.c_str());
  if (dir == nullptr) return ErrnoError("listing", root_, errno);
  std::vector<std::string> out;
  while (struct dirent* e = ::readdir(dir)) {
    std::string_view file = e->d_name;
    if (file.substr(0, 7) != "sha256-") continue;
    std::string digest = std::string(kDigestPrefix) + std::string(file.substr(7));
    if (ValidateDigest(digest).ok()) out.push_back(std::move(digest));
  }
  ::closedir(dir);
  return out;
}

namespace {

bool ValidKind(std::string_view kind) {
  if (kind.empty() || kind.size() > 64) return false;
  for (char c : kind) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  }
  return true;
}

}  // namespace

StatusOr<std::string> BlobStore::DerivedPathOf(const std::string& blob_path, std::string_view kind) {
  if (!ValidKind(kind)) {
    return InvalidArgumentError("derived blob kind '" + std::string(kind) +
                                "' must be 1 to 64 of [a-z0-9_-]");
  }
  return blob_path + "." + std::string(kind);
}

StatusOr<std::string> BlobStore::DerivedPathFor(std::string_view digest, std::string_view kind) const {
  ASSIGN_OR_RETURN(std::string path, PathFor(digest));
  return DerivedPathOf(path, kind);
}

StatusOr<std::vector<DerivedBlob>> BlobStore::ListDerived() const {
  DIR* dir = ::opendir(root_.c_str());
  if (dir == nullptr) return ErrnoError("listing", root_, errno);
  std::vector<std::string> files;
  while (struct dirent* e = ::readdir(dir)) files.emplace_back(e->d_name);
  ::closedir(dir);
  std::vector<DerivedBlob> out;
  for (const std::string& file : files) {
    if (!file.starts_with("sha256-")) continue;
    const size_t dot = file.find('.');
    if (dot == std::string::npos) continue;
    DerivedBlob d;
    d.digest = std::string(kDigestPrefix) + file.substr(7, dot - 7);
    d.kind = file.substr(dot + 1);
    if (!ValidateDigest(d.digest).ok() || !ValidKind(d.kind)) continue;  // temp files too
    struct stat st;
    if (::stat((root_ + "/" + file).c_str(), &st) != 0) continue;  // removed meanwhile
    d.size_bytes = static_cast<uint64_t>(st.st_size);
    out.push_back(std::move(d));
  }
  return out;
}

StatusOr<size_t> BlobStore::RemoveDerived(std::string_view digest) const {
  ASSIGN_OR_RETURN(std::string path, PathFor(digest));
  const std::string prefix = path.substr(root_.size() + 1) + ".";
  DIR* dir = ::opendir(root_.c_str());
  if (dir == nullptr) return ErrnoError("listing", root_, errno);
  std::vector<std::string> files;
  while (struct dirent* e = ::readdir(dir)) {
    if (std::string_view(e->d_name).starts_with(prefix)) files.emplace_back(e->d_name);
  }
  ::closedir(dir);
  size_t removed = 0;
  for (const std::string& file : files) {
    const std::string p = root_ + "/" + file;
    if (::unlink(p.c_str()) == 0) {
      ++removed;
    } else if (errno != ENOENT) {
      return ErrnoError("removing", p, errno);
    }
  }
  if (removed > 0) RETURN_IF_ERROR(SyncDir());
  return removed;
}

StatusOr<size_t> BlobStore::RemoveStaleTempFiles() const {
  DIR* dir = ::opendir(root_.c_str());
  if (dir == nullptr) return ErrnoError("listing", root_, errno);
  std::vector<std::string> temps;
  while (struct dirent* e = ::readdir(dir)) {
    std::string_view file = e->d_name;
    if (file.substr(0, kTempPrefix.size()) == kTempPrefix) temps.emplace_back(file);
  }
  ::closedir(dir);
  size_t removed = 0;
  for (const std::string& file : temps) {
    std::string path = root_ + "/" + file;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    // A writer that is still running holds the lock; leave its file alone.
    bool stale = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    if (stale && ::unlink(path.c_str()) == 0) ++removed;
    ::close(fd);
  }
  return removed;
}

Status BlobStore::SyncDir() const { return ::llmasos::SyncDir(root_); }

}  // namespace llmasos::registry
