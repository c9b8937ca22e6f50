// GGUF reader. Layout (all little-endian), versions 2 and 3:
//
//   header:  magic u32 | version u32 | tensor_count u64 | kv_count u64
//   kv_count times:      key string | value_type u32 | value
//   tensor_count times:  name string | n_dims u32 | dims u64[n_dims] | type u32 | offset u64
//   padding to `alignment`, then the tensor data section
//
// where a string is a u64 byte length followed by the bytes, and an array value is
// element_type u32 | count u64 | elements. Version 1 used u32 counts and lengths; version 3
// only added big-endian files, which this reader does not accept.
//
// Validation order matters: every length or count is checked against the bytes that remain
// before anything is sized from it, so a hostile file can make the parser neither read out of
// bounds nor allocate more than a small multiple of the file's own size.
#include "model/gguf/gguf.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <unordered_map>

#include "util/checked_math.h"

namespace llmasos::gguf {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader views tensor data and arrays in place; it needs a little-endian host");

namespace {

constexpr uint32_t kMaxDims = 4;
// The smallest possible encodings, used to bound counts before anything is allocated.
// A key/value pair: key length (8) + value type (4) + at least one value byte.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
// A tensor info: name length (8) + n_dims (4) + type (4) + offset (8).
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;
// A string array element: its length (8).
constexpr uint64_t kMinStringBytes = 8;

std::string Num(uint64_t v) { return std::to_string(v); }

// `s` for an error message: at most 64 bytes, non-printable bytes as \xNN.
std::string Printable(std::string_view s) {
  constexpr size_t kMaxShown = 64;
  std::string out;
  for (size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out.push_back(static_cast<char>(c));
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (s.size() > kMaxShown) out += "... (" + Num(s.size()) + " bytes)";
  return out;
}

bool IsKnownValueType(uint32_t id) { return id <= static_cast<uint32_t>(ValueType::kFloat64); }

bool IsUnsignedInt(ValueType t) {
  return t == ValueType::kUint8 || t == ValueType::kUint16 || t == ValueType::kUint32 ||
         t == ValueType::kUint64;
}
bool IsSignedInt(ValueType t) {
  return t == ValueType::kInt8 || t == ValueType::kInt16 || t == ValueType::kInt32 ||
         t == ValueType::kInt64;
}
bool IsFloat(ValueType t) { return t == ValueType::kFloat32 || t == ValueType::kFloat64; }

// Decodes one fixed-size little-endian value at `p` into the scalar fields of `v`.
void DecodeScalar(ValueType type, const uint8_t* p, Value* v) {
  auto load = [p](auto zero) {
    decltype(zero) x;
    std::memcpy(&x, p, sizeof(x));
    return x;
  };
  auto set_unsigned = [v](uint64_t x) {
    v->u64 = x;
    v->i64 = static_cast<int64_t>(x);  // meaningful only when x <= INT64_MAX; getters check
    v->f64 = static_cast<double>(x);
  };
  auto set_signed = [v](int64_t x) {
    v->i64 = x;
    v->u64 = static_cast<uint64_t>(x);  // meaningful only when x >= 0; getters check
    v->f64 = static_cast<double>(x);
  };
  switch (type) {
    case ValueType::kUint8: set_unsigned(load(uint8_t{})); break;
    case ValueType::kBool: set_unsigned(load(uint8_t{})); break;
    case ValueType::kInt8: set_signed(load(int8_t{})); break;
    case ValueType::kUint16: set_unsigned(load(uint16_t{})); break;
    case ValueType::kInt16: set_signed(load(int16_t{})); break;
    case ValueType::kUint32: set_unsigned(load(uint32_t{})); break;
    case ValueType::kInt32: set_signed(load(int32_t{})); break;
    case ValueType::kUint64: set_unsigned(load(uint64_t{})); break;
    case ValueType::kInt64: set_signed(load(int64_t{})); break;
    case ValueType::kFloat32: v->f64 = load(float{}); break;
    case ValueType::kFloat64: v->f64 = load(double{}); break;
    case ValueType::kString:
    case ValueType::kArray: break;
  }
}

// GGML's names for type ids this build cannot load, so the error says what the file holds.
std::string_view GgmlTypeName(uint32_t id) {
  static constexpr std::string_view kNames[] = {
      "F32",  "F16",     "Q4_0",   "Q4_1",    "Q4_2 (removed)", "Q4_3 (removed)", "Q5_0",
      "Q5_1", "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",           "Q4_K",           "Q5_K",
      "Q6_K", "Q8_K",    "IQ2_XXS", "IQ2_XS", "IQ3_XXS",        "IQ1_S",          "IQ4_NL",
      "IQ3_S", "IQ2_S",  "IQ4_XS", "I8",      "I16",            "I32",            "I64",
      "F64",  "IQ1_M",   "BF16"};
  if (id < std::size(kNames)) return kNames[id];
  return "";
}

}  // namespace

std::string_view ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kUint8: return "uint8";
    case ValueType::kInt8: return "int8";
    case ValueType::kUint16: return "uint16";
    case ValueType::kInt16: return "int16";
    case ValueType::kUint32: return "uint32";
    case ValueType::kInt32: return "int32";
    case ValueType::kFloat32: return "float32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kUint64: return "uint64";
    case ValueType::kInt64: return "int64";
    case ValueType::kFloat64: return "float64";
  }
  return "unknown";
}

