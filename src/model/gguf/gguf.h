// GGUF reader (versions 2 and 3). The file is memory-mapped (or a caller-owned byte span is
// parsed in place); strings, arrays and tensor data are views into it, never copies.
//
// Every count, length, dimension, type id, offset and the alignment is validated against the
// file size before use, with overflow-checked arithmetic. A violation returns kDataLoss naming
// the field and its value, e.g. "metadata key #3 ('general.name'): string length 2^63 runs past
// the end of the file (size 4096)". No allocation is made whose size comes from the file
// without first checking that the file is large enough to hold what it claims.
//
// Thread safety: a GgufFile is immutable after Open/Parse; any thread may read it.
#ifndef LLMASOS_MODEL_GGUF_GGUF_H_
#define LLMASOS_MODEL_GGUF_GGUF_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "drivers/cpu/tensor_type.h"
#include "util/mapped_file.h"
#include "util/status.h"

namespace llmasos::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
inline constexpr uint64_t kDefaultAlignment = 32;
// general.alignment must be a power of two no larger than this (16 MiB).
inline constexpr uint64_t kMaxAlignment = 1 << 24;

enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

std::string_view ValueTypeName(ValueType type);
// Bytes of one value of a fixed-size type (1, 2, 4 or 8); 0 for strings, arrays and unknown ids.
uint64_t ValueTypeBytes(ValueType type);

// One metadata value. Scalars are decoded; strings and arrays point into the file.
struct Value {
  ValueType type = ValueType::kUint8;
  // Scalar payloads: integers (and bool) widened, floats widened to double.
  uint64_t u64 = 0;
  int64_t i64 = 0;
  double f64 = 0;
  std::string_view str;  // kString
  // kArray: element type and count; numeric elements are `array_count` little-endian values
  // at `array_data`; string elements are in `array_strings`. Nested arrays are rejected.
  ValueType array_type = ValueType::kUint8;
  uint64_t array_count = 0;
  const uint8_t* array_data = nullptr;
  std::vector<std::string_view> array_strings;
};

// Element k (< array_count) of an array of a fixed-size type, decoded into a scalar Value.
// REQUIRES: array.type == kArray with a fixed-size array_type (the parser checked the bytes).
Value ArrayElement(const Value& array, uint64_t k);

struct MetadataEntry {
  std::string_view key;
  Value value;
};

struct TensorInfo {
  std::string_view name;
  cpu::TensorType type;
  std::vector<uint64_t> dims;  // GGUF order: dims[0] (ne0) is the innermost, contiguous one
  uint64_t num_elements = 0;
  uint64_t offset = 0;  // relative to the start of the tensor data section
  uint64_t num_bytes = 0;
  const uint8_t* data = nullptr;  // into the file bytes; file offset is a multiple of alignment()
};

class GgufFile {
 public:
  // Maps and parses the file at `path`. Errors name the path.
  static StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses `bytes` in place; the caller keeps them alive as long as the GgufFile.
  static StatusOr<std::unique_ptr<GgufFile>> Parse(std::span<const uint8_t> bytes);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t size_bytes() const { return bytes_.size(); }
  std::span<const uint8_t> bytes() const { return bytes_; }

  const std::vector<MetadataEntry>& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }

  // nullptr when absent.
  const Value* Find(std::string_view key) const;
  const TensorInfo* FindTensor(std::string_view name) const;

  // Typed getters. NotFound when absent; InvalidArgument (naming key, expected and actual
  // type) when the type does not fit. Integer getters accept any integer type whose value fits.
  StatusOr<std::string_view> GetString(std::string_view key) const;
  StatusOr<uint64_t> GetUint(std::string_view key) const;
  StatusOr<int64_t> GetInt(std::string_view key) const;
  StatusOr<double> GetFloat(std::string_view key) const;  // float32/float64 (and integers)
  StatusOr<bool> GetBool(std::string_view key) const;
  StatusOr<const std::vector<std::string_view>*> GetStringArray(std::string_view key) const;
  StatusOr<std::vector<float>> GetFloatArray(std::string_view key) const;
  StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;

  // For tensor data the caller has copied (e.g. repacked): drops its whole pages from the
  // resident set when the file is memory-mapped (MappedFile::ReleasePages); no-op for a
  // caller-owned span.
  void ReleasePages(const void* p, size_t n) const {
    if (mapped_ != nullptr) mapped_->ReleasePages(p, n);
  }

 private:
  GgufFile() = default;

  std::unique_ptr<MappedFile> mapped_;  // null when parsing a caller-owned span
  std::span<const uint8_t> bytes_;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  std::vector<MetadataEntry> metadata_;
  std::vector<TensorInfo> tensors_;
  friend class GgufParser;
};

}  // namespace llmasos::gguf

#endif  // LLMASOS_MODEL_GGUF_GGUF_H_
