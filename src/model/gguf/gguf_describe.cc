#include "model/gguf/gguf_describe.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>

namespace llmasos::gguf {
namespace {

constexpr size_t kMaxStringBytes = 80;       // a string value shows at most this much
constexpr size_t kMaxElementStringBytes = 24;  // ... and each string inside an array
constexpr uint64_t kMaxNumericElements = 8;  // an array shows at most this many elements
constexpr uint64_t kMaxStringElements = 5;
constexpr size_t kMaxKeyColumn = 40;

std::string Format(const char* fmt, auto... args) {
  char buf[128];
  int n = std::snprintf(buf, sizeof(buf), fmt, args...);
  return std::string(buf, n < 0 ? 0 : std::min<size_t>(n, sizeof(buf) - 1));
}

// Length of the valid, printable UTF-8 sequence at s[i], or 0 if it is not one.
size_t PrintableUtf8Length(std::string_view s, size_t i) {
  const unsigned char c = static_cast<unsigned char>(s[i]);
  if (c >= 0x20 && c < 0x7f) return 1;
  size_t len = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  // C1 control characters (U+0080..U+009F) move terminals around as much as C0 ones.
  if (c == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0) return 0;
  return len;
}

// `s` with escapes, cut after about `max_bytes` input bytes on a character boundary. When cut,
// *suffix says the full length.
std::string EscapeBody(std::string_view s, size_t max_bytes, std::string* suffix) {
  std::string out;
  size_t i = 0;
  while (i < s.size() && i < max_bytes) {
    const char c = s[i];
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
      ++i;
    } else if (c == '\n') {
      out += "\\n";
      ++i;
    } else if (c == '\t') {
      out += "\\t";
      ++i;
    } else if (size_t len = PrintableUtf8Length(s, i); len > 0) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += Format("\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      ++i;
    }
  }
  suffix->clear();
  if (i < s.size()) *suffix = Format("... (%zu bytes)", s.size());
  return out;
}

std::string Escape(std::string_view s, size_t max_bytes) {
  std::string suffix;
  std::string body = EscapeBody(s, max_bytes, &suffix);
  return body + suffix;
}

std::string Quote(std::string_view s, size_t max_bytes) {
  std::string suffix;
  std::string body = EscapeBody(s, max_bytes, &suffix);
  return "\"" + body + "\"" + suffix;
}

std::string ScalarText(const Value& v) {
  switch (v.type) {
    case ValueType::kUint8:
    case ValueType::kUint16:
    case ValueType::kUint32:
    case ValueType::kUint64: return std::to_string(v.u64);
    case ValueType::kInt8:
    case ValueType::kInt16:
    case ValueType::kInt32:
    case ValueType::kInt64: return std::to_string(v.i64);
    case ValueType::kFloat32:
    case ValueType::kFloat64: return Format("%.9g", v.f64);
    case ValueType::kBool: return v.u64 ? "true" : "false";
    case ValueType::kString: return Quote(v.str, kMaxStringBytes);
    case ValueType::kArray: break;
  }
  return "?";
}

std::string ArrayText(const Value& v) {
  std::string out = Format("%" PRIu64 " item%s", v.array_count, v.array_count == 1 ? "" : "s");
  if (v.array_count == 0) return out;
  out += ": [";
  const bool strings = v.array_type == ValueType::kString;
  const uint64_t shown =
      std::min(v.array_count, strings ? kMaxStringElements : kMaxNumericElements);
  for (uint64_t k = 0; k < shown; ++k) {
    if (k > 0) out += ", ";
    out += strings ? Quote(v.array_strings[k], kMaxElementStringBytes) : ScalarText(ArrayElement(v, k));
  }
  if (shown < v.array_count) out += ", ...";
  return out + "]";
}

std::string TypeColumn(const Value& v) {
  if (v.type != ValueType::kArray) return std::string(ValueTypeName(v.type));
  return "[" + std::string(ValueTypeName(v.array_type)) + "]";
}

std::string Bytes(uint64_t n) {
  if (n < 10 * 1024) return Format("%" PRIu64 " B", n);
  if (n < 10 * 1024 * 1024) return Format("%.1f KiB", n / 1024.0);
  if (n < 10ull * 1024 * 1024 * 1024) return Format("%.1f MiB", n / (1024.0 * 1024));
  return Format("%.1f GiB", n / (1024.0 * 1024 * 1024));
}

std::string DimsText(const std::vector<uint64_t>& dims) {
  if (dims.empty()) return "scalar";
  std::string s;
  for (size_t d = 0; d < dims.size(); ++d) s += (d ? " x " : "") + std::to_string(dims[d]);
  return s;
}

void Pad(std::string* s, size_t width) {
  if (s->size() < width) s->append(width - s->size(), ' ');
}

}  // namespace

