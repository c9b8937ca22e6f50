// GGUF writer: builds a GGUF file (version 3 by default) in memory or on disk. Tests use it to
// make tiny models of any shape and type; the quantize tool uses it to write converted models.
//
// Thread safety: not thread-safe; one writer per thread.
#ifndef LLMASOS_MODEL_GGUF_GGUF_WRITER_H_
#define LLMASOS_MODEL_GGUF_GGUF_WRITER_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "drivers/cpu/tensor_type.h"
#include "model/gguf/gguf.h"
#include "util/status.h"

namespace llmasos::gguf {

// The tensor type named `name` ("q4_k", "Q8_0", "bf16": llama.cpp's names, any case) if
// GgufWriter::AddTensorFromFloats can write it; InvalidArgument naming the types it can
// otherwise. The one parser of type names for every tool that writes models.
StatusOr<cpu::TensorType> WritableTensorType(std::string_view name);

class GgufWriter {
 public:
  GgufWriter() = default;

  // Metadata setters; a later call with the same key replaces the earlier value.
  void SetUint8(std::string_view key, uint8_t v);
  void SetInt8(std::string_view key, int8_t v);
  void SetUint16(std::string_view key, uint16_t v);
  void SetInt16(std::string_view key, int16_t v);
  void SetUint32(std::string_view key, uint32_t v);
  void SetInt32(std::string_view key, int32_t v);
  void SetUint64(std::string_view key, uint64_t v);
  void SetInt64(std::string_view key, int64_t v);
  void SetFloat32(std::string_view key, float v);
  void SetFloat64(std::string_view key, double v);
  void SetBool(std::string_view key, bool v);
  void SetString(std::string_view key, std::string_view v);
  void SetStringArray(std::string_view key, const std::vector<std::string>& v);
  void SetFloat32Array(std::string_view key, std::span<const float> v);
  void SetInt32Array(std::string_view key, std::span<const int32_t> v);
  // Copies a value read from another file (any type, arrays included) under `key`.
  // InvalidArgument for a nested array or an unknown type.
  Status CopyValue(std::string_view key, const Value& value);
  // Tensor data alignment (general.alignment); must be a power of two. Default 32.
  void SetAlignment(uint32_t alignment);

  // Adds a tensor from raw bytes already in `type`'s layout. dims in GGUF order (ne0 first).
  // InvalidArgument if the byte count does not match the dims, or the name is a duplicate.
  Status AddTensor(std::string_view name, cpu::TensorType type, std::vector<uint64_t> dims,
                   std::span<const uint8_t> data);
  // Adds a tensor from float values, quantizing each row (dims[0] elements) to `type`.
  Status AddTensorFromFloats(std::string_view name, cpu::TensorType type,
                             std::vector<uint64_t> dims, std::span<const float> values);

  // The whole file. version must be 2 or 3.
  StatusOr<std::vector<uint8_t>> Serialize(uint32_t version = 3) const;
  // Serializes and writes to `path` atomically (temp file, fsync, rename).
  Status WriteFile(const std::string& path, uint32_t version = 3) const;

 private:
  struct Entry {
    std::string key;
    ValueType type;
    std::vector<uint8_t> payload;  // encoded value, without the key
  };
  struct Tensor {
    std::string name;
    cpu::TensorType type;
    std::vector<uint64_t> dims;
    std::vector<uint8_t> data;
  };
  void Put(std::string_view key, ValueType type, std::vector<uint8_t> payload);

  std::vector<Entry> entries_;
  std::vector<Tensor> tensors_;
  uint32_t alignment_ = 32;
};

}  // namespace llmasos::gguf

#endif  // LLMASOS_MODEL_GGUF_GGUF_WRITER_H_
