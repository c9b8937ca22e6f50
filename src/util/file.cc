#include "util/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace llmasos {

Status ErrnoError(std::string_view action, std::string_view path, int err) {
  if (err == 0) err = EIO;
  std::string m(action);
  m += " '";
  m += path;
  m += "': ";
  m += std::strerror(err);
  switch (err) {
    case ENOENT:
      return NotFoundError(std::move(m));
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return ResourceExhaustedError("disk full " + m);
    case EACCES:
    case EPERM:
    case EROFS:
      return PermissionDeniedError(std::move(m));
    default:
      return IoError(std::move(m));
  }
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    Reset();
    fd_ = other.Release();
  }
  return *this;
}

int UniqueFd::Release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::Reset() {
  // close(2) may report a deferred write error; the writers that care fsync first.
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

StatusOr<UniqueFd> OpenFile(const std::string& path, int flags, int mode) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoError("opening", path, errno);
  return UniqueFd(fd);
}

StatusOr<size_t> ReadSome(int fd, std::span<uint8_t> buf, std::string_view path) {
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return ErrnoError("reading", path, errno);
  }
}

Status PreadExact(int fd, std::span<uint8_t> out, uint64_t offset, std::string_view path) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("reading", path, errno);
    if (n == 0) {
      return DataLossError("reading '" + std::string(path) + "': the file ends at byte " +
                           std::to_string(offset + done) + ", before the " + std::to_string(out.size()) +
                           " bytes wanted at " + std::to_string(offset));
    }
    done += static_cast<size_t>(n);
  }
  return OkStatus();
}

namespace {

// One write loop for write(2) (offset < 0) and pwrite(2).
Status WriteLoop(int fd, std::span<const uint8_t> bytes, int64_t offset, std::string_view path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = offset < 0 ? ::write(fd, bytes.data() + done, bytes.size() - done)
                                 : ::pwrite(fd, bytes.data() + done, bytes.size() - done,
                                            static_cast<off_t>(offset + static_cast<int64_t>(done)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("writing", path, errno);
    if (n == 0) return ErrnoError("writing", path, ENOSPC);  // no progress: nowhere to put it
    done += static_cast<size_t>(n);
  }
  return OkStatus();
}

}  // namespace

Status WriteAll(int fd, std::span<const uint8_t> bytes, std::string_view path) {
  return WriteLoop(fd, bytes, -1, path);
}

Status PwriteAll(int fd, std::span<const uint8_t> bytes, uint64_t offset, std::string_view path) {
  return WriteLoop(fd, bytes, static_cast<int64_t>(offset), path);
}

Status SyncFile(int fd, std::string_view path) {
  if (::fsync(fd) != 0) return ErrnoError("syncing", path, errno);
  return OkStatus();
}

Status SyncDir(const std::string& dir) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(dir, O_RDONLY | O_DIRECTORY));
  return SyncFile(fd.get(), dir);
}

StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes) {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  std::string out;
  uint8_t buf[1 << 16];
  while (true) {
    ASSIGN_OR_RETURN(size_t n, ReadSome(fd.get(), buf, path));
    if (n == 0) break;
    if (out.size() + n > max_bytes) {
      return ResourceExhaustedError("'" + path + "' is larger than the limit of " + std::to_string(max_bytes) +
                                    " bytes");
    }
    out.append(reinterpret_cast<const char*>(buf), n);
  }
  return out;
}

Status WriteFileAtomically(const std::string& path, std::string_view contents) {
  const std::span<const uint8_t> part(reinterpret_cast<const uint8_t*>(contents.data()), contents.size());
  return WriteFileAtomically(path, std::span<const std::span<const uint8_t>>(&part, 1));
}

Status WriteFileAtomically(const std::string& path, std::span<const std::span<const uint8_t>> parts,
                           bool durable) {
  static std::atomic<uint64_t> next_tmp{0};
  const std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(next_tmp++);
  ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(tmp, O_WRONLY | O_CREAT | O_TRUNC));
  Status s = OkStatus();
  for (size_t i = 0; i < parts.size() && s.ok(); ++i) s = WriteAll(fd.get(), parts[i], tmp);
  if (s.ok() && durable) s = SyncFile(fd.get(), tmp);
  fd.Reset();
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = ErrnoError("renaming into place", path, errno);
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

}  // namespace llmasos
