// Files: the one rule that turns a failed system call into a Status, and the helpers every
// layer uses to read, write, sync and replace files (each retries EINTR and reports through
// that rule, so an error always names the action, the path and the cause).
//
// Thread safety: free functions over file descriptors; no shared state.
#ifndef LLMASOS_UTIL_FILE_H_
#define LLMASOS_UTIL_FILE_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "util/status.h"

namespace llmasos {

// The errno-to-Status rule. The message is "<action> '<path>': <strerror(err)>" and the code
// says what a user can do about it:
//   ENOENT                 kNotFound
//   ENOSPC, EDQUOT, EFBIG  kResourceExhausted, the message prefixed "disk full " (EFBIG: the
//                          file size limit, RLIMIT_FSIZE, is a full disk as far as we can tell)
//   EACCES, EPERM, EROFS   kPermissionDenied
//   anything else          kIoError
// `action` is a verb phrase ("reading", "renaming into place"); err 0 reads as EIO.
Status ErrnoError(std::string_view action, std::string_view path, int err);

// Owns a file descriptor: closes it when destroyed. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int Release();
  void Reset();

 private:
  int fd_ = -1;
};

// open(2) with O_CLOEXEC added; errors through ErrnoError("opening", path, errno).
StatusOr<UniqueFd> OpenFile(const std::string& path, int flags, int mode = 0644);

// Reads up to buf.size() bytes (one read(2), retried on EINTR). 0 at the end of the file.
StatusOr<size_t> ReadSome(int fd, std::span<uint8_t> buf, std::string_view path);
// Reads exactly out.size() bytes at `offset`. DataLoss naming the path when the file ends first.
Status PreadExact(int fd, std::span<uint8_t> out, uint64_t offset, std::string_view path);
// Writes all of `bytes` (at the file position, or at `offset`). A write that makes no
// progress is a full disk (ENOSPC).
Status WriteAll(int fd, std::span<const uint8_t> bytes, std::string_view path);
Status PwriteAll(int fd, std::span<const uint8_t> bytes, uint64_t offset, std::string_view path);
// fsync(2) of an open file, and of a directory by path (makes renames and unlinks in it durable).
Status SyncFile(int fd, std::string_view path);
Status SyncDir(const std::string& dir);

// Reads a whole (small) file into a string; refuses files over `max_bytes`.
StatusOr<std::string> ReadFileToString(const std::string& path, size_t max_bytes);

// Writes `contents` to `path` through a temporary file, fsync and an atomic rename, so a
// reader sees either the old file or the complete new one. The temporary file is removed on
// failure.
Status WriteFileAtomically(const std::string& path, std::string_view contents);
// The same for a file written from several pieces in order (no copy into one buffer). The
// temporary name is unique to the calling thread, so concurrent writers of one path (threads
// or processes) each rename a complete file into place and the last one wins. `durable`
// false skips the fsync: for caches whose readers verify what they read (after a crash the
// renamed file may hold fewer or zeroed bytes), where syncing would only cost time.
Status WriteFileAtomically(const std::string& path, std::span<const std::span<const uint8_t>> parts,
                           bool durable = true);

}  // namespace llmasos

#endif  // LLMASOS_UTIL_FILE_H_
