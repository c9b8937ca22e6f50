// QuantizeRow against the block formulas: decoding what it wrote (by the formulas written out
// here, independent of the kernels' DequantizeRow) gives back the input within half a
// quantization step, and hand-computed blocks come out bit for bit.
#include <cmath>
#include <string>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "drivers/cpu/ops.h"
#include "util/fp16.h"

namespace llmasos::cpu {
namespace {

std::vector<float> RandomRow(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

TEST(QuantizeRowTest, Q8_0RoundTripWithinHalfStep) {
  std::vector<float> x = RandomRow(128, 1);
  std::vector<BlockQ8_0> q(4);
  QuantizeRow(TensorType::kQ8_0, x.data(), x.size(), q.data());
  for (size_t b = 0; b < 4; ++b) {
    float amax = 0;
    for (size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = F16ToF32(q[b].d);
    EXPECT_NEAR(d, amax / 127, amax / 127 * 1e-3);
    for (size_t j = 0; j < 32; ++j) {
      EXPECT_NEAR(d * q[b].qs[j], x[b * 32 + j], d * 0.5f + 1e-3f * amax) << "block " << b << " j " << j;
    }
  }
}

TEST(QuantizeRowTest, Q4_0HandComputedBlock) {
  // Values -8 .. 7 twice: the largest magnitude is -8, so d = -8 / -8 = 1 and q = x + 8.
  std::vector<float> x(32);
  for (size_t j = 0; j < 32; ++j) x[j] = static_cast<float>(static_cast<int>(j % 16) - 8);
  BlockQ4_0 q;
  QuantizeRow(TensorType::kQ4_0, x.data(), 32, &q);
  EXPECT_EQ(F16ToF32(q.d), 1.0f);
  for (size_t j = 0; j < 16; ++j) {
    EXPECT_EQ(q.qs[j] & 0xF, j) << j;
    EXPECT_EQ(q.qs[j] >> 4, j) << j;
  }
}

TEST(QuantizeRowTest, Q4_0AndQ4_1RoundTripWithinHalfStep) {
  std::vector<float> x = RandomRow(64, 2);
  std::vector<BlockQ4_0> q0(2);
  std::vector<BlockQ4_1> q1(2);
  QuantizeRow(TensorType::kQ4_0, x.data(), x.size(), q0.data());
  QuantizeRow(TensorType::kQ4_1, x.data(), x.size(), q1.data());
  for (size_t b = 0; b < 2; ++b) {
    const float d0 = F16ToF32(q0[b].d);
    const float d1 = F16ToF32(q1[b].d);
    const float m1 = F16ToF32(q1[b].m);
    for (size_t j = 0; j < 32; ++j) {
      const int n0 = j < 16 ? q0[b].qs[j] & 0xF : q0[b].qs[j - 16] >> 4;
      const int n1 = j < 16 ? q1[b].qs[j] & 0xF : q1[b].qs[j - 16] >> 4;
      const float x0 = x[b * 32 + j];
      // Q4_0 clamps the top code (the +max side has only 7 steps), so allow one full step.
      EXPECT_NEAR(d0 * (n0 - 8), x0, std::fabs(d0) * 1.0f + 1e-3f);
      EXPECT_NEAR(d1 * n1 + m1, x0, d1 * 0.5f + 1e-2f);
    }
  }
}

TEST(QuantizeRowTest, FloatTypesConvertEachElement) {
  std::vector<float> x = {1.0f, -2.5f, 65504.0f, 1e-3f, 3.14159f};
  std::vector<float> f32(5);
  std::vector<uint16_t> f16(5);
  std::vector<uint16_t> bf16(5);
  QuantizeRow(TensorType::kF32, x.data(), 5, f32.data());
  QuantizeRow(TensorType::kF16, x.data(), 5, f16.data());
  QuantizeRow(TensorType::kBF16, x.data(), 5, bf16.data());
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(f32[i], x[i]);
    EXPECT_NEAR(F16ToF32(f16[i]), x[i], std::fabs(x[i]) * 1e-3f);
    EXPECT_NEAR(Bf16ToF32(bf16[i]), x[i], std::fabs(x[i]) * 8e-3f);
  }
}

TEST(QuantizeRowTest, ZeroBlockHasZeroScale) {
  std::vector<float> x(32, 0.0f);
  BlockQ8_0 q8;
  BlockQ4_1 q41;
  QuantizeRow(TensorType::kQ8_0, x.data(), 32, &q8);
  QuantizeRow(TensorType::kQ4_1, x.data(), 32, &q41);
  EXPECT_EQ(F16ToF32(q8.d), 0.0f);
  for (int8_t v : q8.qs) EXPECT_EQ(v, 0);
  EXPECT_EQ(F16ToF32(q41.m), 0.0f);
}

// The formats added for real files: what QuantizeRow writes decodes (DequantizeRow, checked
// against gguf-py in tests/e2e) to the input within each format's typical error. Relative RMS
// error on Gaussian rows with outliers; the bounds sit about 10 % above the values measured
// (Q5_0 0.042, Q5_1 0.037, Q4_K 0.071, Q5_K 0.035, Q6_K 0.018), so a quantizer that wastes its
// bits fails.
TEST(QuantizeRowTest, NewFormatsRoundTripWithinTheirTypicalError) {
  struct Case {
    TensorType type;
    double max_rel_rms;
  };
  const Case cases[] = {{TensorType::kQ5_0, 0.046}, {TensorType::kQ5_1, 0.041},
                        {TensorType::kQ4_K, 0.078}, {TensorType::kQ5_K, 0.039},
                        {TensorType::kQ6_K, 0.0195}};
  const size_t n = 4096;
  std::vector<float> x = RandomRow(n, 7);
  for (size_t i = 0; i < n; i += 512) x[i] += 3.0f;  // outliers, as real weights have
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(Traits(c.type).name));
    ASSERT_TRUE(CanQuantizeRow(c.type));
    std::vector<uint8_t> bytes(RowBytes(c.type, n));
    QuantizeRow(c.type, x.data(), n, bytes.data());
    std::vector<float> back(n);
    DequantizeRow(MatView{c.type, bytes.data(), 1, n, bytes.size()}, 0, back.data());
    double err = 0, ref = 0;
    for (size_t i = 0; i < n; ++i) {
      err += (back[i] - x[i]) * (back[i] - x[i]);
      ref += x[i] * x[i];
    }
    const double rel = std::sqrt(err / ref);
    RecordProperty(std::string(Traits(c.type).name), std::to_string(rel));
    EXPECT_LT(rel, c.max_rel_rms);
    EXPECT_GT(rel, 0.0);
  }
  EXPECT_FALSE(CanQuantizeRow(TensorType::kQ2_K));
  EXPECT_FALSE(CanQuantizeRow(TensorType::kIQ4_XS));
}

}  // namespace
}  // namespace llmasos::cpu