// Parses one byte span into a GgufFile. `Where` arguments are callables returning the
// context prefix of an error ("metadata key #3 ('general.name')"); they run only on error,
// so the success path builds no strings.
class GgufParser {
 public:
  explicit GgufParser(std::span<const uint8_t> bytes) : bytes_(bytes), size_(bytes.size()) {}

  Status Run(GgufFile* file) {
    file_ = file;
    file_->bytes_ = bytes_;
    RETURN_IF_ERROR(ReadHeader());
    RETURN_IF_ERROR(ReadMetadata());
    RETURN_IF_ERROR(ReadTensorInfos());
    return PlaceTensorData();
  }

 private:
  uint64_t remaining() const { return size_ - pos_; }

  std::string FileSize() const { return "(size " + Num(size_) + ")"; }

  // "<where>: <field> (at byte N) runs past the end of the file (size M)".
  Status PastEnd(const std::string& where, std::string_view field) const {
    return DataLossError(where + ": " + std::string(field) + " (at byte " + Num(pos_) +
                         ") runs past the end of the file " + FileSize());
  }

  // Reads a fixed-size little-endian integer; false if the file ends first.
  template <typename T>
  bool Read(T* out) {
    if (sizeof(T) > remaining()) return false;
    std::memcpy(out, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }

  template <typename T, typename Where>
  Status ReadField(const Where& where, std::string_view field, T* out) {
    if (!Read(out)) return PastEnd(where(), field);
    return OkStatus();
  }

  // A u64 length followed by that many bytes, viewed in place.
  template <typename Where>
  Status ReadString(const Where& where, std::string_view field, std::string_view* out) {
    uint64_t len = 0;
    RETURN_IF_ERROR(ReadField(where, std::string(field) + " length", &len));
    if (len > remaining()) {
      return DataLossError(where() + ": " + std::string(field) + " length " + Num(len) +
                           " runs past the end of the file " + FileSize());
    }
    *out = std::string_view(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return OkStatus();
  }

  Status ReadHeader() {
    auto where = [] { return std::string("header"); };
    uint32_t magic = 0;
    RETURN_IF_ERROR(ReadField(where, "magic", &magic));
    if (magic != kMagic) {
      char text[5] = {};
      std::memcpy(text, &magic, 4);
      return DataLossError("header: magic '" + Printable(std::string_view(text, 4)) +
                           "' is not 'GGUF'; this is not a GGUF file");
    }
    uint32_t version = 0;
    RETURN_IF_ERROR(ReadField(where, "version", &version));
    if (version == 2 || version == 3) {
      file_->version_ = version;
    } else if (version == 1) {
      return DataLossError(
          "header: GGUF version 1 is not supported (only versions 2 and 3); convert the model "
          "again with a current llama.cpp");
    } else if (__builtin_bswap32(version) == 2 || __builtin_bswap32(version) == 3) {
      return DataLossError("header: version " + Num(version) + " is a byte-swapped " +
                           Num(__builtin_bswap32(version)) +
                           ": big-endian GGUF files are not supported");
    } else {
      return DataLossError("header: GGUF version " + Num(version) +
                           " is not supported (only versions 2 and 3)");
    }
    RETURN_IF_ERROR(ReadField(where, "tensor count", &num_tensors_));
    RETURN_IF_ERROR(ReadField(where, "metadata key count", &num_kvs_));
    // Each record takes at least its minimum encoding; a count the rest of the file cannot
    // hold is rejected here, before any container is sized from it.
    std::optional<uint64_t> kv_bytes = CheckedMul(num_kvs_, kMinKvBytes);
    if (!kv_bytes || *kv_bytes > remaining()) {
      return DataLossError("header: metadata key count " + Num(num_kvs_) +
                           " needs at least " + Num(kMinKvBytes) + " bytes each, more than the " +
                           Num(remaining()) + " bytes left in the file " + FileSize());
    }
    std::optional<uint64_t> tensor_bytes = CheckedMul(num_tensors_, kMinTensorInfoBytes);
    if (!tensor_bytes || *tensor_bytes > remaining() - *kv_bytes) {
      return DataLossError("header: tensor count " + Num(num_tensors_) + " needs at least " +
                           Num(kMinTensorInfoBytes) + " bytes each, more than the " +
                           Num(remaining() - *kv_bytes) +
                           " bytes left in the file after the metadata " + FileSize());
    }
    return OkStatus();
  }

  Status ReadMetadata() {
    std::unordered_map<std::string_view, uint64_t> seen;
    for (uint64_t i = 0; i < num_kvs_; ++i) {
      MetadataEntry e;
      auto where_idx = [i] { return "metadata key #" + Num(i); };
      RETURN_IF_ERROR(ReadString(where_idx, "key", &e.key));
      auto where = [i, &e] { return "metadata key #" + Num(i) + " ('" + Printable(e.key) + "')"; };
      auto [it, inserted] = seen.emplace(e.key, i);
      if (!inserted) {
        return DataLossError(where() + ": duplicate key (first defined as key #" +
                             Num(it->second) + ")");
      }
      uint32_t type_id = 0;
      RETURN_IF_ERROR(ReadField(where, "value type", &type_id));
      if (!IsKnownValueType(type_id)) {
        return DataLossError(where() + ": unknown value type id " + Num(type_id));
      }
      e.value.type = static_cast<ValueType>(type_id);
      RETURN_IF_ERROR(ReadValue(where, &e.value));
      if (e.key == "general.alignment") RETURN_IF_ERROR(SetAlignment(where, e.value));
      file_->metadata_.push_back(std::move(e));
    }
    return OkStatus();
  }

  template <typename Where>
  Status ReadValue(const Where& where, Value* v) {
    if (v->type == ValueType::kString) return ReadString(where, "string", &v->str);
    if (v->type == ValueType::kArray) return ReadArray(where, v);
    const uint64_t n = ValueTypeBytes(v->type);
    if (n > remaining()) {
      return PastEnd(where(), std::string(ValueTypeName(v->type)) + " value");
    }
    const uint8_t* p = bytes_.data() + pos_;
    if (v->type == ValueType::kBool && *p > 1) {
      return DataLossError(where() + ": bool value " + Num(*p) + " is neither 0 nor 1");
    }
    DecodeScalar(v->type, p, v);
    pos_ += n;
    return OkStatus();
  }

  template <typename Where>
  Status ReadArray(const Where& where, Value* v) {
    uint32_t elem_id = 0;
    RETURN_IF_ERROR(ReadField(where, "array element type", &elem_id));
    if (!IsKnownValueType(elem_id)) {
      return DataLossError(where() + ": unknown array element type id " + Num(elem_id));
    }
    v->array_type = static_cast<ValueType>(elem_id);
    if (v->array_type == ValueType::kArray) {
      return DataLossError(where() + ": nested arrays are not supported");
    }
    RETURN_IF_ERROR(ReadField(where, "array length", &v->array_count));
    const uint64_t min_elem_bytes =
        v->array_type == ValueType::kString ? kMinStringBytes : ValueTypeBytes(v->array_type);
    std::optional<uint64_t> min_bytes = CheckedMul(v->array_count, min_elem_bytes);
    if (!min_bytes || *min_bytes > remaining()) {
      return DataLossError(where() + ": array length " + Num(v->array_count) + " of " +
                           std::string(ValueTypeName(v->array_type)) +
                           " runs past the end of the file " + FileSize());
    }
    v->array_data = bytes_.data() + pos_;
    if (v->array_type != ValueType::kString) {
      if (v->array_type == ValueType::kBool) {
        for (uint64_t k = 0; k < v->array_count; ++k) {
          if (v->array_data[k] > 1) {
            return DataLossError(where() + ": element #" + Num(k) + ": bool value " +
                                 Num(v->array_data[k]) + " is neither 0 nor 1");
          }
        }
      }
      pos_ += *min_bytes;
      return OkStatus();
    }
    // Strings: validate every length first (no allocation), then size the views exactly.
    const uint64_t start = pos_;
    for (uint64_t k = 0; k < v->array_count; ++k) {
      std::string_view s;
      auto where_elem = [&where, k] { return where() + ": element #" + Num(k); };
      RETURN_IF_ERROR(ReadString(where_elem, "string", &s));
    }
    pos_ = start;
    v->array_strings.reserve(v->array_count);
    for (uint64_t k = 0; k < v->array_count; ++k) {
      uint64_t len = 0;
      std::memcpy(&len, bytes_.data() + pos_, sizeof(len));
      pos_ += sizeof(len);
      v->array_strings.emplace_back(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
      pos_ += len;
    }
    return OkStatus();
  }

  template <typename Where>
  Status SetAlignment(const Where& where, const Value& v) {
    uint64_t alignment = 0;
    if (IsUnsignedInt(v.type) || (IsSignedInt(v.type) && v.i64 >= 0)) {
      alignment = v.u64;
    } else if (IsSignedInt(v.type)) {
      return DataLossError(where() + ": alignment " + std::to_string(v.i64) +
                           " is not a power of two between 1 and " + Num(kMaxAlignment));
    } else {
      return DataLossError(where() + ": alignment has type " +
                           std::string(ValueTypeName(v.type)) + ", expected uint32");
    }
    if (!std::has_single_bit(alignment) || alignment > kMaxAlignment) {
      return DataLossError(where() + ": alignment " + Num(alignment) +
                           " is not a power of two between 1 and " + Num(kMaxAlignment));
    }
    file_->alignment_ = alignment;
    return OkStatus();
  }

  Status ReadTensorInfos() {
    std::unordered_map<std::string_view, uint64_t> seen;
    for (uint64_t t = 0; t < num_tensors_; ++t) {
      TensorInfo info;
      auto where_idx = [t] { return "tensor #" + Num(t); };
      RETURN_IF_ERROR(ReadString(where_idx, "name", &info.name));
      auto where = [t, &info] { return "tensor #" + Num(t) + " ('" + Printable(info.name) + "')"; };
      auto [it, inserted] = seen.emplace(info.name, t);
      if (!inserted) {
        return DataLossError(where() + ": duplicate tensor name (first defined as tensor #" +
                             Num(it->second) + ")");
      }
      uint32_t num_dims = 0;
      RETURN_IF_ERROR(ReadField(where, "n_dims", &num_dims));
      if (num_dims > kMaxDims) {
        return DataLossError(where() + ": n_dims " + Num(num_dims) + " exceeds the maximum of " +
                             Num(kMaxDims));
      }
      uint64_t dims[kMaxDims] = {};
      // `extent` counts a zero dimension as 1, so a tensor with no elements still cannot claim
      // absurd dimensions (a consumer may size a row buffer from dims[0] alone).
      uint64_t extent = 1;
      bool overflow = false, has_zero_dim = false;
      for (uint32_t d = 0; d < num_dims; ++d) {
        RETURN_IF_ERROR(ReadField(where, "dimension #" + Num(d), &dims[d]));
        has_zero_dim |= dims[d] == 0;
        std::optional<uint64_t> product = CheckedMul(extent, std::max<uint64_t>(dims[d], 1));
        overflow |= !product;
        if (product) extent = *product;
      }
      const uint64_t num_elements = has_zero_dim ? 0 : extent;
      auto dims_text = [&] {
        std::string s = "[";
        for (uint32_t d = 0; d < num_dims; ++d) s += (d ? ", " : "") + Num(dims[d]);
        return s + "]" + (has_zero_dim ? " (zero dimensions counted as 1)" : "");
      };
      // ggml stores dimensions as int64, so the element count must fit one as well.
      if (overflow || extent > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return DataLossError(where() + ": element count of dims " + dims_text() +
                             " overflows 63 bits");
      }
      uint32_t type_id = 0;
      RETURN_IF_ERROR(ReadField(where, "type id", &type_id));
      std::optional<cpu::TensorTypeTraits> traits = cpu::GetTensorTypeTraits(type_id);
      if (!traits) {
        std::string_view known = GgmlTypeName(type_id);
        return DataLossError(where() + ": tensor type id " + Num(type_id) +
                             (known.empty() ? " is unknown"
                                            : " (" + std::string(known) + ") is not supported"));
      }
      const uint64_t row_elems = num_dims > 0 ? dims[0] : 1;
      if (row_elems % traits->block_elems != 0) {
        return DataLossError(where() + ": row length dims[0] = " + Num(row_elems) +
                             " is not a multiple of the " + std::string(traits->name) +
                             " block size " + Num(traits->block_elems));
      }
      const uint64_t extent_blocks =
          extent / traits->block_elems + (extent % traits->block_elems != 0 ? 1 : 0);
      std::optional<uint64_t> extent_bytes = CheckedMul(extent_blocks, traits->block_bytes);
      if (!extent_bytes || *extent_bytes > size_) {
        return DataLossError(
            where() + ": data size of dims " + dims_text() + " " + std::string(traits->name) +
            (extent_bytes ? " (" + Num(*extent_bytes) + " bytes)" : " (overflows 64 bits)") +
            " is larger than the whole file " + FileSize());
      }
      // Rows are whole blocks, so the element count is too; no overflow as it is <= extent.
      const uint64_t num_bytes = num_elements / traits->block_elems * traits->block_bytes;
      RETURN_IF_ERROR(ReadField(where, "offset", &info.offset));
      info.type = static_cast<cpu::TensorType>(type_id);
      info.dims.assign(dims, dims + num_dims);
      info.num_elements = num_elements;
      info.num_bytes = num_bytes;
      file_->tensors_.push_back(std::move(info));
    }
    return OkStatus();
  }

  // The rule for offsets is llama.cpp's (gguf_init_from_file_impl since its 2025 rewrite,
  // "tensor '...' has offset X, expected Y"): tensor k's offset equals the sum of the sizes of
  // tensors 0..k-1, each rounded up to the alignment. So offsets are aligned, in declaration
  // order, never overlap and leave no gaps beyond the padding. The format itself only demands
  // alignment, but every writer (llama.cpp, gguf-py, ours) packs tensors this way and llama.cpp
  // refuses anything else, so a gap is as suspicious as an overlap and is rejected too.
  Status PlaceTensorData() {
    const uint64_t alignment = file_->alignment_;
    if (file_->tensors_.empty()) return OkStatus();
    std::optional<uint64_t> data_start = CheckedAlignUp(pos_, alignment);
    if (!data_start || *data_start > size_) {
      return DataLossError("tensor data section: start at offset " + Num(pos_) +
                           " padded to the alignment " + Num(alignment) +
                           " lies past the end of the file " + FileSize());
    }
    uint64_t expected = 0;
    for (size_t t = 0; t < file_->tensors_.size(); ++t) {
      TensorInfo& info = file_->tensors_[t];
      auto where = [t, &info] { return "tensor #" + Num(t) + " ('" + Printable(info.name) + "')"; };
      auto prev = [&] {
        return "tensor #" + Num(t - 1) + " ('" + Printable(file_->tensors_[t - 1].name) + "')";
      };
      if (info.offset % alignment != 0) {
        return DataLossError(where() + ": offset " + Num(info.offset) +
                             " is not a multiple of the alignment " + Num(alignment));
      }
      if (info.offset < expected) {
        return DataLossError(where() + ": offset " + Num(info.offset) + " overlaps the data of " +
                             prev() + ", which with padding ends at " + Num(expected));
      }
      if (info.offset > expected) {
        return DataLossError(
            where() + ": offset " + Num(info.offset) + " leaves a gap; expected " + Num(expected) +
            (t == 0 ? std::string(" (the first tensor starts the data section)")
                    : " (the end of " + prev() + " padded to the alignment " + Num(alignment) +
                          ")"));
      }
      std::optional<uint64_t> begin = CheckedAdd(*data_start, info.offset);
      std::optional<uint64_t> end = begin ? CheckedAdd(*begin, info.num_bytes) : std::nullopt;
      if (!end || *end > size_) {
        return DataLossError(where() + ": data (" + Num(info.num_bytes) + " bytes at offset " +
                             Num(info.offset) + " of the data section, which starts at byte " +
                             Num(*data_start) + ") runs past the end of the file " + FileSize());
      }
      info.data = bytes_.data() + *begin;
      // *end <= size_, so padding it cannot overflow.
      expected = *CheckedAlignUp(info.offset + info.num_bytes, alignment);
    }
    return OkStatus();
  }

  std::span<const uint8_t> bytes_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t num_tensors_ = 0;
  uint64_t num_kvs_ = 0;
  GgufFile* file_ = nullptr;
};

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::span<const uint8_t> bytes) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  RETURN_IF_ERROR(GgufParser(bytes).Run(file.get()));
  return file;
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> mapped, MappedFile::Open(path));
  StatusOr<std::unique_ptr<GgufFile>> file = Parse(mapped->bytes());
  if (!file.ok()) return file.status().Annotate("'" + path + "'");
  (*file)->mapped_ = std::move(mapped);
  return file;
}

