// A read-only memory-mapped file. The mapping lives as long as the object.
//
// Thread safety: immutable after Open(); data() may be read from any thread.
#ifndef LLMASOS_UTIL_MAPPED_FILE_H_
#define LLMASOS_UTIL_MAPPED_FILE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "util/status.h"

namespace llmasos {

class MappedFile {
 public:
  // Maps `path` read-only. An empty file maps to an empty span.
  static StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_bytes_}; }
  const uint8_t* data() const { return data_; }
  size_t size_bytes() const { return size_bytes_; }
  const std::string& path() const { return path_; }

  // Drops the whole pages of [p, p + n) (clipped to the mapping) from this process's
  // resident set, for data copied elsewhere; a later read faults them back in from the file.
  void ReleasePages(const void* p, size_t n) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size_bytes)
      : path_(std::move(path)), data_(data), size_bytes_(size_bytes) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_bytes_;
};

}  // namespace llmasos

#endif  // LLMASOS_UTIL_MAPPED_FILE_H_