std::string DescribeGguf(const GgufFile& file, bool all_tensors) {
  std::string out = Format("GGUF version %u, %" PRIu64 " bytes, tensor data alignment %" PRIu64 "\n",
                           file.version(), file.size_bytes(), file.alignment());

  out += Format("\nmetadata: %zu keys\n", file.metadata().size());
  size_t key_width = 0;
  for (const MetadataEntry& e : file.metadata()) {
    key_width = std::max(key_width, std::min(e.key.size(), kMaxKeyColumn));
  }
  for (const MetadataEntry& e : file.metadata()) {
    std::string line = "  ";
    line += Escape(e.key, kMaxStringBytes);
    Pad(&line, 2 + key_width + 2);
    line += TypeColumn(e.value);
    Pad(&line, 2 + key_width + 2 + 10);
    line += e.value.type == ValueType::kArray ? ArrayText(e.value) : ScalarText(e.value);
    out += line + "\n";
  }

  const std::vector<TensorInfo>& tensors = file.tensors();
  uint64_t total_bytes = 0;
  std::map<std::string_view, size_t> per_type;
  for (const TensorInfo& t : tensors) {
    total_bytes += t.num_bytes;
    ++per_type[cpu::Traits(t.type).name];
  }
  out += Format("\ntensors: %zu, ", tensors.size()) + Bytes(total_bytes) + " of data";
  for (const auto& [name, count] : per_type) {
    out += Format(", %zu ", count) + std::string(name);
  }
  if (!tensors.empty()) {
    // Offsets in the table are relative to the data section, as in the file.
    out += Format(", data section at byte %td", tensors[0].data - file.bytes().data());
  }
  out += "\n";
  if (tensors.empty()) return out;

  const size_t shown = all_tensors ? tensors.size() : std::min(tensors.size(), kDescribeTensorLimit);
  size_t name_width = 4;
  for (size_t i = 0; i < shown; ++i) {
    name_width = std::max(name_width, std::min(tensors[i].name.size(), kMaxKeyColumn));
  }
  auto row = [&](std::string idx, std::string name, std::string type, std::string dims,
                 std::string offset, std::string bytes) {
    std::string line = "  ";
    line += idx;
    Pad(&line, 8);
    line += name;
    Pad(&line, 8 + name_width + 2);
    line += type;
    Pad(&line, 8 + name_width + 2 + 6);
    line += dims;
    Pad(&line, 8 + name_width + 2 + 6 + 22);
    line += offset;
    Pad(&line, 8 + name_width + 2 + 6 + 22 + 14);
    return line + bytes + "\n";
  };
  out += row("#", "name", "type", "dims", "offset", "bytes");
  for (size_t i = 0; i < shown; ++i) {
    const TensorInfo& t = tensors[i];
    out += row(std::to_string(i), Escape(t.name, kMaxStringBytes),
               std::string(cpu::Traits(t.type).name), DimsText(t.dims), std::to_string(t.offset),
               std::to_string(t.num_bytes));
  }
  if (shown < tensors.size()) {
    out += Format("  ... %zu more tensors (--all-tensors lists them)\n", tensors.size() - shown);
  }
  return out;
}

}  // namespace llmasos::gguf
