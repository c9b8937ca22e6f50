// Every SIMD kernel against its scalar twin (scalar_ops.h), once per SIMD target compiled in
// and supported by this CPU (hwy::SetSupportedTargetsForTest), so the AVX2 and SSE4 paths are
// exercised on an AVX-512 machine too. Plus the quantized MatMul against plain float math on
// the dequantized weights, within the bound that 8-bit activations allow.
//
// Tolerances, and why:
//  * Activation quantization and DequantizeRow: bit-identical (same IEEE operations; products
//    of an fp16 scale and a 4- or 8-bit integer are exact in f32, so FMA or not is the same).
//  * Quantized MatMul vs its twin: the integer block dot products are exact in both, only the
//    order (and FMA fusion) of the f32 sum over K block terms differs. Any summation order of
//    K terms errs by at most ~K * eps * sum|terms| (Higham), so we allow
//    2 * (K + 2) * FLT_EPSILON * sum_c |w_c x_c|.
//  * Float MatMul and Dot: the same bound with K = cols.
//  * Quantized MatMul vs float math: x_j - d_x q_j is at most d_x / 2 (round to nearest) in
//    each element, so the result may differ from the exact product by at most
//    sum_groups (d_x / 2) * sum_j |w_j| (a group: the elements that share d_x, 32 or 256:
//    ActivationGroupElems), plus the summation bound above.
//  * Exp-based kernels (Softmax, SwiGlu): Highway's Exp is within a few ULP of std::exp;
//    we allow a relative 2e-6 per element (about 16 ULP) plus the sum's rounding.
#include <cfloat>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/gemm.h"
#include "drivers/cpu/ops.h"
#include "drivers/cpu/quant_unpack.h"
#include "drivers/cpu/scalar_ops.h"
#include "hwy/targets.h"
#include "util/fp16.h"
#include "util/thread_pool.h"

namespace llmasos::cpu {
namespace {

std::vector<float> RandomFloats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

// A weight matrix in `type`'s storage, made by QuantizeRow from random floats whose scale
// varies per row (so block scales differ) and with a bias (so Q4_1's minimum matters).
struct Weights {
  std::vector<uint8_t> bytes;
  MatView view;
};

// The formats QuantizeRow does not write: random blocks (every bit pattern of the integer
// fields is valid) with their float scales set to finite values of either sign.
const TensorType kRandomBlockTypes[] = {
    TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ2_K, TensorType::kQ3_K,
    TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kQ8_K,
    TensorType::kIQ4_NL, TensorType::kIQ4_XS};

bool IsRandomBlockType(TensorType type) {
  return std::find(std::begin(kRandomBlockTypes), std::end(kRandomBlockTypes), type) !=
         std::end(kRandomBlockTypes);
}

// Byte offsets of a block's fp16 scales (d first, then dmin or m where the format has one).
std::vector<size_t> HalfScaleOffsets(TensorType type) {
  switch (type) {
    case TensorType::kQ4_1: case TensorType::kQ5_1: case TensorType::kQ4_K: case TensorType::kQ5_K:
      return {0, 2};
    case TensorType::kQ2_K: return {80, 82};
    case TensorType::kQ3_K: return {108};
    case TensorType::kQ6_K: return {208};
    case TensorType::kQ8_K: return {};  // an f32 scale, set separately
    default: return {0};
  }
}

void RandomizeBlocks(TensorType type, uint8_t* data, size_t num_blocks, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.002f, 0.05f);
  const size_t block_bytes = Traits(type).block_bytes;
  for (size_t b = 0; b < num_blocks; ++b) {
    uint8_t* blk = data + b * block_bytes;
    for (size_t i = 0; i < block_bytes; ++i) blk[i] = static_cast<uint8_t>(byte(rng));
    const std::vector<size_t> offsets = HalfScaleOffsets(type);
    for (size_t k = 0; k < offsets.size(); ++k) {
      // d of either sign; a minimum (dmin of the K-quants, Q5_1's m) positive.
      const float v = scale(rng) * (k == 0 && byte(rng) % 2 ? -1.0f : 1.0f);
      const uint16_t h = F32ToF16(v);
      std::memcpy(blk + offsets[k], &h, 2);
    }
    if (type == TensorType::kQ8_K) {
      const float d = scale(rng);
      std::memcpy(blk, &d, 4);
    }
  }
}

Weights MakeWeights(TensorType type, size_t rows, size_t cols, uint32_t seed) {
  Weights w;
  if (IsRandomBlockType(type)) {
    const size_t row_bytes = RowBytes(type, cols);
    w.bytes.resize(rows * row_bytes);
    RandomizeBlocks(type, w.bytes.data(), rows * cols / Traits(type).block_elems, seed);
    w.view = MatView{type, w.bytes.data(), rows, cols, row_bytes};
    return w;
  }
  const size_t row_bytes = RowBytes(type, cols);
  w.bytes.resize(rows * row_bytes);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> row_scale(0.1f, 2.0f);
  for (size_t r = 0; r < rows; ++r) {
    std::vector<float> row = RandomFloats(cols, seed * 7919 + static_cast<uint32_t>(r),
                                          row_scale(rng));
    const float bias = (r % 3 == 0) ? 0.5f : 0.0f;
    for (float& v : row) v += bias;
    QuantizeRow(type, row.data(), cols, w.bytes.data() + r * row_bytes);
  }
  w.view = MatView{type, w.bytes.data(), rows, cols, row_bytes};
  return w;
}

bool IsQuantized(TensorType type) { return IsBlockQuantized(type); }

const TensorType kAllTypes[] = {
    TensorType::kF32,  TensorType::kF16,  TensorType::kBF16, TensorType::kQ8_0,
    TensorType::kQ4_0, TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1,
    TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
    TensorType::kQ6_K, TensorType::kQ8_K, TensorType::kIQ4_NL, TensorType::kIQ4_XS};

// The smallest row length of a type (its block), and a multiple of it near `cols`.
size_t RoundCols(TensorType type, size_t cols) {
  const size_t block = Traits(type).block_elems;
  return std::max(block, cols / block * block);
}

// sum_c |W[r, c] * x[t, c]|, the scale of the summation error. For the formats with a
// minimum, the scaled part and the minimum count separately (the kernels add them apart).
std::vector<double> AbsProductSums(const MatView& w, const float* x, size_t num_tokens) {
  std::vector<double> mag(num_tokens * w.rows);
  std::vector<float> row(w.cols), row_min(w.cols, 0.0f);
  for (size_t r = 0; r < w.rows; ++r) {
    scalar::DequantizeRow(w, r, row.data());
    if (IsRandomBlockType(w.type)) {
      const auto* bytes = static_cast<const uint8_t*>(w.data) + r * w.row_bytes;
      Unpacked32 u;
      for (size_t b = 0; b < w.cols / 32; ++b) {
        UnpackBlock32(w.type, bytes, b, u);
        for (size_t e = 0; e < 32; ++e) {
          row[32 * b + e] = u.scale[e / 16] * u.q[e];
          row_min[32 * b + e] = u.min[e / 16];
        }
      }
    }
    for (size_t t = 0; t < num_tokens; ++t) {
      double sum = 0;
      for (size_t c = 0; c < w.cols; ++c) {
        sum += (std::fabs(double{row[c]}) + std::fabs(double{row_min[c]})) * std::fabs(x[t * w.cols + c]);
      }
      mag[t * w.rows + r] = sum;
    }
  }
  return mag;
}

// Float terms the kernels sum per row and token: one per block for the 32-element formats
// with dedicated kernels, one per 4-element lane (and one more for a minimum) otherwise.
double NumSumTerms(TensorType type, size_t cols) {
  if (!IsQuantized(type)) return static_cast<double>(cols);
  if (IsRandomBlockType(type)) return cols / 2.0;
  return 2.0 * cols / 32;
}

// Runs each test once per SIMD target compiled in and supported here.
class CpuKernelsTest : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override { hwy::SetSupportedTargetsForTest(GetParam()); }
  void TearDown() override { hwy::SetSupportedTargetsForTest(0); }
};