const Value* GgufFile::Find(std::string_view key) const {
  for (const MetadataEntry& e : metadata_) {
    if (e.key == key) return &e.value;
  }
  return nullptr;
}

const TensorInfo* GgufFile::FindTensor(std::string_view name) const {
  for (const TensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

namespace {

Status Missing(std::string_view key) {
  return NotFoundError("metadata key '" + std::string(key) + "' is missing");
}

std::string TypeText(const Value& v) {
  if (v.type != ValueType::kArray) return std::string(ValueTypeName(v.type));
  return "array of " + std::string(ValueTypeName(v.array_type));
}

Status WrongType(std::string_view key, std::string_view expected, const Value& v) {
  return InvalidArgumentError("metadata key '" + std::string(key) + "' has type " +
                              TypeText(v) + ", expected " + std::string(expected));
}


}  // namespace

uint64_t ValueTypeBytes(ValueType type) {
  switch (type) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kBool: return 1;
    case ValueType::kUint16:
    case ValueType::kInt16: return 2;
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kFloat32: return 4;
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kFloat64: return 8;
    case ValueType::kString:
    case ValueType::kArray: return 0;
  }
  return 0;
}

Value ArrayElement(const Value& array, uint64_t k) {
  Value e;
  e.type = array.array_type;
  DecodeScalar(array.array_type, array.array_data + k * ValueTypeBytes(array.array_type), &e);
  return e;
}

StatusOr<std::string_view> GgufFile::GetString(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != ValueType::kString) return WrongType(key, "string", *v);
  return v->str;
}

