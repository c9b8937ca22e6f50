#include "model/arch/packed_blob.h"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "util/file.h"
#include "util/hash64.h"

namespace llmasos::arch {
namespace {

constexpr char kMagic[8] = {'L', 'L', 'M', 'P', 'A', 'C', 'K', '\0'};
constexpr uint32_t kFormat = 1;
constexpr size_t kPayloadAlign = 4096;
constexpr size_t kMatrixAlign = 64;
constexpr size_t kChunkBytes = size_t{4} << 20;

struct Header {
  char magic[8];
  uint32_t format;
  uint32_t layout_version;
  char target[32];   // NUL-padded
  char source[96];   // NUL-padded
  uint64_t num_matrices;
  uint64_t payload_offset;
  uint64_t payload_bytes;
  uint64_t payload_checksum;
  uint64_t header_checksum;  // of the header (this field 0) and the table
  uint8_t reserved[72];
};
static_assert(sizeof(Header) == 256);

struct Entry {
  uint32_t type;
  uint32_t packed;
  uint64_t rows;
  uint64_t cols;
  uint64_t offset;  // from the payload's start
  uint64_t bytes;
};
static_assert(sizeof(Entry) == 40);

size_t AlignUp(size_t n, size_t align) { return (n + align - 1) / align * align; }

// The payload checksum (see the header comment) over the packed matrices' bytes, in their
// order, on the pool's threads: XXH64 of each 4 MiB chunk of each matrix (seeded with its
// position), then of those hashes. The padding between matrices is not covered (never read).
uint64_t PayloadChecksum(const std::vector<std::span<const uint8_t>>& matrices, ThreadPool& pool) {
  std::vector<std::pair<size_t, size_t>> chunks;  // (matrix, offset)
  for (size_t m = 0; m < matrices.size(); ++m) {
    for (size_t off = 0; off < matrices[m].size(); off += kChunkBytes) chunks.emplace_back(m, off);
  }
  std::vector<uint64_t> hashes(chunks.size());
  pool.ParallelFor(chunks.size(), 1, [&](size_t begin, size_t end, size_t /*thread_idx*/) {
    for (size_t c = begin; c < end; ++c) {
      const auto [m, off] = chunks[c];
      hashes[c] = Hash64(matrices[m].subspan(off, std::min(kChunkBytes, matrices[m].size() - off)), c);
    }
  }, /*chunks_per_thread=*/4);
  return Hash64({reinterpret_cast<const uint8_t*>(hashes.data()), hashes.size() * sizeof(uint64_t)},
                matrices.size());
}

uint64_t HeaderChecksum(Header h, std::span<const Entry> table) {
  h.header_checksum = 0;
  const uint64_t seed = Hash64({reinterpret_cast<const uint8_t*>(&h), sizeof(h)});
  return Hash64({reinterpret_cast<const uint8_t*>(table.data()), table.size_bytes()}, seed);
}

bool FitsField(const std::string& s, size_t field_bytes) { return s.size() < field_bytes; }

std::string FieldString(const char* field, size_t field_bytes) {
  return std::string(field, strnlen(field, field_bytes));
}

}  // namespace

std::string PackedBlobKind(const PackedBlobKey& key) {
  std::string kind = "packed-v" + std::to_string(key.layout_version) + "-";
  for (char c : key.target) {
    kind += std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '_';
  }
  return kind;
}

Status WritePackedBlob(const std::string& path, const PackedBlobKey& key,
                       std::span<const cpu::MatView* const> views, ThreadPool& pool) {
  if (!FitsField(key.target, sizeof(Header::target)) ||
      !FitsField(key.source_digest, sizeof(Header::source))) {
    return InvalidArgumentError("packed blob key too long: " + key.target + " " + key.source_digest);
  }
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.format = kFormat;
  h.layout_version = key.layout_version;
  std::memcpy(h.target, key.target.data(), key.target.size());
  std::memcpy(h.source, key.source_digest.data(), key.source_digest.size());
  h.num_matrices = views.size();
  h.payload_offset = AlignUp(sizeof(Header) + views.size() * sizeof(Entry), kPayloadAlign);

  std::vector<Entry> table(views.size());
  // Payload pieces in order, with the zero padding that aligns each matrix.
  static constexpr uint8_t kZeros[kMatrixAlign] = {};
  std::vector<std::span<const uint8_t>> payload_parts;
  uint64_t offset = 0;
  for (size_t i = 0; i < views.size(); ++i) {
    const cpu::MatView& v = *views[i];
    Entry& e = table[i];
    e.type = static_cast<uint32_t>(v.type);
    e.rows = v.rows;
    e.cols = v.cols;
    if (v.packed == nullptr) continue;
    const uint64_t aligned = AlignUp(offset, kMatrixAlign);
    if (aligned != offset) payload_parts.emplace_back(kZeros, aligned - offset);
    e.packed = 1;
    e.offset = aligned;
    e.bytes = v.packed->bytes;
    payload_parts.emplace_back(v.packed->data, v.packed->bytes);
    offset = aligned + v.packed->bytes;
  }
  h.payload_bytes = offset;

  std::vector<std::span<const uint8_t>> matrices;
  for (const cpu::MatView* v : views) {
    if (v->packed != nullptr) matrices.emplace_back(v->packed->data, v->packed->bytes);
  }
  h.payload_checksum = PayloadChecksum(matrices, pool);
  h.header_checksum = HeaderChecksum(h, table);

  std::vector<uint8_t> head(h.payload_offset, 0);
  std::memcpy(head.data(), &h, sizeof(h));
  std::memcpy(head.data() + sizeof(h), table.data(), table.size() * sizeof(Entry));
  std::vector<std::span<const uint8_t>> parts;
  parts.reserve(payload_parts.size() + 1);
  parts.emplace_back(head);
  parts.insert(parts.end(), payload_parts.begin(), payload_parts.end());
  // Not fsynced: it is a cache, and MapPackedBlob's checks refuse what a crash may leave.
  return WriteFileAtomically(path, parts, /*durable=*/false);
}

StatusOr<std::unique_ptr<MappedFile>> MapPackedBlob(
    const std::string& path, const PackedBlobKey& key, std::span<const cpu::MatView* const> views,
    const std::vector<bool>& packed, ThreadPool& pool,
    std::vector<std::unique_ptr<cpu::PackedMatrix>>* out) {
  CHECK_EQ(views.size(), packed.size());
  ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  const std::span<const uint8_t> bytes = file->bytes();
  auto bad = [&](const std::string& what) {
    return DataLossError("packed blob '" + path + "': " + what);
  };
  if (bytes.size() < sizeof(Header)) return bad("truncated header");
  Header h;
  std::memcpy(&h, bytes.data(), sizeof(h));
  if (std::memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) return bad("not a packed blob (bad magic)");
  if (h.format != kFormat) return bad("format " + std::to_string(h.format) + ", expected " + std::to_string(kFormat));
  if (h.layout_version != key.layout_version) {
    return bad("layout version " + std::to_string(h.layout_version) + ", expected " +
               std::to_string(key.layout_version));
  }
  if (FieldString(h.target, sizeof(h.target)) != key.target) {
    return bad("made for CPU target '" + FieldString(h.target, sizeof(h.target)) + "', this one is '" +
               key.target + "'");
  }
  if (FieldString(h.source, sizeof(h.source)) != key.source_digest) {
    return bad("made from " + FieldString(h.source, sizeof(h.source)) + ", expected " + key.source_digest);
  }
  if (h.num_matrices != views.size()) {
    return bad(std::to_string(h.num_matrices) + " matrices, the model has " + std::to_string(views.size()));
  }
  const uint64_t table_end = sizeof(Header) + h.num_matrices * sizeof(Entry);
  if (h.payload_offset < table_end || h.payload_offset % kPayloadAlign != 0 ||
      h.payload_offset > bytes.size() || bytes.size() - h.payload_offset != h.payload_bytes) {
    return bad("truncated or mis-sized (" + std::to_string(bytes.size()) + " bytes)");
  }
  std::vector<Entry> table(h.num_matrices);
  std::memcpy(table.data(), bytes.data() + sizeof(Header), table.size() * sizeof(Entry));
  if (HeaderChecksum(h, table) != h.header_checksum) return bad("header checksum mismatch");
  for (size_t i = 0; i < views.size(); ++i) {
    const cpu::MatView& v = *views[i];
    const Entry& e = table[i];
    if (e.type != static_cast<uint32_t>(v.type) || e.rows != v.rows || e.cols != v.cols ||
        e.packed != (packed[i] ? 1u : 0u)) {
      return bad("matrix " + std::to_string(i) + " does not match the model");
    }
    if (!packed[i]) continue;
    if (e.bytes != cpu::PackedBytes(v) || e.offset % kMatrixAlign != 0 || e.offset > h.payload_bytes ||
        h.payload_bytes - e.offset < e.bytes) {
      return bad("matrix " + std::to_string(i) + " lies outside the payload");
    }
  }
  const std::span<const uint8_t> payload = bytes.subspan(h.payload_offset);
  std::vector<std::span<const uint8_t>> matrices;
  for (size_t i = 0; i < views.size(); ++i) {
    if (packed[i]) matrices.push_back(payload.subspan(table[i].offset, table[i].bytes));
  }
  if (PayloadChecksum(matrices, pool) != h.payload_checksum) return bad("payload checksum mismatch");
  out->clear();
  out->resize(views.size());
  for (size_t i = 0; i < views.size(); ++i) {
    if (!packed[i]) continue;
    auto m = std::make_unique<cpu::PackedMatrix>();
    m->type = views[i]->type;
    m->rows = views[i]->rows;
    m->cols = views[i]->cols;
    m->bytes = table[i].bytes;
    m->data = payload.data() + table[i].offset;
    (*out)[i] = std::move(m);
  }
  return file;
}

}  // namespace llmasos::arch