std::string TargetParamName(const ::testing::TestParamInfo<int64_t>& info) {
  return hwy::TargetName(info.param);
}

INSTANTIATE_TEST_SUITE_P(AllTargets, CpuKernelsTest,
                         ::testing::ValuesIn(hwy::SupportedAndGeneratedTargets()),
                         TargetParamName);

// c += a b for odd shapes (m, n, k not multiples of the register block, the vector width or
// the depth of a pass) and strides wider than the operands, against a double sum; the bound
// is the summation bound of the header with K = k plus c's own term.
void CheckGemm(void (*gemm)(const float*, size_t, size_t, const float*, size_t, size_t, size_t, float*, size_t)) {
  for (size_t m : {1u, 5u, 6u, 7u, 13u, 70u}) {
    for (size_t k : {1u, 3u, 257u, 600u}) {
      for (size_t n : {1u, 7u, 8u, 17u, 33u, 64u, 70u}) {
        const size_t a_stride = k + 3, b_stride = n + 5, c_stride = n + 2;
        const std::vector<float> a = RandomFloats(m * a_stride, static_cast<uint32_t>(m * 131 + k));
        const std::vector<float> b = RandomFloats(k * b_stride, static_cast<uint32_t>(k * 7 + n));
        std::vector<float> c = RandomFloats(m * c_stride, 5);
        const std::vector<float> c0 = c;
        gemm(a.data(), a_stride, m, b.data(), b_stride, k, n, c.data(), c_stride);
        for (size_t i = 0; i < m; ++i) {
          for (size_t j = 0; j < c_stride; ++j) {
            if (j >= n) {
              ASSERT_EQ(c[i * c_stride + j], c0[i * c_stride + j]) << "wrote past n";
              continue;
            }
            double sum = c0[i * c_stride + j], mag = std::fabs(sum);
            for (size_t l = 0; l < k; ++l) {
              sum += static_cast<double>(a[i * a_stride + l]) * b[l * b_stride + j];
              mag += std::fabs(static_cast<double>(a[i * a_stride + l]) * b[l * b_stride + j]);
            }
            ASSERT_NEAR(c[i * c_stride + j], sum, 2 * (k + 2) * FLT_EPSILON * mag)
                << "m=" << m << " k=" << k << " n=" << n << " i=" << i << " j=" << j;
          }
        }
      }
    }
  }
}

TEST_P(CpuKernelsTest, GemmAccumulateAddsTheProductAndWritesNothingPastItsColumns) {
  CheckGemm(GemmAccumulate);
}

TEST(CpuKernelsScalarTest, ScalarGemmAccumulateAddsTheProductAndWritesNothingPastItsColumns) {
  CheckGemm(scalar::GemmAccumulate);
}

// The training pass splits a product's rows and columns between threads (backward_ops.cc)
// and promises results that do not depend on the thread count: every element of c must come
// out bit-identical however the call is cut.
TEST_P(CpuKernelsTest, GemmAccumulateGivesTheSameBitsHoweverRowsAndColumnsAreSplit) {
  const size_t m = 29, k = 300, n = 75;
  const std::vector<float> a = RandomFloats(m * k, 11), b = RandomFloats(k * n, 12), c0 = RandomFloats(m * n, 13);
  std::vector<float> whole = c0;
  GemmAccumulate(a.data(), k, m, b.data(), n, k, n, whole.data(), n);
  for (size_t row_cut : {1u, 7u, 13u}) {
    for (size_t col_cut : {1u, 5u, 16u, 41u}) {
      std::vector<float> pieces = c0;
      for (size_t i0 = 0; i0 < m; i0 += row_cut) {
        for (size_t j0 = 0; j0 < n; j0 += col_cut) {
          GemmAccumulate(a.data() + i0 * k, k, std::min(row_cut, m - i0), b.data() + j0, n, k,
                         std::min(col_cut, n - j0), pieces.data() + i0 * n + j0, n);
        }
      }
      ASSERT_EQ(pieces, whole) << "rows cut every " << row_cut << ", columns every " << col_cut;
    }
  }
}

// b packed once (GemmPackTransposed from b^T, in two pieces split at a panel boundary) gives
// GemmAccumulate's bits in every element of c, and leaves c's columns past n alone.
TEST_P(CpuKernelsTest, GemmAccumulatePackedGivesGemmAccumulatesBits) {
  const size_t width = GemmPanelColumns();
  for (size_t m : {1u, 7u, 13u, 70u}) {
    for (size_t k : {1u, 257u, 600u}) {
      for (size_t n : {1u, 7u, 16u, 17u, 33u, 70u}) {
        const size_t a_stride = k + 3, c_stride = n + 2;
        const std::vector<float> a = RandomFloats(m * a_stride, static_cast<uint32_t>(m + k));
        const std::vector<float> bt = RandomFloats(n * (k + 1), static_cast<uint32_t>(k * 3 + n));
        std::vector<float> b(k * n);
        for (size_t l = 0; l < k; ++l) {
          for (size_t j = 0; j < n; ++j) b[l * n + j] = bt[j * (k + 1) + l];
        }
        const std::vector<float> c0 = RandomFloats(m * c_stride, 21);
        std::vector<float> want = c0, got = c0;
        GemmAccumulate(a.data(), a_stride, m, b.data(), n, k, n, want.data(), c_stride);
        std::vector<float> packed(GemmPackedFloats(k, n), -1.0f);
        const size_t cut = std::min(n, width);
        GemmPackTransposed(bt.data(), k + 1, cut, k, packed.data());
        GemmPackTransposed(bt.data() + cut * (k + 1), k + 1, n - cut, k, packed.data() + cut * k);
        GemmAccumulatePacked(a.data(), a_stride, m, packed.data(), k, n, got.data(), c_stride);
        ASSERT_EQ(got, want) << "m=" << m << " k=" << k << " n=" << n;
      }
    }
  }
}