StatusOr<uint64_t> GgufFile::GetUint(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (IsUnsignedInt(v->type)) return v->u64;
  if (IsSignedInt(v->type)) {
    if (v->i64 >= 0) return v->u64;
    return InvalidArgumentError("metadata key '" + std::string(key) + "' is " +
                                std::to_string(v->i64) + ", expected a non-negative integer");
  }
  return WrongType(key, "an unsigned integer", *v);
}

StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (IsSignedInt(v->type)) return v->i64;
  if (IsUnsignedInt(v->type)) {
    if (v->u64 <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return v->i64;
    return InvalidArgumentError("metadata key '" + std::string(key) + "' is " + Num(v->u64) +
                                ", which does not fit int64");
  }
  return WrongType(key, "an integer", *v);
}

StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (IsFloat(v->type) || IsUnsignedInt(v->type) || IsSignedInt(v->type)) return v->f64;
  return WrongType(key, "a number", *v);
}

StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != ValueType::kBool) return WrongType(key, "bool", *v);
  return v->u64 != 0;
}

StatusOr<const std::vector<std::string_view>*> GgufFile::GetStringArray(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != ValueType::kArray || v->array_type != ValueType::kString) {
    return WrongType(key, "array of string", *v);
  }
  return &v->array_strings;
}

