#include "model/gguf/gguf_writer.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cstring>
#include <unordered_set>

#include "drivers/cpu/ops.h"
#include "util/checked_math.h"
#include "util/file.h"
#include "util/fp16.h"

namespace llmasos::gguf {
namespace {

constexpr size_t kMaxDims = 4;

template <typename T>
void Append(std::vector<uint8_t>* out, T v) {
  const size_t at = out->size();
  out->resize(at + sizeof(T));
  std::memcpy(out->data() + at, &v, sizeof(T));
}

void AppendString(std::vector<uint8_t>* out, std::string_view s) {
  Append<uint64_t>(out, s.size());
  out->insert(out->end(), s.begin(), s.end());
}

template <typename T>
std::vector<uint8_t> Encode(T v) {
  std::vector<uint8_t> out;
  Append(&out, v);
  return out;
}

void PadTo(std::vector<uint8_t>* out, uint64_t alignment) {
  out->resize(*CheckedAlignUp(out->size(), alignment), 0);
}

// Elements, bytes and validity of a tensor of `type` with `dims`, or InvalidArgument.
struct Shape {
  uint64_t num_elements = 1;
  uint64_t num_bytes = 0;
};

StatusOr<Shape> CheckShape(std::string_view name, cpu::TensorType type,
                           const std::vector<uint64_t>& dims) {
  const std::string where = "tensor '" + std::string(name) + "': ";
  std::optional<cpu::TensorTypeTraits> traits =
      cpu::GetTensorTypeTraits(static_cast<uint32_t>(type));
  if (!traits) {
    return InvalidArgumentError(where + "unsupported tensor type id " +
                                std::to_string(static_cast<uint32_t>(type)));
  }
  if (name.empty()) return InvalidArgumentError("tensor name is empty");
  if (dims.empty() || dims.size() > kMaxDims) {
    return InvalidArgumentError(where + "needs 1 to 4 dims, got " + std::to_string(dims.size()));
  }
  Shape s;
  for (uint64_t d : dims) {
    std::optional<uint64_t> p = CheckedMul(s.num_elements, d);
    if (!p || *p > static_cast<uint64_t>(INT64_MAX)) {
      return InvalidArgumentError(where + "element count overflows");
    }
    s.num_elements = *p;
  }
  if (dims[0] % traits->block_elems != 0) {
    return InvalidArgumentError(where + "dims[0] = " + std::to_string(dims[0]) +
                                " is not a multiple of the " + std::string(traits->name) +
                                " block size " + std::to_string(traits->block_elems));
  }
  std::optional<uint64_t> bytes = CheckedMul(s.num_elements / traits->block_elems,
                                             traits->block_bytes);
  if (!bytes) return InvalidArgumentError(where + "byte size overflows");
  s.num_bytes = *bytes;
  return s;
}

}  // namespace

void GgufWriter::Put(std::string_view key, ValueType type, std::vector<uint8_t> payload) {
  for (Entry& e : entries_) {
    if (e.key == key) {
      e.type = type;
      e.payload = std::move(payload);
      return;
    }
  }
  entries_.push_back(Entry{std::string(key), type, std::move(payload)});
}

void GgufWriter::SetUint8(std::string_view key, uint8_t v) { Put(key, ValueType::kUint8, Encode(v)); }
void GgufWriter::SetInt8(std::string_view key, int8_t v) { Put(key, ValueType::kInt8, Encode(v)); }
void GgufWriter::SetUint16(std::string_view key, uint16_t v) { Put(key, ValueType::kUint16, Encode(v)); }
void GgufWriter::SetInt16(std::string_view key, int16_t v) { Put(key, ValueType::kInt16, Encode(v)); }
void GgufWriter::SetUint32(std::string_view key, uint32_t v) { Put(key, ValueType::kUint32, Encode(v)); }
void GgufWriter::SetInt32(std::string_view key, int32_t v) { Put(key, ValueType::kInt32, Encode(v)); }
void GgufWriter::SetUint64(std::string_view key, uint64_t v) { Put(key, ValueType::kUint64, Encode(v)); }
void GgufWriter::SetInt64(std::string_view key, int64_t v) { Put(key, ValueType::kInt64, Encode(v)); }
void GgufWriter::SetFloat32(std::string_view key, float v) { Put(key, ValueType::kFloat32, Encode(v)); }
void GgufWriter::SetFloat64(std::string_view key, double v) { Put(key, ValueType::kFloat64, Encode(v)); }
void GgufWriter::SetBool(std::string_view key, bool v) {
  Put(key, ValueType::kBool, Encode<uint8_t>(v ? 1 : 0));
}

void GgufWriter::SetString(std::string_view key, std::string_view v) {
  std::vector<uint8_t> p;
  AppendString(&p, v);
  Put(key, ValueType::kString, std::move(p));
}

void GgufWriter::SetStringArray(std::string_view key, const std::vector<std::string>& v) {
  std::vector<uint8_t> p;
  Append(&p, static_cast<uint32_t>(ValueType::kString));
  Append<uint64_t>(&p, v.size());
  for (const std::string& s : v) AppendString(&p, s);
  Put(key, ValueType::kArray, std::move(p));
}

void GgufWriter::SetFloat32Array(std::string_view key, std::span<const float> v) {
  std::vector<uint8_t> p;
  Append(&p, static_cast<uint32_t>(ValueType::kFloat32));
  Append<uint64_t>(&p, v.size());
  for (float x : v) Append(&p, x);
  Put(key, ValueType::kArray, std::move(p));
}

void GgufWriter::SetInt32Array(std::string_view key, std::span<const int32_t> v) {
  std::vector<uint8_t> p;
  Append(&p, static_cast<uint32_t>(ValueType::kInt32));
  Append<uint64_t>(&p, v.size());
  for (int32_t x : v) Append(&p, x);
  Put(key, ValueType::kArray, std::move(p));
}

Status GgufWriter::CopyValue(std::string_view key, const Value& value) {
  std::vector<uint8_t> payload;
  switch (value.type) {
    case ValueType::kString:
      AppendString(&payload, value.str);
      break;
    case ValueType::kArray: {
      Append<uint32_t>(&payload, static_cast<uint32_t>(value.array_type));
      Append<uint64_t>(&payload, value.array_count);
      if (value.array_type == ValueType::kString) {
        for (std::string_view item : value.array_strings) AppendString(&payload, item);
        break;
      }
      const size_t elem = ValueTypeBytes(value.array_type);
      if (elem == 0) {
        return InvalidArgumentError("key '" + std::string(key) + "': cannot copy an array of " +
                                    std::string(ValueTypeName(value.array_type)));
      }
      payload.insert(payload.end(), value.array_data, value.array_data + elem * value.array_count);
      break;
    }
    case ValueType::kFloat32:
      Append<float>(&payload, static_cast<float>(value.f64));
      break;
    case ValueType::kFloat64:
      Append<double>(&payload, value.f64);
      break;
    case ValueType::kInt8:
    case ValueType::kInt16:
    case ValueType::kInt32:
    case ValueType::kInt64: {
      const size_t n = ValueTypeBytes(value.type);
      const int64_t v = value.i64;
      payload.resize(n);
      std::memcpy(payload.data(), &v, n);  // little-endian: the low n bytes
      break;
    }
    default: {
      const size_t n = ValueTypeBytes(value.type);
      if (n == 0) {
        return InvalidArgumentError("key '" + std::string(key) + "': unknown value type " +
                                    std::to_string(static_cast<uint32_t>(value.type)));
      }
      const uint64_t v = value.u64;
      payload.resize(n);
      std::memcpy(payload.data(), &v, n);
    }
  }
  Put(key, value.type, std::move(payload));
  return OkStatus();
}

void GgufWriter::SetAlignment(uint32_t alignment) {
  CHECK(std::has_single_bit(alignment) && alignment <= kMaxAlignment)
      << "alignment " << alignment << " is not a power of two <= " << kMaxAlignment;
  alignment_ = alignment;
  SetUint32("general.alignment", alignment);
}

Status GgufWriter::AddTensor(std::string_view name, cpu::TensorType type,
                             std::vector<uint64_t> dims, std::span<const uint8_t> data) {
  ASSIGN_OR_RETURN(Shape shape, CheckShape(name, type, dims));
  for (const Tensor& t : tensors_) {
    if (t.name == name) return InvalidArgumentError("duplicate tensor name '" + t.name + "'");
  }
  if (data.size() != shape.num_bytes) {
    return InvalidArgumentError("tensor '" + std::string(name) + "': " +
                                std::to_string(data.size()) + " bytes given, its dims and type need " +
                                std::to_string(shape.num_bytes));
  }
  tensors_.push_back(Tensor{std::string(name), type, std::move(dims),
                            std::vector<uint8_t>(data.begin(), data.end())});
  return OkStatus();
}

Status GgufWriter::AddTensorFromFloats(std::string_view name, cpu::TensorType type,
                                       std::vector<uint64_t> dims, std::span<const float> values) {
  ASSIGN_OR_RETURN(Shape shape, CheckShape(name, type, dims));
  if (!cpu::CanQuantizeRow(type)) {
    return InvalidArgumentError("tensor '" + std::string(name) + "': cannot quantize to " +
                                std::string(cpu::Traits(type).name) + " (no quantizer)");
  }
  if (values.size() != shape.num_elements) {
    return InvalidArgumentError("tensor '" + std::string(name) + "': " +
                                std::to_string(values.size()) + " values given, its dims need " +
                                std::to_string(shape.num_elements));
  }
  std::vector<uint8_t> data(shape.num_bytes);
  const size_t row_elems = dims[0];
  const size_t num_rows = row_elems == 0 ? 0 : shape.num_elements / row_elems;
  const size_t row_bytes = cpu::RowBytes(type, row_elems);
  for (size_t r = 0; r < num_rows; ++r) {
    const float* x = values.data() + r * row_elems;
    uint8_t* out = data.data() + r * row_bytes;
    switch (type) {
      case cpu::TensorType::kF32:
        std::memcpy(out, x, row_bytes);
        break;
      case cpu::TensorType::kF16:
        for (size_t i = 0; i < row_elems; ++i) {
          const uint16_t h = F32ToF16(x[i]);
          std::memcpy(out + 2 * i, &h, 2);
        }
        break;
      case cpu::TensorType::kBF16:
        for (size_t i = 0; i < row_elems; ++i) {
          const uint16_t b = F32ToBf16(x[i]);
          std::memcpy(out + 2 * i, &b, 2);
        }
        break;
      default:
        cpu::QuantizeRow(type, x, row_elems, out);
        break;
    }
  }
  return AddTensor(name, type, std::move(dims), data);
}

StatusOr<std::vector<uint8_t>> GgufWriter::Serialize(uint32_t version) const {
  if (version != 2 && version != 3) {
    return InvalidArgumentError("GGUF version " + std::to_string(version) +
                                " cannot be written (only 2 and 3)");
  }
  // A general.alignment set through SetUint32 (or any other setter) instead of SetAlignment
  // would make the file disagree with the padding below; refuse rather than write it.
  for (const Entry& e : entries_) {
    if (e.key != "general.alignment") continue;
    uint32_t stored = 0;
    if (e.type == ValueType::kUint32) std::memcpy(&stored, e.payload.data(), sizeof(stored));
    if (e.type != ValueType::kUint32 || stored != alignment_) {
      return InvalidArgumentError(
          "general.alignment must be set with SetAlignment (it disagrees with the padding)");
    }
  }

  uint64_t data_bytes = 0;
  for (const Tensor& t : tensors_) data_bytes += *CheckedAlignUp(t.data.size(), alignment_);
  std::vector<uint8_t> out;
  out.reserve(4096 + data_bytes);
  Append(&out, kMagic);
  Append(&out, version);
  Append<uint64_t>(&out, tensors_.size());
  Append<uint64_t>(&out, entries_.size());
  for (const Entry& e : entries_) {
    AppendString(&out, e.key);
    Append(&out, static_cast<uint32_t>(e.type));
    out.insert(out.end(), e.payload.begin(), e.payload.end());
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    AppendString(&out, t.name);
    Append(&out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) Append(&out, d);
    Append(&out, static_cast<uint32_t>(t.type));
    Append(&out, offset);
    offset += *CheckedAlignUp(t.data.size(), alignment_);
  }
  // Tensor data: each tensor starts aligned and is padded to the alignment, so tensor k's
  // offset is the padded size of tensors 0..k-1, the layout the reader requires.
  PadTo(&out, alignment_);
  for (const Tensor& t : tensors_) {
    out.insert(out.end(), t.data.begin(), t.data.end());
    PadTo(&out, alignment_);
  }
  return out;
}

Status GgufWriter::WriteFile(const std::string& path, uint32_t version) const {
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, Serialize(version));
  return WriteFileAtomically(
      path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

StatusOr<cpu::TensorType> WritableTensorType(std::string_view name) {
  auto same = [](std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
  };
  std::string known;
  for (uint32_t id = 0; id <= static_cast<uint32_t>(cpu::TensorType::kBF16); ++id) {
    const auto traits = cpu::GetTensorTypeTraits(id);
    const auto type = static_cast<cpu::TensorType>(id);
    if (!traits || !cpu::CanQuantizeRow(type)) continue;
    if (same(name, traits->name)) return type;
    std::string lower(traits->name);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    known += (known.empty() ? "" : ", ") + lower;
  }
  return InvalidArgumentError("tensor type '" + std::string(name) + "' is not one a model can be written in (" +
                              known + ")");
}

}  // namespace llmasos::gguf