TEST_P(CpuKernelsTest, DispatchesToTheTargetUnderTest) {
  EXPECT_STREQ(ChosenTarget(), hwy::TargetName(GetParam()));
}

// Per 32 elements, and per 256 (the super-block weight formats' activations: one scale for 8
// blocks of 32, stored per block).
TEST_P(CpuKernelsTest, ActivationQuantizationIsBitIdenticalToScalar) {
  const std::pair<size_t, size_t> cases[] = {{32, 32}, {64, 32}, {576, 32}, {256, 256}, {768, 256}};
  for (auto [n, group] : cases) {
    std::vector<float> x = RandomFloats(n, static_cast<uint32_t>(n), 3.0f);
    // An all-zero block (scale 0 per 32; per 256 a block whose q are all 0), an all-zero group
    // (scale 0 per 256), and exact ties at half steps.
    if (n >= 64) {
      for (size_t j = 32; j < 64; ++j) x[j] = 0.0f;
    }
    if (n >= 768) {
      for (size_t j = 256; j < 512; ++j) x[j] = 0.0f;
    }
    x[0] = 127.0f;
    x[1] = 0.5f;
    x[2] = 1.5f;
    x[3] = -2.5f;
    const size_t nb = n / 32;
    std::vector<int8_t> qs(n), qs_ref(n);
    std::vector<float> d(nb), d_ref(nb), s(nb), s_ref(nb);
    std::vector<int32_t> isums(nb, -1);
    std::vector<int16_t> half_sums(2 * nb, -1);
    QuantizeActivationsSimd(x.data(), n, group, qs.data(), d.data(), s.data(), 1, isums.data(),
                            half_sums.data());
    scalar::QuantizeActivations(x.data(), n, group, qs_ref.data(), d_ref.data(), s_ref.data(), 1);
    EXPECT_EQ(qs, qs_ref) << "n=" << n << " group=" << group;
    EXPECT_EQ(d, d_ref) << "n=" << n << " group=" << group;
    EXPECT_EQ(s, s_ref) << "n=" << n << " group=" << group;
    for (size_t b = 0; b < nb; ++b) {
      int32_t half[2] = {0, 0};
      for (size_t j = 0; j < 32; ++j) half[j / 16] += qs_ref[b * 32 + j];
      EXPECT_EQ(isums[b], half[0] + half[1]) << "n=" << n << " block " << b;
      EXPECT_EQ(half_sums[2 * b], half[0]) << "n=" << n << " block " << b;
      EXPECT_EQ(half_sums[2 * b + 1], half[1]) << "n=" << n << " block " << b;
    }
    // The definition itself: one d per group, the group's largest |x| at q = +-127,
    // |x - d q| <= d / 2 and q in [-127, 127].
    for (size_t g = 0; g < n; g += group) {
      float amax = 0.0f;
      for (size_t j = g; j < g + group; ++j) {
        amax = std::max(amax, std::fabs(x[j]));
        EXPECT_EQ(d[j / 32], d[g / 32]) << "n=" << n << " element " << j;
      }
      EXPECT_EQ(d[g / 32], amax / 127.0f) << "n=" << n << " group at " << g;
    }
    for (size_t j = 0; j < n; ++j) {
      ASSERT_LE(std::abs(int{qs[j]}), 127);
      EXPECT_LE(std::fabs(x[j] - d[j / 32] * qs[j]), d[j / 32] * 0.5001f) << j;
    }
  }
}

struct MatMulShape {
  size_t rows, cols, tokens;
};

// Shapes with odd rows and token counts around the kernels' tile sizes (2 or 4 rows, 4 tokens,
// panels from 8 tokens).
const MatMulShape kShapes[] = {
    {1, 32, 1}, {7, 64, 1}, {13, 96, 7}, {33, 128, 64}, {5, 256, 3}, {67, 160, 1}, {9, 64, 5},
    // Many tokens (Q4 weight panels), with a column count that leaves a 32-byte tail after
    // 64-byte steps, and a single-block row.
    {13, 96, 9}, {6, 32, 8}, {3, 224, 17},
};

TEST_P(CpuKernelsTest, MatMulMatchesScalarTwinForEveryType) {
  for (size_t num_threads : {1u, 2u}) {
    ThreadPool pool(num_threads);
    for (TensorType type : kAllTypes) {
      for (const MatMulShape& shape : kShapes) {
        // Float types also get a column count that is no multiple of any vector width;
        // 256-element formats get whole super-blocks.
        const size_t cols = !IsQuantized(type) ? shape.cols + 5
                            : Traits(type).block_elems > 32 ? RoundCols(type, shape.cols * 4)
                                                            : shape.cols;
        Weights w = MakeWeights(type, shape.rows, cols, static_cast<uint32_t>(shape.rows * 31 + cols));
        std::vector<float> x = RandomFloats(shape.tokens * cols, static_cast<uint32_t>(cols));
        std::vector<float> out(shape.tokens * shape.rows, -1.0f), ref(out.size());
        MatMul(w.view, x.data(), shape.tokens, out.data(), pool);
        scalar::MatMul(w.view, x.data(), shape.tokens, ref.data());
        const std::vector<double> mag = AbsProductSums(w.view, x.data(), shape.tokens);
        const double num_terms = NumSumTerms(type, cols);
        for (size_t i = 0; i < out.size(); ++i) {
          const double tol = 2 * (num_terms + 2) * FLT_EPSILON * mag[i] * 1.05 + 1e-30;
          ASSERT_NEAR(out[i], ref[i], tol)
              << Traits(type).name << " rows=" << shape.rows << " cols=" << cols
              << " tokens=" << shape.tokens << " threads=" << num_threads << " token "
              << i / shape.rows << " row " << i % shape.rows;
        }
      }
    }
  }
}

// Q4_K, Q5_K and Q6_K run a direct kernel below 8 tokens and a panel kernel from 8 on; both
// compute each output lane with the same integers and float operations (matmul_unpacked.cc),
// so a token's outputs are the same bits alone as in a batch of any size, on every target.
// So does IQ4_NL without packed weights, in the direct kernel of matmul_quant-inl.h (QuantTile
// and DecodeRows). Random blocks, so every q, scale and sign pattern occurs; 13 rows leave a
// 1-row remainder after the 3-row panel tiles, 11 tokens two single tokens after the 3-token
// tiles.
TEST_P(CpuKernelsTest, KQuantTokenGivesTheSameBitsAloneAndInABatch) {
  const size_t rows = 13, cols = 512;
  for (size_t num_threads : {1u, 2u}) {
    ThreadPool pool(num_threads);
    for (TensorType type :
         {TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_NL}) {
      Weights w = MakeWeights(type, rows, cols, 77);
      for (size_t tokens : {8u, 11u}) {
        const std::vector<float> x = RandomFloats(tokens * cols, 78);
        std::vector<float> batch(tokens * rows);
        MatMul(w.view, x.data(), tokens, batch.data(), pool);
        for (size_t t = 0; t < tokens; ++t) {
          std::vector<float> alone(rows);
          MatMul(w.view, x.data() + t * cols, 1, alone.data(), pool);
          for (size_t r = 0; r < rows; ++r) {
            ASSERT_EQ(alone[r], batch[t * rows + r])
                << Traits(type).name << " tokens " << tokens << " token " << t << " row " << r
                << " threads " << num_threads;
          }
        }
      }
    }
  }
}

