// Writer -> reader round trips, typed getters, the describer, and the real default model.
#include "model/gguf/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "drivers/cpu/ops.h"
#include "model/gguf/gguf_describe.h"
#include "model/gguf/gguf_writer.h"
#include "util/fp16.h"
#include "util/oracle_inputs.h"

namespace llmasos::gguf {
namespace {

using cpu::TensorType;

constexpr TensorType kAllTypes[] = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                                    TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ8_0};

std::unique_ptr<GgufFile> ParseOrDie(const std::vector<uint8_t>& bytes) {
  auto file = GgufFile::Parse(bytes);
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (!file.ok()) return nullptr;
  return std::move(file).value();
}

std::vector<uint8_t> SerializeOrDie(const GgufWriter& w, uint32_t version = 3) {
  auto bytes = w.Serialize(version);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  return bytes.ok() ? std::move(bytes).value() : std::vector<uint8_t>{};
}

// ---------------------------------------------------------------------------------------------
// Metadata round trips, for both versions.

// A writer holding one value of every type (19 keys), arrays and edge cases included.
GgufWriter WriterWithEveryValueType() {
  GgufWriter w;
  w.SetUint8("u8", 200);
  w.SetInt8("i8", -100);
  w.SetUint16("u16", 60000);
  w.SetInt16("i16", -30000);
  w.SetUint32("u32", 4000000000u);
  w.SetInt32("i32", -2000000000);
  w.SetUint64("u64", 18000000000000000000ull);
  w.SetInt64("i64", -9000000000000000000ll);
  w.SetFloat32("f32", 1.5f);
  w.SetFloat64("f64", -2.25e300);
  w.SetBool("yes", true);
  w.SetBool("no", false);
  w.SetString("str", "h\xc3\xa9llo");
  w.SetString("empty", "");
  w.SetString("nul", std::string("a\0b", 3));
  w.SetStringArray("strs", {"one", "", "three"});
  w.SetStringArray("no_strs", {});
  const float floats[] = {0.5f, -1.0f, 3e38f};
  w.SetFloat32Array("floats", floats);
  const int32_t ints[] = {-7, 0, 2147483647};
  w.SetInt32Array("ints", ints);
  return w;
}

class MetadataRoundTripTest : public testing::TestWithParam<uint32_t> {};

TEST_P(MetadataRoundTripTest, EveryValueTypeReadsBackAsWritten) {
  GgufWriter w = WriterWithEveryValueType();
  std::vector<uint8_t> bytes = SerializeOrDie(w, GetParam());
  auto f = ParseOrDie(bytes);
  ASSERT_NE(f, nullptr);

  EXPECT_EQ(f->version(), GetParam());
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(f->tensors().size(), 0u);
  EXPECT_EQ(f->alignment(), kDefaultAlignment);
  // Keys come back in the order they were set.
  EXPECT_EQ(f->metadata()[0].key, "u8");
  EXPECT_EQ(f->metadata()[18].key, "ints");

  auto type_of = [&](std::string_view k) { return f->Find(k)->type; };
  EXPECT_EQ(type_of("u8"), ValueType::kUint8);
  EXPECT_EQ(type_of("i8"), ValueType::kInt8);
  EXPECT_EQ(type_of("u16"), ValueType::kUint16);
  EXPECT_EQ(type_of("i16"), ValueType::kInt16);
  EXPECT_EQ(type_of("u32"), ValueType::kUint32);
  EXPECT_EQ(type_of("i32"), ValueType::kInt32);
  EXPECT_EQ(type_of("u64"), ValueType::kUint64);
  EXPECT_EQ(type_of("i64"), ValueType::kInt64);
  EXPECT_EQ(type_of("f32"), ValueType::kFloat32);
  EXPECT_EQ(type_of("f64"), ValueType::kFloat64);
  EXPECT_EQ(type_of("yes"), ValueType::kBool);
  EXPECT_EQ(type_of("str"), ValueType::kString);
  EXPECT_EQ(type_of("strs"), ValueType::kArray);

  EXPECT_EQ(*f->GetUint("u8"), 200u);
  EXPECT_EQ(*f->GetInt("i8"), -100);
  EXPECT_EQ(*f->GetUint("u16"), 60000u);
  EXPECT_EQ(*f->GetInt("i16"), -30000);
  EXPECT_EQ(*f->GetUint("u32"), 4000000000u);
  EXPECT_EQ(*f->GetInt("i32"), -2000000000);
  EXPECT_EQ(*f->GetUint("u64"), 18000000000000000000ull);
  EXPECT_EQ(*f->GetInt("i64"), -9000000000000000000ll);
  EXPECT_EQ(*f->GetFloat("f32"), 1.5);
  EXPECT_EQ(*f->GetFloat("f64"), -2.25e300);
  EXPECT_TRUE(*f->GetBool("yes"));
  EXPECT_FALSE(*f->GetBool("no"));
  EXPECT_EQ(*f->GetString("str"), "h\xc3\xa9llo");
  EXPECT_EQ(*f->GetString("empty"), "");
  EXPECT_EQ(*f->GetString("nul"), std::string_view("a\0b", 3));

  auto strs = f->GetStringArray("strs");
  ASSERT_TRUE(strs.ok()) << strs.status().ToString();
  ASSERT_EQ((*strs)->size(), 3u);
  EXPECT_EQ((**strs)[0], "one");
  EXPECT_EQ((**strs)[1], "");
  EXPECT_EQ((**strs)[2], "three");
  EXPECT_EQ((*f->GetStringArray("no_strs"))->size(), 0u);
  EXPECT_EQ(f->Find("strs")->array_type, ValueType::kString);
  EXPECT_EQ(f->Find("strs")->array_count, 3u);

  auto fl = f->GetFloatArray("floats");
  ASSERT_TRUE(fl.ok()) << fl.status().ToString();
  EXPECT_EQ(*fl, (std::vector<float>{0.5f, -1.0f, 3e38f}));
  auto in = f->GetIntArray("ints");
  ASSERT_TRUE(in.ok()) << in.status().ToString();
  EXPECT_EQ(*in, (std::vector<int64_t>{-7, 0, 2147483647}));
  // An int32 array is also a valid float array.
  EXPECT_EQ((*f->GetFloatArray("ints"))[0], -7.0f);
}

// CopyValue: a file whose every value is copied into a new writer, in order, serializes to
// the same bytes (what `llmasos quantize` relies on to keep a model's metadata intact).
TEST(GgufWriterTest, CopyValueReproducesEveryValueType) {
  GgufWriter w = WriterWithEveryValueType();
  const std::vector<uint8_t> original = SerializeOrDie(w);
  std::unique_ptr<GgufFile> file = ParseOrDie(original);
  ASSERT_NE(file, nullptr);
  GgufWriter copy;
  for (const MetadataEntry& e : file->metadata()) {
    ASSERT_TRUE(copy.CopyValue(e.key, e.value).ok()) << e.key;
  }
  EXPECT_EQ(SerializeOrDie(copy), original);
}

TEST(GgufFileTest, FloatArrayOfOutOfRangeDoublesGivesInfinities) {
  // The writer has no float64 array setter; build the value by hand.
  std::vector<uint8_t> b;
  auto put = [&b](auto v) {
    const size_t at = b.size();
    b.resize(at + sizeof(v));
    std::memcpy(b.data() + at, &v, sizeof(v));
  };
  put(kMagic);
  put(uint32_t{3});
  put(uint64_t{0});
  put(uint64_t{1});
  put(uint64_t{1});
  b.push_back('d');
  put(uint32_t{9});
  put(uint32_t{12});  // float64 elements
  put(uint64_t{3});
  put(1e300);
  put(-1e300);
  put(0.5);
  auto f = ParseOrDie(b);
  ASSERT_NE(f, nullptr);
  auto v = f->GetFloatArray("d");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, (std::vector<float>{INFINITY, -INFINITY, 0.5f}));
}