StatusOr<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (v->type != ValueType::kArray ||
      !(IsFloat(v->array_type) || IsUnsignedInt(v->array_type) || IsSignedInt(v->array_type))) {
    return WrongType(key, "array of numbers", *v);
  }
  std::vector<float> out(v->array_count);
  for (uint64_t k = 0; k < v->array_count; ++k) {
    const double x = ArrayElement(*v, k).f64;
    // A double beyond float's range converts to +-inf explicitly (the cast would be UB).
    constexpr float kInf = std::numeric_limits<float>::infinity();
    if (std::isnan(x) || std::fabs(x) <= std::numeric_limits<float>::max()) {
      out[k] = static_cast<float>(x);
    } else {
      out[k] = x > 0 ? kInf : -kInf;
    }
  }
  return out;
}

StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return Missing(key);
  const bool is_unsigned = v->type == ValueType::kArray && IsUnsignedInt(v->array_type);
  if (v->type != ValueType::kArray || !(is_unsigned || IsSignedInt(v->array_type))) {
    return WrongType(key, "array of integers", *v);
  }
  std::vector<int64_t> out(v->array_count);
  for (uint64_t k = 0; k < v->array_count; ++k) {
    Value e = ArrayElement(*v, k);
    if (is_unsigned && e.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidArgumentError("metadata key '" + std::string(key) + "' element #" + Num(k) +
                                  " is " + Num(e.u64) + ", which does not fit int64");
    }
    out[k] = e.i64;
  }
  return out;
}

}  // namespace llmasos::gguf