// The K-quant kernels multiply sub-block scales inside 16-bit pair sums (pmaddubsw, then
// pmaddwd by the scale), the IQ4 kernels multiply signed grid values, and the packed AVX2
// kernels of the 32-element types add four (Q5) or eight (Q4) groups' pair sums in int16: blocks
// at the largest q and scales (every byte 0xFF; Q6_K also at q - 32 = -32 with scale -128; IQ4
// at the grid's -127) against activations that all quantize to +127 or -127 must neither
// saturate nor overflow, on every target, for 1 to 9 tokens (direct kernel and panel), in the
// file's layout (5 rows: tile remainders) and repacked (16 rows) where the target packs.
TEST_P(CpuKernelsTest, QuantMatMulDoesNotSaturateOnExtremeBlocks) {
  ThreadPool pool(1);
  const size_t cols = 512;
  for (TensorType type : {TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                          TensorType::kQ6_K, TensorType::kIQ4_XS, TensorType::kIQ4_NL, TensorType::kQ4_0,
                          TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1}) {
    for (int pattern = 0; pattern < 2; ++pattern) {
      // Pattern 1: Q6_K at q - 32 = -32 with scale -128; IQ4_XS (every byte 0) at the grid's
      // -127 with scale -32, IQ4_NL at the grid's -127.
      if (pattern == 1 && type != TensorType::kQ6_K && type != TensorType::kIQ4_XS &&
          type != TensorType::kIQ4_NL) {
        continue;
      }
      for (size_t rows : {5u, 16u}) {
        const size_t row_bytes = RowBytes(type, cols);
        const size_t block_bytes = Traits(type).block_bytes;
        std::vector<uint8_t> bytes(rows * row_bytes, pattern == 0 ? 0xFF : 0x00);
        for (size_t b = 0; b < bytes.size() / block_bytes; ++b) {
          uint8_t* blk = bytes.data() + b * block_bytes;
          if (type == TensorType::kQ6_K && pattern == 1) {
            std::memset(blk + 192, 0x80, 16);  // scales = -128 (ql, qh stay 0: q - 32 = -32)
          }
          const uint16_t one = F32ToF16(1.0f);
          for (size_t offset : HalfScaleOffsets(type)) std::memcpy(blk + offset, &one, 2);
        }
        MatView w{type, bytes.data(), rows, cols, row_bytes};
        const std::unique_ptr<PackedMatrix> packed = rows == 16 ? PackMatrix(w, &pool) : nullptr;
        if (rows == 16 && packed == nullptr) continue;  // this target keeps the file's layout
        w.packed = packed.get();
        for (size_t tokens : {1u, 2u, 3u, 9u}) {
          std::vector<float> x(tokens * cols);
          for (size_t i = 0; i < x.size(); ++i) x[i] = (i / cols) % 2 == 0 ? 1.0f : -1.0f;
          std::vector<float> out(tokens * rows), ref(tokens * rows);
          MatMul(w, x.data(), tokens, out.data(), pool);
          scalar::MatMul(w, x.data(), tokens, ref.data());
          const std::vector<double> mag = AbsProductSums(w, x.data(), tokens);
          for (size_t i = 0; i < out.size(); ++i) {
            const double tol = 2 * (NumSumTerms(type, cols) + 2) * FLT_EPSILON * mag[i] * 1.05;
            ASSERT_NEAR(out[i], ref[i], tol) << Traits(type).name << " pattern " << pattern << " rows "
                                             << rows << " tokens " << tokens << " output " << i;
          }
        }
      }
    }
  }
}

// Every type with a packed layout.
constexpr TensorType kPackedTypes[] = {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ4_1,
                                       TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kF16,
                                       TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K,
                                       TensorType::kIQ4_NL, TensorType::kIQ4_XS, TensorType::kQ2_K,
                                       TensorType::kQ3_K};

// Weights repacked at load (PackMatrix): the same products as the scalar twin, for token
// counts on both sides of the kernel's tile (up to 8 tokens, then 8 + the rest), on every
// target; targets without packed kernels must say so and fall back.
TEST_P(CpuKernelsTest, PackedMatMulMatchesScalarTwin) {
  const MatMulShape shapes[] = {{16, 32, 1},  {32, 576, 1}, {48, 96, 2},  {16, 192, 3},
                                {16, 64, 4},  {32, 128, 5}, {16, 64, 7},  {48, 192, 8},
                                {16, 576, 9}, {16, 32, 33}, {64, 1536, 1}, {32, 64, 16},
                                {512, 64, 1}, {512, 64, 9}};  // enough tiles for every thread
  const MatMulShape k_shapes[] = {{16, 256, 1}, {32, 512, 2}, {16, 768, 3}, {48, 256, 8},
                                  {16, 2048, 9}, {32, 256, 17}, {512, 256, 1}, {512, 512, 9}};
  const bool avx512 = GetParam() == HWY_AVX3 || GetParam() == HWY_AVX3_DL;
  for (size_t num_threads : {1u, 2u}) {
    ThreadPool pool(num_threads);
    for (TensorType type : kPackedTypes) {
      // AVX2: Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and Q5_K (matmul_packed.cc says why not the others).
      const bool avx2_packed = type == TensorType::kQ4_0 || type == TensorType::kQ4_1 ||
                               type == TensorType::kQ5_0 || type == TensorType::kQ5_1 ||
                               type == TensorType::kQ4_K || type == TensorType::kQ5_K;
      const bool expect_packed = (avx512 && (!PackedKernelNeedsVnni(type) || GetParam() == HWY_AVX3_DL)) ||
                                 (GetParam() == HWY_AVX2 && avx2_packed);
      EXPECT_EQ(HasPackedKernel(type), expect_packed) << Traits(type).name;
      const bool k_quant = Traits(type).block_elems == 256;
      for (const MatMulShape& shape : k_quant ? std::span<const MatMulShape>(k_shapes)
                                              : std::span<const MatMulShape>(shapes)) {
        Weights w = MakeWeights(type, shape.rows, shape.cols,
                                static_cast<uint32_t>(shape.rows * 17 + shape.cols));
        const std::unique_ptr<PackedMatrix> packed = PackMatrix(w.view, &pool);
        ASSERT_EQ(packed != nullptr, expect_packed) << Traits(type).name;
        MatView view = w.view;
        view.packed = packed.get();
        for (size_t r : {size_t{0}, shape.rows / 2 + 1, shape.rows - 1}) {  // lanes 0, middle, 15
          std::vector<float> row(shape.cols), row_ref(shape.cols);
          DequantizeRow(view, r, row.data());
          scalar::DequantizeRow(w.view, r, row_ref.data());
          ASSERT_EQ(row, row_ref) << Traits(type).name << " row " << r;
        }
        std::vector<float> x = RandomFloats(shape.tokens * shape.cols, static_cast<uint32_t>(shape.cols + 3));
        std::vector<float> out(shape.tokens * shape.rows, -1.0f), ref(out.size());
        MatMul(view, x.data(), shape.tokens, out.data(), pool);
        scalar::MatMul(w.view, x.data(), shape.tokens, ref.data());
        const std::vector<double> mag = AbsProductSums(w.view, x.data(), shape.tokens);
        const double num_terms = NumSumTerms(type, shape.cols);
        for (size_t i = 0; i < out.size(); ++i) {
          const double tol = 2 * (num_terms + 2) * FLT_EPSILON * mag[i] * 1.05 + 1e-30;
          ASSERT_NEAR(out[i], ref[i], tol)
              << Traits(type).name << " rows=" << shape.rows << " cols=" << shape.cols
              << " tokens=" << shape.tokens << " threads=" << num_threads << " token "
              << i / shape.rows << " row " << i % shape.rows;
        }
      }
    }
  }
}