INSTANTIATE_TEST_SUITE_P(Versions, MetadataRoundTripTest, testing::Values(2u, 3u));

TEST(GgufWriterTest, LaterSetterReplacesEarlierValueOfSameKey) {
  GgufWriter w;
  w.SetUint32("k", 1);
  w.SetString("other", "x");
  w.SetString("k", "now a string");
  const std::vector<uint8_t> bytes = SerializeOrDie(w);  // the file views these bytes
  auto f = ParseOrDie(bytes);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(*f->GetString("k"), "now a string");
}

TEST(GgufWriterTest, RefusesVersionsOtherThanTwoAndThree) {
  GgufWriter w;
  for (uint32_t v : {0u, 1u, 4u}) {
    auto bytes = w.Serialize(v);
    ASSERT_FALSE(bytes.ok());
    EXPECT_EQ(bytes.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(bytes.status().message().find(std::to_string(v)), std::string::npos);
  }
}

TEST(GgufWriterTest, RefusesAlignmentKeySetBehindSetAlignmentsBack) {
  GgufWriter w;
  w.SetUint32("general.alignment", 64);  // the padding would still be 32
  auto bytes = w.Serialize();
  ASSERT_FALSE(bytes.ok());
  EXPECT_NE(bytes.status().message().find("general.alignment"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Typed getters.

class GetterTest : public testing::Test {
 protected:
  void SetUp() override {
    GgufWriter w;
    w.SetInt32("negative", -1);
    w.SetUint64("huge", UINT64_MAX);
    w.SetUint8("small", 7);
    w.SetString("name", "x");
    w.SetFloat32("real", 0.25f);
    w.SetBool("flag", true);
    const int32_t ints[] = {1, 2};
    w.SetInt32Array("ints", ints);
    w.SetStringArray("strs", {"a"});
    bytes_ = SerializeOrDie(w);
    file_ = ParseOrDie(bytes_);
    ASSERT_NE(file_, nullptr);
  }
  std::vector<uint8_t> bytes_;
  std::unique_ptr<GgufFile> file_;
};

TEST_F(GetterTest, MissingKeyIsNotFoundNamingTheKey) {
  auto v = file_->GetUint("no.such.key");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kNotFound);
  EXPECT_NE(v.status().message().find("no.such.key"), std::string::npos);
  EXPECT_EQ(file_->Find("no.such.key"), nullptr);
  EXPECT_EQ(file_->FindTensor("no.such.tensor"), nullptr);
}

TEST_F(GetterTest, WrongTypeIsInvalidArgumentNamingKeyAndBothTypes) {
  auto v = file_->GetString("small");
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = v.status().message();
  EXPECT_NE(m.find("'small'"), std::string::npos) << m;
  EXPECT_NE(m.find("uint8"), std::string::npos) << m;
  EXPECT_NE(m.find("string"), std::string::npos) << m;
  EXPECT_EQ(file_->GetUint("name").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(file_->GetBool("small").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(file_->GetFloat("flag").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(file_->GetStringArray("ints").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(file_->GetIntArray("strs").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(file_->GetFloatArray("name").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(file_->GetIntArray("small").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(GetterTest, IntegerGettersAcceptAnyIntegerTypeWhoseValueFits) {
  EXPECT_EQ(*file_->GetInt("small"), 7);
  EXPECT_EQ(*file_->GetUint("small"), 7u);
  EXPECT_EQ(*file_->GetInt("negative"), -1);
  EXPECT_EQ(*file_->GetUint("huge"), UINT64_MAX);
  EXPECT_EQ(*file_->GetFloat("small"), 7.0);
  EXPECT_EQ(*file_->GetFloat("real"), 0.25);

  auto neg = file_->GetUint("negative");
  ASSERT_FALSE(neg.ok());
  EXPECT_EQ(neg.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(neg.status().message().find("-1"), std::string::npos);
  auto big = file_->GetInt("huge");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(big.status().message().find("18446744073709551615"), std::string::npos);
  EXPECT_EQ(file_->GetInt("real").status().code(), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// Tensors: every type, several alignments, both versions.

struct LayoutCase {
  uint32_t version;
  uint32_t alignment;
};

class TensorRoundTripTest : public testing::TestWithParam<LayoutCase> {};

TEST_P(TensorRoundTripTest, EveryTypeKeepsItsBytesDimsAndAlignedOffset) {
  const LayoutCase c = GetParam();
  GgufWriter w;
  if (c.alignment != kDefaultAlignment) w.SetAlignment(c.alignment);
  w.SetString("general.architecture", "test");
  std::mt19937 rng(42);
  std::map<std::string, std::vector<uint8_t>> written;
  std::map<std::string, std::vector<uint64_t>> shapes;
  int k = 0;
  for (TensorType type : kAllTypes) {
    // Odd row counts and a 3-D shape make sizes that are not multiples of the alignment.
    for (std::vector<uint64_t> dims : {std::vector<uint64_t>{64, 3}, {32, 1, 5}, {96}}) {
      const std::string name = "t" + std::to_string(k++) + "." + std::string(cpu::Traits(type).name);
      uint64_t rows = 1;
      for (size_t d = 1; d < dims.size(); ++d) rows *= dims[d];
      std::vector<uint8_t> data(cpu::RowBytes(type, dims[0]) * rows);
      for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
      ASSERT_TRUE(w.AddTensor(name, type, dims, data).ok());
      written[name] = data;
      shapes[name] = dims;
    }
  }
  std::vector<uint8_t> bytes = SerializeOrDie(w, c.version);
  auto f = ParseOrDie(bytes);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->version(), c.version);
  EXPECT_EQ(f->alignment(), c.alignment);
  ASSERT_EQ(f->tensors().size(), written.size());
  uint64_t prev_end = 0;
  for (const TensorInfo& t : f->tensors()) {
    const std::string name(t.name);
    SCOPED_TRACE(name);
    ASSERT_TRUE(written.count(name));
    EXPECT_EQ(t.dims, shapes[name]);
    EXPECT_EQ(std::string(cpu::Traits(t.type).name), name.substr(name.find('.') + 1));
    uint64_t elems = 1;
    for (uint64_t d : t.dims) elems *= d;
    EXPECT_EQ(t.num_elements, elems);
    ASSERT_EQ(t.num_bytes, written[name].size());
    EXPECT_EQ(t.offset % c.alignment, 0u);
    EXPECT_GE(t.offset, prev_end);
    prev_end = t.offset + t.num_bytes;
    // Aligned relative to the start of the file as well.
    EXPECT_EQ(static_cast<uint64_t>(t.data - bytes.data()) % c.alignment, 0u);
    EXPECT_EQ(std::memcmp(t.data, written[name].data(), t.num_bytes), 0);
    EXPECT_EQ(f->FindTensor(name), &t);
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, TensorRoundTripTest,
                         testing::Values(LayoutCase{3, 32}, LayoutCase{3, 64}, LayoutCase{3, 1},
                                         LayoutCase{2, 32}, LayoutCase{2, 64}, LayoutCase{2, 1}));

// Dequantizes one row by the block formulas in tensor_type.h (independent of the driver).
std::vector<float> DequantizeByFormula(TensorType type, const uint8_t* row, size_t n) {
  std::vector<float> out(n);
  for (size_t b = 0; b < n / 32; ++b) {
    float* o = out.data() + 32 * b;
    if (type == TensorType::kQ8_0) {
      cpu::BlockQ8_0 blk;
      std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
      for (int j = 0; j < 32; ++j) o[j] = F16ToF32(blk.d) * blk.qs[j];
    } else if (type == TensorType::kQ4_0) {
      cpu::BlockQ4_0 blk;
      std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
      for (int j = 0; j < 16; ++j) {
        o[j] = F16ToF32(blk.d) * ((blk.qs[j] & 15) - 8);
        o[j + 16] = F16ToF32(blk.d) * ((blk.qs[j] >> 4) - 8);
      }
    } else if (type == TensorType::kQ4_1) {
      cpu::BlockQ4_1 blk;
      std::memcpy(&blk, row + b * sizeof(blk), sizeof(blk));
      for (int j = 0; j < 16; ++j) {
        o[j] = F16ToF32(blk.d) * (blk.qs[j] & 15) + F16ToF32(blk.m);
        o[j + 16] = F16ToF32(blk.d) * (blk.qs[j] >> 4) + F16ToF32(blk.m);
      }
    }
  }
  return out;
}

TEST(GgufWriterTest, AddTensorFromFloatsConvertsEveryRowOfEveryType) {
  const size_t cols = 64, rows = 3;
  std::vector<float> values(cols * rows);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Each row has its own scale, so a row landing in the wrong place would show.
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) values[r * cols + c] = (r + 1) * 10.0f * normal(rng);
  }
  GgufWriter w;
  for (TensorType type : kAllTypes) {
    ASSERT_TRUE(w.AddTensorFromFloats(cpu::Traits(type).name, type, {cols, rows}, values).ok());
  }
  std::vector<uint8_t> bytes = SerializeOrDie(w);
  auto f = ParseOrDie(bytes);
  ASSERT_NE(f, nullptr);
  for (TensorType type : kAllTypes) {
    SCOPED_TRACE(std::string(cpu::Traits(type).name));
    const TensorInfo* t = f->FindTensor(cpu::Traits(type).name);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->type, type);
    const size_t row_bytes = cpu::RowBytes(type, cols);
    ASSERT_EQ(t->num_bytes, row_bytes * rows);
    for (size_t r = 0; r < rows; ++r) {
      const float* x = values.data() + r * cols;
      const uint8_t* row = t->data + r * row_bytes;
      if (type == TensorType::kF32) {
        EXPECT_EQ(std::memcmp(row, x, row_bytes), 0);
        continue;
      }
      if (type == TensorType::kF16 || type == TensorType::kBF16) {
        for (size_t c = 0; c < cols; ++c) {
          uint16_t h;
          std::memcpy(&h, row + 2 * c, 2);
          EXPECT_EQ(h, type == TensorType::kF16 ? F32ToF16(x[c]) : F32ToBf16(x[c]));
        }
        continue;
      }
      // Quantized: the bytes are QuantizeRow's, and they decode back near the input.
      std::vector<uint8_t> expect(row_bytes);
      cpu::QuantizeRow(type, x, cols, expect.data());
      EXPECT_EQ(std::memcmp(row, expect.data(), row_bytes), 0) << "row " << r;
      std::vector<float> back = DequantizeByFormula(type, row, cols);
      for (size_t b = 0; b < cols / 32; ++b) {
        float lo = x[32 * b], hi = x[32 * b];
        for (int j = 0; j < 32; ++j) {
          lo = std::min(lo, x[32 * b + j]);
          hi = std::max(hi, x[32 * b + j]);
        }
        // One quantization step is at most range/15 (4-bit) or range/127 (8-bit).
        const float step = (hi - lo) / (type == TensorType::kQ8_0 ? 127.0f : 7.0f);
        for (int j = 0; j < 32; ++j) {
          EXPECT_NEAR(back[32 * b + j], x[32 * b + j], step) << "row " << r << " col " << 32 * b + j;
        }
      }
    }
  }
}

TEST(GgufWriterTest, AddTensorRejectsBadShapesSizesAndDuplicates) {
  GgufWriter w;
  std::vector<uint8_t> data(cpu::RowBytes(TensorType::kQ4_1, 64));
  ASSERT_TRUE(w.AddTensor("a", TensorType::kQ4_1, {64}, data).ok());
  Status dup = w.AddTensor("a", TensorType::kQ4_1, {64}, data);
  EXPECT_EQ(dup.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dup.message().find("'a'"), std::string::npos);
  Status size = w.AddTensor("b", TensorType::kQ4_1, {64, 2}, data);
  EXPECT_EQ(size.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(size.message().find(std::to_string(data.size())), std::string::npos);
  Status block = w.AddTensor("c", TensorType::kQ4_1, {48}, data);
  EXPECT_EQ(block.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(block.message().find("block size 32"), std::string::npos);
  EXPECT_EQ(w.AddTensor("d", TensorType::kF32, {1, 1, 1, 1, 1}, data).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("e", static_cast<TensorType>(12), {32}, data).code(),
            StatusCode::kInvalidArgument);
  const std::vector<float> three(3);
  EXPECT_EQ(w.AddTensorFromFloats("f", TensorType::kF32, {4}, three).code(),
            StatusCode::kInvalidArgument);
}

TEST(GgufFileTest, OpenMapsAWrittenFile) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  const std::vector<float> v = {1, 2, 3, 4};
  ASSERT_TRUE(w.AddTensorFromFloats("x", TensorType::kF32, {4}, v).ok());
  const std::string path = testing::TempDir() + "/gguf_open_test.gguf";
  ASSERT_TRUE(w.WriteFile(path).ok());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(*(*f)->GetString("general.architecture"), "llama");
  const TensorInfo* x = (*f)->FindTensor("x");
  ASSERT_NE(x, nullptr);
  float back[4];
  std::memcpy(back, x->data, sizeof(back));
  EXPECT_EQ(back[3], 4.0f);
  EXPECT_EQ((*f)->size_bytes(), std::filesystem::file_size(path));
  std::filesystem::remove(path);
}

TEST(GgufFileTest, OpenErrorsNameThePath) {
  auto missing = GgufFile::Open("/nonexistent/dir/m.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/dir/m.gguf"), std::string::npos);

  const std::string path = testing::TempDir() + "/gguf_not_gguf.gguf";
  std::ofstream(path) << "GGML this is something else entirely";
  auto bad = GgufFile::Open(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(bad.status().message().find(path), std::string::npos);
  EXPECT_NE(bad.status().message().find("magic"), std::string::npos);
  std::filesystem::remove(path);
}

// ---------------------------------------------------------------------------------------------
// DescribeGguf.

TEST(DescribeGgufTest, AbbreviatesLongValuesAndLimitsTheTensorTable) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  std::vector<std::string> tokens;
  for (int i = 0; i < 1000; ++i) tokens.push_back("tok" + std::to_string(i));
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetString("long", std::string(500, 'z'));
  w.SetString("ctrl", "a\x1b[2Jb\n");
  for (int i = 0; i < 25; ++i) {
    const std::vector<float> v(32, 1.0f);
    ASSERT_TRUE(w.AddTensorFromFloats("tensor_" + std::to_string(i), TensorType::kQ8_0, {32}, v).ok());
  }
  const std::vector<uint8_t> bytes = SerializeOrDie(w);  // the file views these bytes
  auto f = ParseOrDie(bytes);
  ASSERT_NE(f, nullptr);
  const std::string text = DescribeGguf(*f, /*all_tensors=*/false);
  EXPECT_NE(text.find("\"llama\""), std::string::npos) << text;
  EXPECT_NE(text.find("1000 items"), std::string::npos) << text;
  EXPECT_NE(text.find("\"tok0\""), std::string::npos) << text;
  EXPECT_EQ(text.find("tok999"), std::string::npos) << text;
  EXPECT_NE(text.find("(500 bytes)"), std::string::npos) << text;
  EXPECT_EQ(text.find(std::string(500, 'z')), std::string::npos);
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << "control characters must be escaped";
  EXPECT_NE(text.find("\\x1b[2Jb\\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tensor_19"), std::string::npos);
  EXPECT_EQ(text.find("tensor_20"), std::string::npos);
  EXPECT_NE(text.find("5 more tensors"), std::string::npos) << text;
  EXPECT_NE(text.find("Q8_0"), std::string::npos);

  const std::string all = DescribeGguf(*f, /*all_tensors=*/true);
  EXPECT_NE(all.find("tensor_24"), std::string::npos);
  EXPECT_EQ(all.find("more tensors"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// The fuzzer's seeds are valid files (so the fuzzer starts from inputs that parse).

TEST(FuzzSeedsTest, EverySeedParses) {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(LLMASOS_FUZZ_SEEDS_DIR)) {
    SCOPED_TRACE(entry.path().string());
    auto f = GgufFile::Open(entry.path().string());
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    ++n;
  }
  EXPECT_GE(n, 3);
}

// ---------------------------------------------------------------------------------------------
// The real default model.

TEST(RealModelTest, ReadsSmolLm2Q41) {
  const std::string path = oracles::DefaultModelPath();
  LLMASOS_REQUIRE_ORACLE_INPUT("the default model", path);
  auto opened = GgufFile::Open(path);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  const GgufFile& f = **opened;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(*f.GetString("general.architecture"), "llama");
  const uint64_t layers = *f.GetUint("llama.block_count");
  EXPECT_EQ(layers, 30u);
  const uint64_t embd = *f.GetUint("llama.embedding_length");
  EXPECT_EQ(embd, 576u);
  auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ((*tokens)->size(), 49152u);
  EXPECT_EQ((**tokens)[0], "<|endoftext|>");
  EXPECT_EQ(f.GetIntArray("tokenizer.ggml.token_type")->size(), 49152u);

  // Nine tensors per layer, for exactly block_count layers.
  std::set<uint64_t> layer_ids;
  for (const TensorInfo& t : f.tensors()) {
    if (t.name.starts_with("blk.")) {
      layer_ids.insert(std::stoull(std::string(t.name.substr(4, t.name.find('.', 4) - 4))));
    }
  }
  EXPECT_EQ(layer_ids.size(), layers);
  EXPECT_EQ(*layer_ids.rbegin(), layers - 1);
  for (uint64_t l = 0; l < layers; ++l) {
    for (const char* part : {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                             "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"}) {
      EXPECT_NE(f.FindTensor("blk." + std::to_string(l) + "." + part + ".weight"), nullptr)
          << l << " " << part;
    }
  }
  EXPECT_EQ(f.tensors().size(), 2 + 9 * layers);  // + token_embd, output_norm (tied output)

  const TensorInfo* embd_t = f.FindTensor("token_embd.weight");
  ASSERT_NE(embd_t, nullptr);
  // This file keeps its embedding at Q8_0 while the layer matrices are Q4_1.
  EXPECT_EQ(embd_t->type, TensorType::kQ8_0);
  EXPECT_EQ(embd_t->dims, (std::vector<uint64_t>{embd, 49152}));
  EXPECT_EQ(f.FindTensor("blk.0.attn_q.weight")->type, TensorType::kQ4_1);
  EXPECT_EQ(f.FindTensor("blk.0.attn_norm.weight")->type, TensorType::kF32);
  // The last tensor ends at the end of the file.
  const TensorInfo& last = f.tensors().back();
  EXPECT_EQ(static_cast<uint64_t>(last.data - f.bytes().data()) + last.num_bytes, f.size_bytes());
  // Norm weights are ordinary floats near 1, not garbage from a wrong offset.
  const TensorInfo* norm = f.FindTensor("output_norm.weight");
  float w0;
  std::memcpy(&w0, norm->data, sizeof(w0));
  EXPECT_TRUE(std::isfinite(w0) && std::fabs(w0) < 100.0f) << w0;

  const std::string text = DescribeGguf(f, false);
  EXPECT_NE(text.find("49152 items"), std::string::npos);
  EXPECT_NE(text.find("token_embd.weight"), std::string::npos);
  EXPECT_NE(text.find("252 more tensors"), std::string::npos);
}

TEST(WritableTensorTypeTest, NamesParseInAnyCaseAndUnwritableOrUnknownNamesAreRefused) {
  auto q4k = WritableTensorType("q4_k");
  ASSERT_TRUE(q4k.ok()) << q4k.status().ToString();
  EXPECT_EQ(*q4k, TensorType::kQ4_K);
  auto bf16 = WritableTensorType("BF16");
  ASSERT_TRUE(bf16.ok()) << bf16.status().ToString();
  EXPECT_EQ(*bf16, TensorType::kBF16);
  // IQ4_XS loads but has no quantizer; q9 names nothing.
  for (const char* name : {"iq4_xs", "q9", "", "q4_k_m"}) {
    auto t = WritableTensorType(name);
    ASSERT_FALSE(t.ok()) << name;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find("'" + std::string(name) + "'"), std::string::npos);
    EXPECT_NE(t.status().message().find("q8_0"), std::string::npos) << "lists what it can write";
  }
}

}  // namespace
}  // namespace llmasos::gguf
