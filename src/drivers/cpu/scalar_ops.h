// Plain C++ twins of the SIMD kernels in ops.h: one loop per formula, no vectors, no threads.
// They are the test oracle for every SIMD target, so they compute the same formulas in the
// same number format as the SIMD code (in particular the same 8-bit activation quantization);
// only the order of float additions differs.
#ifndef LLMASOS_DRIVERS_CPU_SCALAR_OPS_H_
#define LLMASOS_DRIVERS_CPU_SCALAR_OPS_H_

#include <cstddef>
#include <cstdint>

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/ops.h"

namespace llmasos::cpu::scalar {

// Activations quantized for integer dot products against quantized weights: per group of
// `group` values (32, or 256 for the super-block weight formats: ActivationGroupElems)
// x[j] ~= d * qs[j], d = max|x| / 127 over the group, qs[j] = round-to-nearest-even(x[j] / d)
// as x[j] * (1 / d), in [-127, 127] (all zero when the group is zero). d is stored once per
// block of 32 (a group's blocks repeat it), and per block of 32
// s = d * sum(qs), the block's sum as the integers see it; it carries Q4_1's `min * sum(x)`
// term (and Q4_0's `-8 * d_w * sum(x)`) without a second pass over the block.
//   qs: [n];  d: [n / 32];  s[b * s_stride], b < n / 32.  REQUIRES: n % group == 0,
//   group 32 or 256.
void QuantizeActivations(const float* x, size_t n, size_t group, int8_t* qs, float* d,
                         float* s, size_t s_stride);

// Rows [row_begin, row_end) of the product of quantized weights w with activations x already
// quantized: out[t * w.rows + r]. REQUIRES: IsBlockQuantized(w.type).
void QuantizedRows(const MatView& w, const QuantizedActivations& x, size_t row_begin,
                   size_t row_end, float* out);

// Same contracts as the functions of the same names in ops.h.
void MatMul(const MatView& w, const float* x, size_t num_tokens, float* out);
void DequantizeRow(const MatView& w, size_t row_idx, float* out);
void RmsNorm(const float* x, const float* weight, size_t n, float eps, float* out);
float ExpMinusMax(float* x, size_t n, float* max);
void Softmax(float* x, size_t n);
void SwiGlu(const float* gate, const float* up, size_t n, float* out);
void GeGlu(const float* gate, const float* up, size_t n, float* out);
void SwiGluBackward(const float* gate, const float* up, const float* da, size_t n, float* dgate,
                    float* dup);
void AddInPlace(const float* x, size_t n, float* y);
float Dot(const float* a, const float* b, size_t n);
void Axpy(float a, const float* x, size_t n, float* y);
void AttentionScores(const float* q, size_t q_stride, size_t num_q, const float* kt,
                     size_t kt_stride, size_t n, size_t head_dim, float scale, float* scores,
                     size_t scores_stride);
void AttentionValues(const float* p, size_t p_stride, size_t num_q, const float* v,
                     size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride);
void AttentionScoresF16(const float* q, size_t q_stride, size_t num_q, const uint16_t* kt,
                        size_t kt_stride, size_t n, size_t head_dim, float scale, float* scores,
                        size_t scores_stride);
void AttentionValuesF16(const float* p, size_t p_stride, size_t num_q, const uint16_t* v,
                        size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride);
void AttentionScoresQ8(const float* q, size_t q_stride, size_t num_q, const BlockQ8_0* k,
                       size_t k_stride, size_t n, size_t head_dim, float scale, float* scores,
                       size_t scores_stride);
void AttentionValuesQ8(const float* p, size_t p_stride, size_t num_q, const BlockQ8_0* v,
                       size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride);
// As in gemm.h.
void GemmAccumulate(const float* a, size_t a_stride, size_t m, const float* b, size_t b_stride,
                    size_t k, size_t n, float* c, size_t c_stride);
void F32ToF16Row(const float* x, size_t n, uint16_t* out);
void F16ToF32Row(const uint16_t* x, size_t n, float* out);

}  // namespace llmasos::cpu::scalar

#endif  // LLMASOS_DRIVERS_CPU_SCALAR_OPS_H_