TEST_P(CpuKernelsTest, PackMatrixRefusesShapesThatDoNotTile) {
  for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_1, TensorType::kF16}) {
    EXPECT_EQ(PackMatrix(MakeWeights(type, 6, 64, 1).view), nullptr);   // rows % 16
    EXPECT_EQ(PackMatrix(MakeWeights(type, 24, 96, 1).view), nullptr);  // rows % 16
  }
  EXPECT_EQ(PackMatrix(MakeWeights(TensorType::kF16, 16, 40, 1).view), nullptr);   // cols % 32
  EXPECT_EQ(PackMatrix(MakeWeights(TensorType::kBF16, 16, 64, 1).view), nullptr);  // no kernel
  EXPECT_EQ(PackMatrix(MakeWeights(TensorType::kF32, 16, 64, 1).view), nullptr);   // no kernel
}

// The layout is packed tile by tile over a pool's threads: the bytes must not depend on how
// many threads there are or how the tiles fall to them (a derived blob written by one load is
// mapped by another); and they decode to the file's rows on any CPU.
TEST(PackMatrixLayoutTest, ParallelPackingWritesTheSameBytesAsSerial) {
  ThreadPool pool2(2), pool3(3);
  for (TensorType type : kPackedTypes) {
    const bool k_quant = Traits(type).block_elems == 256;
    for (auto [rows, cols] : {std::pair<size_t, size_t>{16, 32}, {48, 96}, {208, 576}}) {
      if (k_quant) cols *= 8;
      Weights w = MakeWeights(type, rows, cols, static_cast<uint32_t>(rows + cols));
      ASSERT_TRUE(HasPackedLayout(w.view));
      const std::unique_ptr<PackedMatrix> serial = PackMatrixLayout(w.view);
      ASSERT_EQ(serial->bytes, PackedBytes(w.view));
      // The same bytes per weight, but 6-bit sub-block scales (and minimums) take a byte each:
      // per super-block, Q4_K's and Q5_K's 12 bytes become 16, Q3_K's 12 16, IQ4_XS's 6 8.
      const size_t grown = type == TensorType::kQ4_K || type == TensorType::kQ5_K ||
                                   type == TensorType::kQ3_K
                               ? 4
                           : type == TensorType::kIQ4_XS ? 2
                                                         : 0;
      const size_t scale_bytes = rows * (cols / 256) * grown;
      ASSERT_EQ(serial->bytes, rows * RowBytes(type, cols) + scale_bytes);
      for (ThreadPool* pool : {&pool2, &pool3}) {
        const std::unique_ptr<PackedMatrix> parallel = PackMatrixLayout(w.view, pool);
        ASSERT_EQ(parallel->bytes, serial->bytes);
        ASSERT_EQ(std::memcmp(parallel->data, serial->data, serial->bytes), 0)
            << Traits(type).name << " " << rows << " x " << cols << " on " << pool->num_threads()
            << " threads";
      }
      // In bands of 2 tiles (the loader's band_done releases each band's file pages): the same
      // bytes, and the bands reported in order, covering every row once.
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2}) {
        std::vector<std::pair<size_t, size_t>> bands;
        const std::unique_ptr<PackedMatrix> banded = PackMatrixLayout(
            w.view, pool, [&](size_t begin, size_t end) { bands.emplace_back(begin, end); },
            /*band_bytes=*/2 * 16 * w.view.row_bytes);
        ASSERT_EQ(std::memcmp(banded->data, serial->data, serial->bytes), 0)
            << Traits(type).name << " " << rows << " x " << cols << " in bands";
        ASSERT_EQ(bands.size(), (rows / 16 + 1) / 2);
        for (size_t b = 0; b < bands.size(); ++b) {
          EXPECT_EQ(bands[b].first, 32 * b);
          EXPECT_EQ(bands[b].second, std::min(rows, 32 * (b + 1)));
        }
      }
      for (size_t r : {size_t{0}, rows / 2 + 1, rows - 1}) {
        std::vector<float> row(cols), row_ref(cols);
        DequantizePackedRow(*serial, r, row.data());
        scalar::DequantizeRow(w.view, r, row_ref.data());
        ASSERT_EQ(row, row_ref) << Traits(type).name << " row " << r;
      }
    }
  }
  EXPECT_FALSE(HasPackedLayout(MakeWeights(TensorType::kQ4_1, 24, 64, 1).view));  // rows % 16
  EXPECT_FALSE(HasPackedLayout(MakeWeights(TensorType::kF16, 16, 40, 1).view));   // cols % 32
  EXPECT_FALSE(HasPackedLayout(MakeWeights(TensorType::kBF16, 16, 64, 1).view));  // no layout
}

