// Hostile and broken GGUF files: every one must give kDataLoss with a message naming the
// field, without reading out of bounds (run under ASan) and without allocating more than the
// file's own size (checked by replacing the global operator new in this binary).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"

// ---------------------------------------------------------------------------------------------
// Largest single allocation while tracking is on.

namespace {
std::atomic<bool> g_tracking{false};
std::atomic<size_t> g_largest{0};

void Record(size_t n) {
  if (!g_tracking.load(std::memory_order_relaxed)) return;
  size_t cur = g_largest.load(std::memory_order_relaxed);
  while (n > cur && !g_largest.compare_exchange_weak(cur, n)) {
  }
}

void* Allocate(size_t n) {
  Record(n);
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void* AllocateAligned(size_t n, std::align_val_t al) {
  Record(n);
  const size_t a = static_cast<size_t>(al);
  void* p = std::aligned_alloc(a, (n + a - 1) / a * a + (n == 0 ? a : 0));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(size_t n) { return Allocate(n); }
void* operator new[](size_t n) { return Allocate(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  try {
    return Allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void* operator new(size_t n, std::align_val_t al) { return AllocateAligned(n, al); }
void* operator new[](size_t n, std::align_val_t al) { return AllocateAligned(n, al); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { std::free(p); }

namespace llmasos::gguf {
namespace {

using cpu::TensorType;

// Slack for the error message and other bookkeeping that does not scale with the input.
constexpr size_t kAllocationSlack = 4096;
constexpr uint64_t k2To63 = uint64_t{1} << 63;

struct ParseResult {
  Status status;
  size_t largest_allocation = 0;
};

// Parses a private, exactly sized heap copy (so ASan flags any read past its end) and
// records the largest allocation made during Parse.
ParseResult ParseTracked(std::span<const uint8_t> bytes) {
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  std::span<const uint8_t> view(copy.data(), copy.size());
  g_largest = 0;
  g_tracking = true;
  Status status;
  {
    auto file = GgufFile::Parse(view);
    status = file.ok() ? OkStatus() : file.status();
  }
  g_tracking = false;
  return {status, g_largest.load()};
}

// Asserts a kDataLoss error whose message contains every one of `parts`, and that Parse
// allocated no more than the file size plus a constant.
void ExpectDataLoss(std::span<const uint8_t> bytes, std::initializer_list<std::string_view> parts) {
  ParseResult r = ParseTracked(bytes);
  ASSERT_FALSE(r.status.ok()) << "a broken file parsed";
  EXPECT_EQ(r.status.code(), StatusCode::kDataLoss) << r.status.ToString();
  for (std::string_view part : parts) {
    EXPECT_NE(r.status.message().find(part), std::string::npos)
        << "message lacks '" << part << "': " << r.status.message();
  }
  EXPECT_LE(r.largest_allocation, bytes.size() + kAllocationSlack) << r.status.message();
}

// Builds GGUF bytes field by field, independently of GgufWriter, so tests can write anything.
class Raw {
 public:
  Raw& U8(uint8_t v) { return Put(v); }
  Raw& U32(uint32_t v) { return Put(v); }
  Raw& U64(uint64_t v) { return Put(v); }
  Raw& F32(float v) { return Put(v); }
  Raw& Str(std::string_view s) {
    U64(s.size());
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  Raw& Header(uint64_t num_tensors, uint64_t num_kvs, uint32_t version = 3) {
    return U32(kMagic).U32(version).U64(num_tensors).U64(num_kvs);
  }
  Raw& KvU32(std::string_view key, uint32_t v) { return Str(key).U32(4).U32(v); }
  Raw& KvStr(std::string_view key, std::string_view v) { return Str(key).U32(8).Str(v); }
  // A tensor info with dims in GGUF order.
  Raw& Tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) U64(d);
    return U32(type).U64(offset);
  }
  Raw& PadTo(size_t alignment) {
    b_.resize((b_.size() + alignment - 1) / alignment * alignment, 0);
    return *this;
  }
  Raw& Zeros(size_t n) {
    b_.resize(b_.size() + n, 0);
    return *this;
  }
  // Ensures at least `n` bytes, so count checks that compare with the file size see room.
  Raw& GrowTo(size_t n) {
    if (b_.size() < n) b_.resize(n, 0);
    return *this;
  }
  size_t size() const { return b_.size(); }
  const std::vector<uint8_t>& bytes() const { return b_; }
  operator std::span<const uint8_t>() const { return b_; }  // NOLINT

 private:
  template <typename T>
  Raw& Put(T v) {
    const size_t at = b_.size();
    b_.resize(at + sizeof(T));
    std::memcpy(b_.data() + at, &v, sizeof(T));
    return *this;
  }
  std::vector<uint8_t> b_;
};

constexpr uint32_t kF32 = 0, kQ4_1 = 3;

// Two F32 tensors [8] (32 bytes each) at offsets 0 and 32: a valid baseline.
Raw TwoTensors(uint64_t second_offset, size_t data_bytes = 64) {
  Raw r;
  r.Header(2, 1).KvStr("general.name", "t");
  r.Tensor("a", {8}, kF32, 0).Tensor("b", {8}, kF32, second_offset);
  r.PadTo(32).Zeros(data_bytes);
  return r;
}

TEST(AllocationTrackerTest, SeesLargeAllocations) {
  g_largest = 0;
  g_tracking = true;
  auto* big = new std::vector<uint8_t>(1 << 20);
  g_tracking = false;
  EXPECT_GE(g_largest.load(), size_t{1} << 20);
  delete big;
}

TEST(BadFileTest, BaselineFilesParse) {
  // The hand-built baseline must itself be valid, or the tests below prove nothing.
  ParseResult r = ParseTracked(TwoTensors(32));
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
}

// ---------------------------------------------------------------------------------------------
// Truncation.

std::vector<uint8_t> RichFile() {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetUint32("llama.block_count", 1);
  w.SetFloat32("f", 0.5f);
  w.SetBool("b", true);
  w.SetStringArray("tokens", {"a", "bc", "", "def"});
  const int32_t ints[] = {1, 2, 3};
  w.SetInt32Array("ints", ints);
  w.SetAlignment(64);
  std::vector<float> v(64, 0.25f);
  EXPECT_TRUE(w.AddTensorFromFloats("x", TensorType::kF32, {8, 2}, std::span(v).first(16)).ok());
  EXPECT_TRUE(w.AddTensorFromFloats("y", TensorType::kQ4_1, {64}, v).ok());
  EXPECT_TRUE(w.AddTensorFromFloats("z", TensorType::kF16, {3}, std::span(v).first(3)).ok());
  auto bytes = w.Serialize();
  EXPECT_TRUE(bytes.ok());
  return *bytes;
}

TEST(BadFileTest, TruncationAtEveryByteIsACleanError) {
  const std::vector<uint8_t> full = RichFile();
  auto parsed = GgufFile::Parse(full);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const TensorInfo& last = (*parsed)->tensors().back();
  const size_t data_end = static_cast<size_t>(last.data - full.data()) + last.num_bytes;
  ASSERT_LT(data_end, full.size()) << "the writer pads after the last tensor";
  for (size_t len = 0; len < data_end; ++len) {
    SCOPED_TRACE("truncated to " + std::to_string(len) + " of " + std::to_string(full.size()));
    ParseResult r = ParseTracked(std::span(full).first(len));
    ASSERT_FALSE(r.status.ok());
    EXPECT_EQ(r.status.code(), StatusCode::kDataLoss);
    const std::string& m = r.status.message();
    EXPECT_TRUE(m.find("past the end") != std::string::npos ||
                m.find("left in the file") != std::string::npos)
        << m;
    EXPECT_NE(m.find("(size " + std::to_string(len) + ")"), std::string::npos) << m;
    EXPECT_LE(r.largest_allocation, len + kAllocationSlack);
  }
  // Only the final padding may go: the file is complete once the last tensor's data is.
  for (size_t len = data_end; len <= full.size(); ++len) {
    EXPECT_TRUE(ParseTracked(std::span(full).first(len)).status.ok()) << len;
  }
}

// ---------------------------------------------------------------------------------------------
// Header.

TEST(BadFileTest, WrongMagic) {
  Raw r;
  r.U32(0x4c4d4747).U32(3).U64(0).U64(0);  // "GGML"
  ExpectDataLoss(r, {"magic", "'GGML'", "not a GGUF file"});
  ExpectDataLoss(std::span<const uint8_t>(), {"magic", "(size 0)"});
}

TEST(BadFileTest, UnsupportedVersions) {
  ExpectDataLoss(Raw().Header(0, 0, 1), {"version 1", "not supported"});
  ExpectDataLoss(Raw().Header(0, 0, 4), {"version 4", "not supported"});
  ExpectDataLoss(Raw().Header(0, 0, 0), {"version 0"});
  ExpectDataLoss(Raw().Header(0, 0, 0x03000000), {"version 50331648", "big-endian"});
  EXPECT_TRUE(ParseTracked(Raw().Header(0, 0, 2)).status.ok());
  EXPECT_TRUE(ParseTracked(Raw().Header(0, 0, 3)).status.ok());
}

TEST(BadFileTest, HugeCountsFailBeforeAllocating) {
  ExpectDataLoss(Raw().Header(0, k2To63).GrowTo(4096),
                 {"metadata key count 9223372036854775808", "(size 4096)"});
  ExpectDataLoss(Raw().Header(k2To63, 0).GrowTo(4096),
                 {"tensor count 9223372036854775808", "(size 4096)"});
  // Counts that fit in 64 bits when multiplied by the record size but not in the file.
  ExpectDataLoss(Raw().Header(0, 1000).GrowTo(4096), {"metadata key count 1000"});
  ExpectDataLoss(Raw().Header(1000, 0).GrowTo(4096), {"tensor count 1000"});
  ExpectDataLoss(Raw().Header(UINT64_MAX, UINT64_MAX), {"metadata key count 18446744073709551615"});
}

// ---------------------------------------------------------------------------------------------
// Metadata.

TEST(BadFileTest, StringLengthOf2To63) {
  Raw r;
  r.Header(0, 2).KvStr("general.architecture", "llama");
  r.Str("general.name").U32(8).U64(k2To63).GrowTo(4096);
  ExpectDataLoss(r, {"metadata key #1 ('general.name'): string length 9223372036854775808 runs "
                     "past the end of the file (size 4096)"});
}

TEST(BadFileTest, KeyLengthOf2To63) {
  Raw r;
  r.Header(0, 1).U64(k2To63).GrowTo(4096);
  ExpectDataLoss(r, {"metadata key #0", "key length 9223372036854775808"});
}

TEST(BadFileTest, ArrayLengthsPastTheEnd) {
  // Strings: 2^63 elements of at least 8 bytes each.
  Raw strings;
  strings.Header(0, 1).Str("tokenizer.ggml.tokens").U32(9).U32(8).U64(k2To63).GrowTo(4096);
  ExpectDataLoss(strings, {"'tokenizer.ggml.tokens'", "array length 9223372036854775808"});
  // uint64: 2^61 * 8 bytes wraps to 0 in 64 bits; the check must not be fooled.
  Raw wraps;
  wraps.Header(0, 1).Str("k").U32(9).U32(10).U64(uint64_t{1} << 61).GrowTo(4096);
  ExpectDataLoss(wraps, {"'k'", "array length 2305843009213693952", "uint64"});
  // A plausible count that is still one element too many.
  Raw one_more;
  one_more.Header(0, 1).Str("k").U32(9).U32(5).U64(3).U32(1).U32(2).U32(3);
  EXPECT_TRUE(ParseTracked(one_more).status.ok());
  Raw short_by_one;
  short_by_one.Header(0, 1).Str("k").U32(9).U32(5).U64(4).U32(1).U32(2).U32(3);
  ExpectDataLoss(short_by_one, {"'k'", "array length 4 of int32"});
}

TEST(BadFileTest, StringElementLengthOf2To63) {
  Raw r;
  r.Header(0, 1).Str("tokens").U32(9).U32(8).U64(3).Str("ok").U64(k2To63).GrowTo(4096);
  ExpectDataLoss(r, {"'tokens'", "element #1", "string length 9223372036854775808"});
}

TEST(BadFileTest, UnknownValueTypes) {
  ExpectDataLoss(Raw().Header(0, 1).Str("k").U32(13).U64(0), {"'k'", "unknown value type id 13"});
  ExpectDataLoss(Raw().Header(0, 1).Str("k").U32(9).U32(200).U64(0),
                 {"'k'", "unknown array element type id 200"});
  ExpectDataLoss(Raw().Header(0, 1).Str("k").U32(9).U32(9).U64(0), {"'k'", "nested arrays"});
}

TEST(BadFileTest, BoolsOtherThanZeroOrOne) {
  ExpectDataLoss(Raw().Header(0, 1).Str("flag").U32(7).U8(2), {"'flag'", "bool value 2"});
  ExpectDataLoss(Raw().Header(0, 1).Str("flags").U32(9).U32(7).U64(3).U8(1).U8(0).U8(255),
                 {"'flags'", "element #2", "bool value 255"});
}

TEST(BadFileTest, DuplicateKeysAndTensorNames) {
  ExpectDataLoss(Raw().Header(0, 2).KvU32("a.b", 1).KvU32("a.b", 2),
                 {"metadata key #1 ('a.b')", "duplicate key", "key #0"});
  Raw r;
  r.Header(2, 0).Tensor("w", {8}, kF32, 0).Tensor("w", {8}, kF32, 32).PadTo(32).Zeros(64);
  ExpectDataLoss(r, {"tensor #1 ('w')", "duplicate tensor name", "tensor #0"});
}

TEST(BadFileTest, KeysInErrorsAreEscapedAndShortened) {
  Raw r;
  r.Header(0, 1).Str(std::string("evil\x1b[2J", 8) + std::string(200, 'k')).U32(13);
  ParseResult p = ParseTracked(r);
  ASSERT_FALSE(p.status.ok());
  EXPECT_EQ(p.status.message().find('\x1b'), std::string::npos);
  EXPECT_NE(p.status.message().find("evil\\x1b[2J"), std::string::npos) << p.status.message();
  EXPECT_NE(p.status.message().find("(208 bytes)"), std::string::npos) << p.status.message();
}

// ---------------------------------------------------------------------------------------------
// Alignment.

TEST(BadFileTest, AlignmentMustBeAPowerOfTwoUpToTheMaximum) {
  for (uint32_t bad : {0u, 3u, 48u, 1u << 31, (1u << 24) * 2}) {
    SCOPED_TRACE(bad);
    ExpectDataLoss(Raw().Header(0, 1).KvU32("general.alignment", bad),
                   {"'general.alignment'", "alignment " + std::to_string(bad) + " is not a power"});
  }
  for (uint32_t good : {1u, 2u, 64u, 1u << 24}) {
    Raw r;
    r.Header(1, 1).KvU32("general.alignment", good).Tensor("t", {8}, kF32, 0);
    r.PadTo(good).Zeros(32);
    ParseResult p = ParseTracked(r);
    EXPECT_TRUE(p.status.ok()) << good << ": " << p.status.ToString();
  }
  ExpectDataLoss(Raw().Header(0, 1).KvStr("general.alignment", "32"),
                 {"'general.alignment'", "has type string"});
  ExpectDataLoss(Raw().Header(0, 1).Str("general.alignment").U32(5).U32(static_cast<uint32_t>(-32)),
                 {"'general.alignment'", "alignment -32"});
}

// ---------------------------------------------------------------------------------------------
// Tensor infos.

TEST(BadFileTest, TensorNameLengthOf2To63) {
  ExpectDataLoss(Raw().Header(1, 0).U64(k2To63).GrowTo(4096),
                 {"tensor #0", "name length 9223372036854775808"});
}

TEST(BadFileTest, TooManyDims) {
  Raw r;
  r.Header(1, 0).Str("t").U32(5).GrowTo(4096);
  ExpectDataLoss(r, {"tensor #0 ('t')", "n_dims 5", "maximum of 4"});
  Raw huge;
  huge.Header(1, 0).Str("t").U32(0xffffffffu).GrowTo(4096);
  ExpectDataLoss(huge, {"tensor #0 ('t')", "n_dims 4294967295"});
}

TEST(BadFileTest, DimensionProductsThatOverflow) {
  Raw r;
  r.Header(1, 0).Tensor("big", {1ull << 32, 1ull << 32}, kF32, 0).PadTo(32).Zeros(64);
  ExpectDataLoss(r, {"tensor #0 ('big')", "dims [4294967296, 4294967296]", "overflows"});
  // Fits in 64 bits but not in ggml's int64.
  Raw r63;
  r63.Header(1, 0).Tensor("big", {1ull << 32, 1ull << 31}, kF32, 0).PadTo(32).Zeros(64);
  ExpectDataLoss(r63, {"tensor #0 ('big')", "overflows"});
  // The element count fits, the byte count (x4 for F32) does not.
  Raw bytes;
  bytes.Header(1, 0).Tensor("big", {1ull << 31, 1ull << 31}, kF32, 0).PadTo(32).Zeros(64);
  ExpectDataLoss(bytes, {"tensor #0 ('big')", "data size", "overflow"});
  // No overflow at all, just more data than the file holds.
  Raw large;
  large.Header(1, 0).Tensor("big", {1 << 20, 1 << 10}, kF32, 0).PadTo(32).Zeros(64);
  ExpectDataLoss(large, {"tensor #0 ('big')", "4294967296 bytes", "larger than the whole file"});
}

TEST(BadFileTest, UnknownOrUnsupportedTensorTypes) {
  Raw known;
  known.Header(1, 0).Tensor("w", {256}, 16, 0).PadTo(32).Zeros(256);
  ExpectDataLoss(known, {"tensor #0 ('w')", "type id 16 (IQ2_XXS) is not supported"});
  Raw unknown;
  unknown.Header(1, 0).Tensor("w", {32}, 1000, 0).PadTo(32).Zeros(256);
  ExpectDataLoss(unknown, {"tensor #0 ('w')", "type id 1000 is unknown"});
}

TEST(BadFileTest, RowLengthNotAMultipleOfTheBlockSize) {
  Raw r;
  r.Header(1, 0).Tensor("q", {48, 2}, kQ4_1, 0).PadTo(32).Zeros(256);
  ExpectDataLoss(r, {"tensor #0 ('q')", "dims[0] = 48", "Q4_1 block size 32"});
}

// Every block format added for real files (the K-quants, Q5_0/Q5_1, IQ4_NL/IQ4_XS): a whole
// number of blocks parses; a row that is not (for a K-quant 128, or 384: whole 32-blocks)
// and data one byte short of the declared blocks are clear errors.
TEST(BadFileTest, EveryBlockFormatChecksRowLengthAndBlockCount) {
  for (uint32_t id : {6u, 7u, 10u, 11u, 12u, 13u, 14u, 15u, 20u, 23u}) {
    const std::optional<cpu::TensorTypeTraits> t = cpu::GetTensorTypeTraits(id);
    ASSERT_TRUE(t.has_value()) << id;
    SCOPED_TRACE(std::string(t->name));
    const size_t data_bytes = 2 * t->block_bytes;
    Raw ok;
    ok.Header(1, 0).Tensor("w", {t->block_elems, 2}, id, 0).PadTo(32).Zeros(data_bytes);
    EXPECT_TRUE(ParseTracked(ok).status.ok()) << ParseTracked(ok).status.ToString();
    for (uint64_t bad_row : {t->block_elems / 2, t->block_elems * 3 / 2}) {
      Raw r;
      r.Header(1, 0).Tensor("w", {bad_row, 2}, id, 0).PadTo(32).Zeros(data_bytes * 2);
      ExpectDataLoss(r, {"tensor #0 ('w')", "dims[0] = " + std::to_string(bad_row),
                         std::string(t->name) + " block size " + std::to_string(t->block_elems)});
    }
    Raw short_data;
    short_data.Header(1, 0).Tensor("w", {t->block_elems, 2}, id, 0).PadTo(32).Zeros(data_bytes - 1);
    ExpectDataLoss(short_data, {"tensor #0 ('w')", "runs past the end of the file"});
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor data placement. The rule (see PlaceTensorData in gguf.cc): tensor k's offset is the
// padded size of tensors 0..k-1, as llama.cpp requires.

TEST(BadFileTest, OverlappingOffsets) {
  ExpectDataLoss(TwoTensors(0), {"tensor #1 ('b')", "offset 0 overlaps", "tensor #0 ('a')"});
}

TEST(BadFileTest, GapsBetweenTensors) {
  ExpectDataLoss(TwoTensors(64, 96), {"tensor #1 ('b')", "offset 64 leaves a gap", "expected 32"});
  Raw first;
  first.Header(1, 0).Tensor("a", {8}, kF32, 32).PadTo(32).Zeros(64);
  ExpectDataLoss(first, {"tensor #0 ('a')", "offset 32 leaves a gap", "expected 0"});
}

TEST(BadFileTest, MisalignedOffsets) {
  ExpectDataLoss(TwoTensors(16), {"tensor #1 ('b')", "offset 16", "not a multiple of the alignment 32"});
}

TEST(BadFileTest, DataPastTheEndOfTheFile) {
  // Offsets are right, but the second tensor's data is cut short.
  ExpectDataLoss(TwoTensors(32, 63), {"tensor #1 ('b')", "runs past the end of the file"});
  // An offset near 2^64 must not wrap around when added to the data start.
  Raw r;
  r.Header(1, 0).Tensor("a", {8}, kF32, 0);
  const size_t offset_at = r.size() - 8;
  r.PadTo(32).Zeros(32);
  std::vector<uint8_t> b = r.bytes();
  const uint64_t wrap = UINT64_MAX - 31;  // aligned to 32
  std::memcpy(b.data() + offset_at, &wrap, 8);
  ExpectDataLoss(b, {"tensor #0 ('a')", "offset 18446744073709551584"});
  // Tensors declared, but the file ends before the padded start of the data section.
  Raw no_data;
  no_data.Header(1, 0).Tensor("a", {8}, kF32, 0).U8(0);
  ExpectDataLoss(no_data, {"tensor data section", "past the end"});
}

TEST(BadFileTest, EmptyTensorsCannotClaimHugeDimensions) {
  // No elements, but a consumer sizing a row from dims[0] would allocate 2^40 floats.
  Raw r;
  r.Header(1, 0).Tensor("e", {1ull << 40, 0}, kF32, 0).PadTo(32).Zeros(32);
  ExpectDataLoss(r, {"tensor #0 ('e')", "dims [1099511627776, 0] (zero dimensions counted as 1)",
                     "larger than the whole file"});
}

TEST(BadFileTest, EmptyTensorsAreAllowedAndTakeNoSpace) {
  Raw r;
  r.Header(2, 0).Tensor("empty", {0, 4}, kF32, 0).Tensor("a", {8}, kF32, 0).PadTo(32).Zeros(32);
  EXPECT_TRUE(ParseTracked(r).status.ok()) << ParseTracked(r).status.ToString();
}

}  // namespace
}  // namespace llmasos::gguf
