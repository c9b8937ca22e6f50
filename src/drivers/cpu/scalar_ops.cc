#include "drivers/cpu/scalar_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "drivers/cpu/quant_unpack.h"
#include "util/fp16.h"
#include "util/logging.h"

namespace llmasos::cpu::scalar {
namespace {

constexpr size_t kQBlock = 32;  // elements per quantization block (all quantized types)

// Integer dot product of one block: sum_j w[j] * x[j].
template <typename W>
int32_t BlockDot(const W* w, const int8_t* x) {
  int32_t sum = 0;
  for (size_t j = 0; j < kQBlock; ++j) sum += static_cast<int32_t>(w[j]) * x[j];
  return sum;
}

// Unpacks a Q4 block's 16 bytes into 32 values in [0, 15] (low nibbles first).
void UnpackNibbles(const uint8_t* qs, uint8_t* q) {
  for (size_t j = 0; j < kQBlock / 2; ++j) {
    q[j] = qs[j] & 0x0F;
    q[j + kQBlock / 2] = qs[j] >> 4;
  }
}

// sum over blocks of W row `row` times quantized activations of one token.
// Q4_0 is treated as Q4_1 with min = -8 d, the form the SIMD kernels use.
//   xs[b * xs_stride]: block b's activation sum.
float QuantizedRowDot(const MatView& w, size_t row, const int8_t* xq, const float* xd,
                      const float* xs, size_t xs_stride) {
  const uint8_t* row_ptr = static_cast<const uint8_t*>(w.data) + row * w.row_bytes;
  const size_t num_blocks = w.cols / kQBlock;
  float acc = 0.0f;
  for (size_t b = 0; b < num_blocks; ++b) {
    const int8_t* x = xq + b * kQBlock;
    switch (w.type) {
      case TensorType::kQ8_0: {
        const auto* blk = reinterpret_cast<const BlockQ8_0*>(row_ptr) + b;
        const float dw = F16ToF32(blk->d);
        acc += (dw * xd[b]) * static_cast<float>(BlockDot(blk->qs, x));
        break;
      }
      case TensorType::kQ4_0: {
        const auto* blk = reinterpret_cast<const BlockQ4_0*>(row_ptr) + b;
        uint8_t q[kQBlock];
        UnpackNibbles(blk->qs, q);
        const float dw = F16ToF32(blk->d);
        acc += (dw * xd[b]) * static_cast<float>(BlockDot(q, x)) + (-8.0f * dw) * xs[b * xs_stride];
        break;
      }
      case TensorType::kQ4_1: {
        const auto* blk = reinterpret_cast<const BlockQ4_1*>(row_ptr) + b;
        uint8_t q[kQBlock];
        UnpackNibbles(blk->qs, q);
        const float dw = F16ToF32(blk->d);
        const float mw = F16ToF32(blk->m);
        acc += (dw * xd[b]) * static_cast<float>(BlockDot(q, x)) + mw * xs[b * xs_stride];
        break;
      }
      case TensorType::kQ5_0:
      case TensorType::kQ5_1: {
        // As the SIMD kernel: unsigned 5-bit q, Q5_0's offset as the minimum -16 d.
        Unpacked32 u;
        UnpackBlock32(w.type, row_ptr, b, u);
        const bool q5_0 = w.type == TensorType::kQ5_0;
        int32_t dot = 0;
        for (size_t j = 0; j < kQBlock; ++j) dot += (int32_t{u.q[j]} + (q5_0 ? 16 : 0)) * x[j];
        const float dw = u.scale[0];
        const float mw = q5_0 ? -16.0f * dw : u.min[0];
        acc += (dw * xd[b]) * static_cast<float>(dot) + mw * xs[b * xs_stride];
        break;
      }
      default: {
        // The other formats through their common form (quant_unpack.h), per half of 16:
        // (scale d_x) * sum q_w q_x + (min d_x) * sum q_x.
        Unpacked32 u;
        UnpackBlock32(w.type, row_ptr, b, u);
        for (size_t h = 0; h < 2; ++h) {
          int32_t dot = 0, sum = 0;
          for (size_t j = 16 * h; j < 16 * h + 16; ++j) {
            dot += int32_t{u.q[j]} * x[j];
            sum += x[j];
          }
          acc += (u.scale[h] * xd[b]) * static_cast<float>(dot) +
                 (u.min[h] * xd[b]) * static_cast<float>(sum);
        }
        break;
      }
    }
  }
  return acc;
}

}  // namespace

void QuantizeActivations(const float* x, size_t n, size_t group, int8_t* qs, float* d,
                         float* s, size_t s_stride) {
  CHECK(group == kQBlock || group == kSuperBlockElems) << "activation group " << group;
  CHECK_EQ(n % group, 0u);
  for (size_t g = 0; g < n; g += group) {
    float amax = 0.0f;
    for (size_t j = g; j < g + group; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    for (size_t b = g / kQBlock; b < (g + group) / kQBlock; ++b) {
      int32_t sum = 0;
      for (size_t j = b * kQBlock; j < b * kQBlock + kQBlock; ++j) {
        // In range by construction for finite input; the clamp keeps the conversion defined
        // when a broken model feeds inf or NaN (the SIMD path saturates instead).
        float v = x[j] * inv;
        v = std::isnan(v) ? 0.0f : std::clamp(v, -127.0f, 127.0f);
        const int32_t q = static_cast<int32_t>(std::nearbyint(v));
        qs[j] = static_cast<int8_t>(q);
        sum += q;
      }
      d[b] = scale;
      s[b * s_stride] = scale * static_cast<float>(sum);
    }
  }
}

void QuantizedRows(const MatView& w, const QuantizedActivations& x, size_t row_begin,
                   size_t row_end, float* out) {
  const size_t num_blocks = w.cols / kQBlock;
  for (size_t t = 0; t < x.num_tokens; ++t) {
    for (size_t r = row_begin; r < row_end; ++r) {
      out[t * w.rows + r] = QuantizedRowDot(w, r, x.qs + t * w.cols, x.d + t * num_blocks,
                                            x.s + t, x.num_tokens);
    }
  }
}

void MatMul(const MatView& w, const float* x, size_t num_tokens, float* out) {
  if (IsBlockQuantized(w.type)) {
    const size_t num_blocks = w.cols / kQBlock;
    const size_t group = ActivationGroupElems(w.type);
    std::vector<int8_t> xq(num_tokens * w.cols);
    std::vector<float> xd(num_tokens * num_blocks), xs(num_tokens * num_blocks);
    for (size_t t = 0; t < num_tokens; ++t) {
      QuantizeActivations(x + t * w.cols, w.cols, group, &xq[t * w.cols], &xd[t * num_blocks],
                          &xs[t], num_tokens);
    }
    QuantizedRows(w,
                  {xq.data(), xd.data(), xs.data(), /*isums=*/nullptr, /*half_sums=*/nullptr,
                   num_tokens, w.cols, group},
                  0, w.rows, out);
    return;
  }
  std::vector<float> row(w.cols);
  for (size_t r = 0; r < w.rows; ++r) {
    scalar::DequantizeRow(w, r, row.data());
    for (size_t t = 0; t < num_tokens; ++t) {
      out[t * w.rows + r] = scalar::Dot(row.data(), x + t * w.cols, w.cols);
    }
  }
}

void DequantizeRow(const MatView& w, size_t row_idx, float* out) {
  CHECK_LT(row_idx, w.rows);
  const uint8_t* row = static_cast<const uint8_t*>(w.data) + row_idx * w.row_bytes;
  switch (w.type) {
    case TensorType::kF32:
      for (size_t i = 0; i < w.cols; ++i) out[i] = reinterpret_cast<const float*>(row)[i];
      return;
    case TensorType::kF16:
      for (size_t i = 0; i < w.cols; ++i) out[i] = F16ToF32(reinterpret_cast<const uint16_t*>(row)[i]);
      return;
    case TensorType::kBF16:
      for (size_t i = 0; i < w.cols; ++i) out[i] = Bf16ToF32(reinterpret_cast<const uint16_t*>(row)[i]);
      return;
    case TensorType::kQ8_0:
      for (size_t b = 0; b < w.cols / kQBlock; ++b) {
        const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
        const float d = F16ToF32(blk.d);
        for (size_t j = 0; j < kQBlock; ++j) out[b * kQBlock + j] = d * blk.qs[j];
      }
      return;
    case TensorType::kQ4_0:
      for (size_t b = 0; b < w.cols / kQBlock; ++b) {
        const auto& blk = reinterpret_cast<const BlockQ4_0*>(row)[b];
        const float d = F16ToF32(blk.d);
        uint8_t q[kQBlock];
        UnpackNibbles(blk.qs, q);
        for (size_t j = 0; j < kQBlock; ++j) out[b * kQBlock + j] = d * (static_cast<int>(q[j]) - 8);
      }
      return;
    case TensorType::kQ4_1:
      for (size_t b = 0; b < w.cols / kQBlock; ++b) {
        const auto& blk = reinterpret_cast<const BlockQ4_1*>(row)[b];
        const float d = F16ToF32(blk.d);
        const float m = F16ToF32(blk.m);
        uint8_t q[kQBlock];
        UnpackNibbles(blk.qs, q);
        for (size_t j = 0; j < kQBlock; ++j) out[b * kQBlock + j] = d * q[j] + m;
      }
      return;
    default:
      CHECK(IsBlockQuantized(w.type)) << "unsupported tensor type " << static_cast<uint32_t>(w.type);
      DequantizeQuantRow(w.type, row, w.cols, out);
      return;
  }
}

void RmsNorm(const float* x, const float* weight, size_t n, float eps, float* out) {
  float sum_sq = 0.0f;
  for (size_t i = 0; i < n; ++i) sum_sq += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum_sq / static_cast<float>(n) + eps);
  for (size_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

float ExpMinusMax(float* x, size_t n, float* max_out) {
  float max = x[0];
  for (size_t i = 1; i < n; ++i) max = std::max(max, x[i]);
  float sum = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  *max_out = max;
  return sum;
}

void Softmax(float* x, size_t n) {
  if (n == 0) return;
  float max;
  const float inv = 1.0f / ExpMinusMax(x, n, &max);
  for (size_t i = 0; i < n; ++i) x[i] *= inv;
}

void SwiGlu(const float* gate, const float* up, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void SwiGluBackward(const float* gate, const float* up, const float* da, size_t n, float* dgate,
                    float* dup) {
  for (size_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float s = 1.0f / (1.0f + std::exp(-g));
    dgate[i] = da[i] * up[i] * s * (1.0f + g * (1.0f - s));
    dup[i] = da[i] * (g * s);
  }
}

void GeGlu(const float* gate, const float* up, size_t n, float* out) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (size_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * up[i];
  }
}

void AddInPlace(const float* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

float Dot(const float* a, const float* b, size_t n) {
  float sum = 0.0f;
  for (size_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void Axpy(float a, const float* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}


void AttentionValues(const float* p, size_t p_stride, size_t num_q, const float* v,
                     size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride) {
  for (size_t g = 0; g < num_q; ++g) {
    for (size_t j = 0; j < n; ++j) Axpy(p[g * p_stride + j], v + j * v_stride, head_dim, out + g * out_stride);
  }
}

void GemmAccumulate(const float* a, size_t a_stride, size_t m, const float* b, size_t b_stride,
                    size_t k, size_t n, float* c, size_t c_stride) {
  for (size_t i = 0; i < m; ++i) {
    for (size_t j = 0; j < n; ++j) {
      float sum = c[i * c_stride + j];
      for (size_t l = 0; l < k; ++l) sum += a[i * a_stride + l] * b[l * b_stride + j];
      c[i * c_stride + j] = sum;
    }
  }
}

namespace {

// The attention twins over any cache layout: key(j, d) and value(j, d) read element d of
// cached key / value j as a float.
template <class Key>
void ScoresOf(const float* q, size_t q_stride, size_t num_q, size_t n, size_t head_dim, float scale,
              float* scores, size_t scores_stride, const Key& key) {
  for (size_t g = 0; g < num_q; ++g) {
    for (size_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (size_t d = 0; d < head_dim; ++d) sum += q[g * q_stride + d] * key(j, d);
      scores[g * scores_stride + j] = scale * sum;
    }
  }
}

template <class Value>
void ValuesOf(const float* p, size_t p_stride, size_t num_q, size_t n, size_t head_dim, float* out,
              size_t out_stride, const Value& value) {
  for (size_t g = 0; g < num_q; ++g) {
    for (size_t j = 0; j < n; ++j) {
      for (size_t d = 0; d < head_dim; ++d) out[g * out_stride + d] += p[g * p_stride + j] * value(j, d);
    }
  }
}

// Element d of a row of Q8_0 blocks.
float Q8Element(const BlockQ8_0* row, size_t d) {
  const BlockQ8_0& b = row[d / BlockQ8_0::kBlockElems];
  return F16ToF32(b.d) * static_cast<float>(b.qs[d % BlockQ8_0::kBlockElems]);
}

}  // namespace

void AttentionScores(const float* q, size_t q_stride, size_t num_q, const float* kt,
                     size_t kt_stride, size_t n, size_t head_dim, float scale, float* scores,
                     size_t scores_stride) {
  ScoresOf(q, q_stride, num_q, n, head_dim, scale, scores, scores_stride,
           [&](size_t j, size_t d) { return kt[d * kt_stride + j]; });
}

void AttentionScoresF16(const float* q, size_t q_stride, size_t num_q, const uint16_t* kt,
                        size_t kt_stride, size_t n, size_t head_dim, float scale, float* scores,
                        size_t scores_stride) {
  ScoresOf(q, q_stride, num_q, n, head_dim, scale, scores, scores_stride,
           [&](size_t j, size_t d) { return F16ToF32(kt[d * kt_stride + j]); });
}

void AttentionValuesF16(const float* p, size_t p_stride, size_t num_q, const uint16_t* v,
                        size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride) {
  ValuesOf(p, p_stride, num_q, n, head_dim, out, out_stride,
           [&](size_t j, size_t d) { return F16ToF32(v[j * v_stride + d]); });
}

void AttentionScoresQ8(const float* q, size_t q_stride, size_t num_q, const BlockQ8_0* k,
                       size_t k_stride, size_t n, size_t head_dim, float scale, float* scores,
                       size_t scores_stride) {
  ScoresOf(q, q_stride, num_q, n, head_dim, scale, scores, scores_stride,
           [&](size_t j, size_t d) { return Q8Element(k + j * k_stride, d); });
}

void AttentionValuesQ8(const float* p, size_t p_stride, size_t num_q, const BlockQ8_0* v,
                       size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride) {
  ValuesOf(p, p_stride, num_q, n, head_dim, out, out_stride,
           [&](size_t j, size_t d) { return Q8Element(v + j * v_stride, d); });
}

void F32ToF16Row(const float* x, size_t n, uint16_t* out) {
  for (size_t i = 0; i < n; ++i) out[i] = F32ToF16(x[i]);
}

void F16ToF32Row(const uint16_t* x, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = F16ToF32(x[i]);
}

}  // namespace llmasos::cpu::scalar