TEST_P(CpuKernelsTest, QuantizedMatMulMatchesFloatMathWithinActivationQuantizationError) {
  ThreadPool pool(2);
  for (TensorType type : kAllTypes) {
    if (!IsQuantized(type)) continue;
    const size_t rows = 37, cols = 256, tokens = 6;
    Weights w = MakeWeights(type, rows, cols, 99);
    std::vector<float> x = RandomFloats(tokens * cols, 5);
    std::vector<float> out(tokens * rows);
    MatMul(w.view, x.data(), tokens, out.data(), pool);
    std::vector<float> row(cols);
    double err_sq = 0, ref_sq = 0;
    for (size_t r = 0; r < rows; ++r) {
      scalar::DequantizeRow(w.view, r, row.data());
      for (size_t t = 0; t < tokens; ++t) {
        const float* xt = &x[t * cols];
        double ref = 0, mag = 0, bound = 0;
        const size_t group = ActivationGroupElems(type);  // elements per activation scale
        for (size_t b = 0; b < cols / group; ++b) {
          double amax = 0, wsum = 0;
          for (size_t j = b * group; j < b * group + group; ++j) {
            ref += double{row[j]} * xt[j];
            mag += std::fabs(double{row[j]} * xt[j]);
            amax = std::max(amax, std::fabs(double{xt[j]}));
            wsum += std::fabs(double{row[j]});
          }
          bound += amax / 127 / 2 * wsum;
        }
        const double got = out[t * rows + r];
        const double tol = bound * 1.001 + 2 * (cols / 16.0 + 2) * FLT_EPSILON * mag * 1.05;
        ASSERT_NEAR(got, ref, tol) << Traits(type).name << " token " << t << " row " << r;
        err_sq += (got - ref) * (got - ref);
        ref_sq += ref * ref;
      }
    }
    // Typical error is far below the worst case: the rounding errors are independent, so the
    // relative RMS error is about (1/127) / sqrt(12) * (a few) -- well under 1 %.
    EXPECT_LT(std::sqrt(err_sq / ref_sq), 0.01) << Traits(type).name;
  }
}

TEST_P(CpuKernelsTest, DequantizeRowIsBitIdenticalToScalar) {
  for (TensorType type : kAllTypes) {
    const size_t cols = !IsQuantized(type) ? 101 : RoundCols(type, 512);
    Weights w = MakeWeights(type, 5, cols, 3);
    std::vector<float> out(cols), ref(cols);
    for (size_t r = 0; r < 5; ++r) {
      DequantizeRow(w.view, r, out.data());
      scalar::DequantizeRow(w.view, r, ref.data());
      EXPECT_EQ(out, ref) << Traits(type).name << " row " << r;
    }
  }
}

const size_t kLengths[] = {1, 7, 32, 100, 1027};

TEST_P(CpuKernelsTest, DotMatchesScalar) {
  for (size_t n : kLengths) {
    std::vector<float> a = RandomFloats(n, 1), b = RandomFloats(n, 2);
    double mag = 0;
    for (size_t i = 0; i < n; ++i) mag += std::fabs(double{a[i]} * b[i]);
    EXPECT_NEAR(Dot(a.data(), b.data(), n), scalar::Dot(a.data(), b.data(), n),
                2 * (n + 2) * FLT_EPSILON * mag)
        << "n=" << n;
  }
}

TEST_P(CpuKernelsTest, AxpyAndAddInPlaceMatchScalar) {
  for (size_t n : kLengths) {
    std::vector<float> x = RandomFloats(n, 3), y = RandomFloats(n, 4);
    std::vector<float> y_axpy = y, y_axpy_ref = y, y_add = y, y_add_ref = y;
    Axpy(0.37f, x.data(), n, y_axpy.data());
    scalar::Axpy(0.37f, x.data(), n, y_axpy_ref.data());
    AddInPlace(x.data(), n, y_add.data());
    scalar::AddInPlace(x.data(), n, y_add_ref.data());
    EXPECT_EQ(y_add, y_add_ref) << "n=" << n;  // one IEEE addition per element either way
    for (size_t i = 0; i < n; ++i) {
      // FMA rounds once where the twin rounds twice: one ULP of each part.
      const float tol = FLT_EPSILON * (std::fabs(y[i]) + std::fabs(0.37f * x[i])) * 2;
      ASSERT_NEAR(y_axpy[i], y_axpy_ref[i], tol) << "n=" << n << " i=" << i;
    }
  }
}

// The F16 and Q8_0 KV-cache kernels against their scalar twins: the same element values in
// both (fp16 widening and d * q are exact in f32), so only the summation order differs.
TEST_P(CpuKernelsTest, AttentionKernelsOverF16AndQ8CachesMatchScalar) {
  for (size_t num_q : {1u, 3u, 4u, 5u}) {
    for (size_t n : {1u, 7u, 16u, 19u}) {
      for (size_t head_dim : {32u, 64u, 128u}) {
        const size_t q_stride = head_dim + 1, s_stride = n + 2, o_stride = head_dim + 2;
        const std::vector<float> q = RandomFloats(num_q * q_stride, 21);
        const std::vector<float> p = RandomFloats(num_q * s_stride, 22);
        const std::vector<float> out0 = RandomFloats(num_q * o_stride, 23);
        // F16: keys transposed with a row stride past n, values in rows.
        const size_t kt_stride = n + 3, v_stride = head_dim + 5;
        std::vector<uint16_t> kt(head_dim * kt_stride), v(n * v_stride);
        const std::vector<float> kf = RandomFloats(kt.size(), 24), vf = RandomFloats(v.size(), 25);
        F32ToF16Row(kf.data(), kf.size(), kt.data());
        F32ToF16Row(vf.data(), vf.size(), v.data());
        // Q8_0: rows of head_dim values, two heads' worth of blocks apart.
        const size_t q8_stride = 2 * head_dim / 32;
        std::vector<BlockQ8_0> k8(n * q8_stride), v8(n * q8_stride);
        const std::vector<float> k8f = RandomFloats(n * q8_stride * 32, 26);
        const std::vector<float> v8f = RandomFloats(n * q8_stride * 32, 27);
        QuantizeRow(TensorType::kQ8_0, k8f.data(), k8f.size(), k8.data());
        QuantizeRow(TensorType::kQ8_0, v8f.data(), v8f.size(), v8.data());

        const std::string where = "num_q=" + std::to_string(num_q) + " n=" + std::to_string(n) +
                                  " head_dim=" + std::to_string(head_dim);
        // |scores| and |out| are at most head_dim (n) products of values below 1 in magnitude.
        const float score_tol = 2 * (head_dim + 2) * FLT_EPSILON * head_dim * 0.125f * 2;
        const float out_tol = 2 * (n + 2) * FLT_EPSILON * (n + 1) * 2;
        auto expect_scores = [&](const std::vector<float>& got, const std::vector<float>& want,
                                 const char* type) {
          for (size_t g = 0; g < num_q; ++g) {
            for (size_t j = 0; j < s_stride; ++j) {
              const size_t i = g * s_stride + j;
              if (j >= n) {
                ASSERT_EQ(got[i], -7.0f) << type << " wrote past n, " << where;
              } else {
                ASSERT_NEAR(got[i], want[i], score_tol) << type << " " << where << " g=" << g << " j=" << j;
              }
            }
          }
        };
        auto expect_out = [&](const std::vector<float>& got, const std::vector<float>& want,
                              const char* type) {
          for (size_t g = 0; g < num_q; ++g) {
            for (size_t d = 0; d < o_stride; ++d) {
              const size_t i = g * o_stride + d;
              if (d >= head_dim) {
                ASSERT_EQ(got[i], out0[i]) << type << " wrote past head_dim, " << where;
              } else {
                ASSERT_NEAR(got[i], want[i], out_tol) << type << " " << where << " g=" << g << " d=" << d;
              }
            }
          }
        };
        std::vector<float> scores(num_q * s_stride, -7.0f), scores_ref = scores;
        AttentionScoresF16(q.data(), q_stride, num_q, kt.data(), kt_stride, n, head_dim, 0.125f,
                           scores.data(), s_stride);
        scalar::AttentionScoresF16(q.data(), q_stride, num_q, kt.data(), kt_stride, n, head_dim,
                                   0.125f, scores_ref.data(), s_stride);
        expect_scores(scores, scores_ref, "F16");
        std::fill(scores.begin(), scores.end(), -7.0f);
        std::fill(scores_ref.begin(), scores_ref.end(), -7.0f);
        AttentionScoresQ8(q.data(), q_stride, num_q, k8.data(), q8_stride, n, head_dim, 0.125f,
                          scores.data(), s_stride);
        scalar::AttentionScoresQ8(q.data(), q_stride, num_q, k8.data(), q8_stride, n, head_dim,
                                  0.125f, scores_ref.data(), s_stride);
        expect_scores(scores, scores_ref, "Q8_0");

        std::vector<float> out = out0, out_ref = out0;
        AttentionValuesF16(p.data(), s_stride, num_q, v.data(), v_stride, n, head_dim, out.data(), o_stride);
        scalar::AttentionValuesF16(p.data(), s_stride, num_q, v.data(), v_stride, n, head_dim,
                                   out_ref.data(), o_stride);
        expect_out(out, out_ref, "F16");
        out = out_ref = out0;
        AttentionValuesQ8(p.data(), s_stride, num_q, v8.data(), q8_stride, n, head_dim, out.data(), o_stride);
        scalar::AttentionValuesQ8(p.data(), s_stride, num_q, v8.data(), q8_stride, n, head_dim,
                                  out_ref.data(), o_stride);
        expect_out(out, out_ref, "Q8_0");
        // The scalar twin itself against plain float math on the dequantised rows.
        std::vector<float> row(head_dim);
        for (size_t j = 0; j < n; ++j) {
          DequantizeRow(MatView{TensorType::kQ8_0, k8.data(), n, head_dim, q8_stride * sizeof(BlockQ8_0)},
                        j, row.data());
          float dot = 0;
          for (size_t d = 0; d < head_dim; ++d) dot += q[d] * row[d];
          ASSERT_NEAR(scores_ref[j], 0.125f * dot, score_tol) << where << " j=" << j;
        }
      }
    }
  }
}

// Grouped attention over one KV block: head counts around the 4-head register tile, key
// counts around the vector width (full vectors plus a scalar tail), head dims with a tail.
TEST_P(CpuKernelsTest, AttentionKernelsMatchScalar) {
  for (size_t num_q : {1u, 3u, 4u, 5u, 8u}) {
    for (size_t n : {1u, 7u, 16u, 19u, 32u}) {
      for (size_t head_dim : {64u, 37u}) {
       for (size_t kt_pad : {3u, 17u}) {  // rows too short / long enough for a full vector
        const size_t kt_stride = n + kt_pad, q_stride = head_dim + 1, s_stride = n + 2;
        const std::vector<float> q = RandomFloats(num_q * q_stride, 11);
        const std::vector<float> kt = RandomFloats(head_dim * kt_stride, 12);
        std::vector<float> scores(num_q * s_stride, -7.0f), scores_ref = scores;
        AttentionScores(q.data(), q_stride, num_q, kt.data(), kt_stride, n, head_dim, 0.125f,
                        scores.data(), s_stride);
        scalar::AttentionScores(q.data(), q_stride, num_q, kt.data(), kt_stride, n, head_dim,
                                0.125f, scores_ref.data(), s_stride);
        for (size_t g = 0; g < num_q; ++g) {
          for (size_t j = 0; j < s_stride; ++j) {
            const size_t i = g * s_stride + j;
            if (j >= n) {
              ASSERT_EQ(scores[i], -7.0f) << "wrote past n";
              continue;
            }
            double mag = 0;
            for (size_t d = 0; d < head_dim; ++d) mag += std::fabs(q[g * q_stride + d] * kt[d * kt_stride + j]);
            ASSERT_NEAR(scores[i], scores_ref[i], 2 * (head_dim + 2) * FLT_EPSILON * mag * 0.125)
                << "num_q=" << num_q << " n=" << n << " head_dim=" << head_dim << " g=" << g << " j=" << j;
          }
        }
        const size_t v_stride = head_dim + 5, o_stride = head_dim + 2;
        const std::vector<float> p = RandomFloats(num_q * s_stride, 13);
        const std::vector<float> v = RandomFloats(n * v_stride, 14);
        std::vector<float> out = RandomFloats(num_q * o_stride, 15), out_ref = out;
        const std::vector<float> out0 = out;
        AttentionValues(p.data(), s_stride, num_q, v.data(), v_stride, n, head_dim, out.data(), o_stride);
        scalar::AttentionValues(p.data(), s_stride, num_q, v.data(), v_stride, n, head_dim,
                                out_ref.data(), o_stride);
        for (size_t g = 0; g < num_q; ++g) {
          for (size_t d = 0; d < o_stride; ++d) {
            const size_t i = g * o_stride + d;
            if (d >= head_dim) {
              ASSERT_EQ(out[i], out0[i]) << "wrote past head_dim";
              continue;
            }
            double mag = std::fabs(out0[i]);
            for (size_t j = 0; j < n; ++j) mag += std::fabs(p[g * s_stride + j] * v[j * v_stride + d]);
            ASSERT_NEAR(out[i], out_ref[i], 2 * (n + 2) * FLT_EPSILON * mag)
                << "num_q=" << num_q << " n=" << n << " head_dim=" << head_dim << " g=" << g << " d=" << d;
          }
        }
       }
      }
    }
  }
}

TEST_P(CpuKernelsTest, RmsNormMatchesScalarAlsoInPlace) {
  for (size_t n : kLengths) {
    std::vector<float> x = RandomFloats(n, 5, 4.0f), weight = RandomFloats(n, 6);
    std::vector<float> out(n), ref(n);
    RmsNorm(x.data(), weight.data(), n, 1e-5f, out.data());
    scalar::RmsNorm(x.data(), weight.data(), n, 1e-5f, ref.data());
    for (size_t i = 0; i < n; ++i) {
      // The sum of squares may differ by n * eps relative; sqrt halves it; 3 more roundings.
      const float tol = std::fabs(ref[i]) * FLT_EPSILON * (n + 8);
      ASSERT_NEAR(out[i], ref[i], tol) << "n=" << n << " i=" << i;
    }
    std::vector<float> in_place = x;
    RmsNorm(in_place.data(), weight.data(), n, 1e-5f, in_place.data());
    EXPECT_EQ(in_place, out) << "n=" << n;
  }
}

TEST_P(CpuKernelsTest, SoftmaxMatchesScalar) {
  for (size_t n : kLengths) {
    std::vector<float> x = RandomFloats(n, 7, 5.0f);
    x[0] = -1e30f;  // exp underflows to 0
    std::vector<float> out = x, ref = x;
    Softmax(out.data(), n);
    scalar::Softmax(ref.data(), n);
    double sum = 0;
    for (size_t i = 0; i < n; ++i) {
      ASSERT_NEAR(out[i], ref[i], ref[i] * (2e-6f + (n + 4) * FLT_EPSILON) + 1e-38f)
          << "n=" << n << " i=" << i;
      sum += out[i];
    }
    EXPECT_NEAR(sum, 1.0, 1e-5) << "n=" << n;
  }
}

TEST_P(CpuKernelsTest, SwiGluMatchesScalarIncludingLargeMagnitudes) {
  for (size_t n : kLengths) {
    std::vector<float> gate = RandomFloats(n, 8, 6.0f), up = RandomFloats(n, 9);
    gate[0] = -200.0f;  // exp(200) overflows: silu -> -0
    if (n > 1) gate[1] = 200.0f;  // silu(g) = g
    std::vector<float> out(n), ref(n);
    SwiGlu(gate.data(), up.data(), n, out.data());
    scalar::SwiGlu(gate.data(), up.data(), n, ref.data());
    for (size_t i = 0; i < n; ++i) {
      ASSERT_NEAR(out[i], ref[i], std::fabs(ref[i]) * 2e-6f + 1e-30f)
          << "n=" << n << " i=" << i << " gate " << gate[i];
    }
    std::vector<float> aliased = gate;
    SwiGlu(aliased.data(), up.data(), n, aliased.data());
    EXPECT_EQ(aliased, out) << "n=" << n;
  }
}

// s = sigmoid(g) is within ~2e-6 relative of std's, and 1 + g (1 - s) cancels near g = -1.28,
// so dgate is allowed 4e-6 of |da up s| (1 + |g|); dup = da g s a relative 2e-6. Past the
// exp clamp (g = -200) both are 0 in std and a denormal in SIMD.
TEST_P(CpuKernelsTest, SwiGluBackwardMatchesScalarWhereverTheSplitFalls) {
  for (size_t n : kLengths) {
    std::vector<float> gate = RandomFloats(n, 13, 6.0f), up = RandomFloats(n, 14), da = RandomFloats(n, 15);
    gate[0] = -200.0f;
    if (n > 1) gate[1] = 200.0f;
    std::vector<float> dg(n), du(n), ref_dg(n), ref_du(n);
    SwiGluBackward(gate.data(), up.data(), da.data(), n, dg.data(), du.data());
    scalar::SwiGluBackward(gate.data(), up.data(), da.data(), n, ref_dg.data(), ref_du.data());
    for (size_t i = 0; i < n; ++i) {
      const float s = 1.0f / (1.0f + std::exp(-gate[i]));
      const float dg_tol = std::fabs(da[i] * up[i] * s) * (1.0f + std::fabs(gate[i])) * 4e-6f + 1e-30f;
      ASSERT_NEAR(dg[i], ref_dg[i], dg_tol) << "n=" << n << " i=" << i << " gate " << gate[i];
      ASSERT_NEAR(du[i], ref_du[i], std::fabs(ref_du[i]) * 2e-6f + 1e-30f) << "n=" << n << " i=" << i;
    }
    // Split [0, n) at an odd place: each element comes out the same as in one call.
    const size_t cut = n / 3 + (n > 2 ? 1 : 0);
    std::vector<float> split_dg(n), split_du(n);
    SwiGluBackward(gate.data(), up.data(), da.data(), cut, split_dg.data(), split_du.data());
    SwiGluBackward(gate.data() + cut, up.data() + cut, da.data() + cut, n - cut, split_dg.data() + cut,
                   split_du.data() + cut);
    EXPECT_EQ(split_dg, dg) << "n=" << n;
    EXPECT_EQ(split_du, du) << "n=" << n;
  }
}

// Highway's Tanh is within 4 ULP of std::tanh (about 2.4e-7 near +-1), and 1 + tanh cancels
// for negative g, so beside the relative 2e-6 we allow 8 FLT_EPSILON of |0.5 g up|.
TEST_P(CpuKernelsTest, GeGluMatchesScalarIncludingLargeMagnitudes) {
  for (size_t n : kLengths) {
    std::vector<float> gate = RandomFloats(n, 11, 6.0f), up = RandomFloats(n, 12);
    gate[0] = -1e20f;  // g^3 overflows: gelu -> -0
    if (n > 1) gate[1] = 1e20f;  // gelu(g) = g
    std::vector<float> out(n), ref(n);
    GeGlu(gate.data(), up.data(), n, out.data());
    scalar::GeGlu(gate.data(), up.data(), n, ref.data());
    for (size_t i = 0; i < n; ++i) {
      const float tol = std::fabs(ref[i]) * 2e-6f + std::fabs(0.5f * gate[i] * up[i]) * 8 * FLT_EPSILON + 1e-30f;
      ASSERT_NEAR(out[i], ref[i], tol) << "n=" << n << " i=" << i << " gate " << gate[i];
    }
    // The saturated ends are exact: tanh is +-1 there.
    EXPECT_EQ(out[0], ref[0]) << "n=" << n;
    if (n > 1) {
      EXPECT_EQ(out[1], ref[1]) << "n=" << n;
    }
    std::vector<float> aliased = gate;
    GeGlu(aliased.data(), up.data(), n, aliased.data());
    EXPECT_EQ(aliased, out) << "n=" << n;
  }
}

TEST_P(CpuKernelsTest, HalfRowConversionsMatchScalarBitForBit) {
  std::vector<float> x = RandomFloats(1027, 10, 100.0f);
  // Ties, subnormals, overflow, infinities and signed zero.
  const float specials[] = {0.0f, -0.0f, 65504.0f, 65520.0f, 1e6f, -1e6f, 6e-8f, 3e-8f,
                            1e-10f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, INFINITY, -INFINITY};
  for (size_t i = 0; i < std::size(specials); ++i) x[i * 3] = specials[i];
  std::vector<uint16_t> h(x.size()), h_ref(x.size());
  F32ToF16Row(x.data(), x.size(), h.data());
  scalar::F32ToF16Row(x.data(), x.size(), h_ref.data());
  EXPECT_EQ(h, h_ref);

  // Every half value, NaNs compared as NaN.
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> f(all.size()), f_ref(all.size());
  F16ToF32Row(all.data(), all.size(), f.data());
  scalar::F16ToF32Row(all.data(), all.size(), f_ref.data());
  for (size_t i = 0; i < all.size(); ++i) {
    if (std::isnan(f_ref[i])) {
      ASSERT_TRUE(std::isnan(f[i])) << std::hex << i;
    } else {
      ASSERT_EQ(FloatToBits(f[i]), FloatToBits(f_ref[i])) << std::hex << i;
    }
  }
}

}  // namespace
}  // namespace llmasos::cpu
