// A float GEMM for the training pass (model/train/backward_ops.cc): the products of
// activations with dequantized weight tiles, forward and backward.
//
// Thread safety: a function of its arguments; the caller splits the rows between threads.
#ifndef LLMASOS_DRIVERS_CPU_GEMM_H_
#define LLMASOS_DRIVERS_CPU_GEMM_H_

#include <cstddef>

namespace llmasos::cpu {

// c[i * c_stride + j] += sum_{l < k} a[i * a_stride + l] * b[l * b_stride + j]
//   for i < m, j < n; nothing past column n of c is written.
// The same sum as AttentionValues (ops.h), for long operands: a register block of 6 rows of a
// by two vectors of b's columns (12 accumulators: AVX2's 16 registers hold them with the two b
// vectors and a broadcast), walked panel by panel with k cut into blocks whose b panel stays
// in L1 while every row of a passes over it.
// Each element is c plus its k products added in order of l, one fused multiply-add each (on
// every SIMD target; the scalar target rounds each product): the same bits however a caller
// splits the rows and columns of c between calls or threads.
void GemmAccumulate(const float* a, size_t a_stride, size_t m, const float* b, size_t b_stride,
                    size_t k, size_t n, float* c, size_t c_stride);

// The same product with b given packed once for many calls, instead of the copy GemmAccumulate
// makes of each b panel in every call: b [k, n] cut into panels of GemmPanelColumns() columns
// (two vectors of the dispatched SIMD target), each panel [k, panel columns] row-major and
// contiguous, the panels one after another, the last one's columns past n zero.
size_t GemmPanelColumns();
// Floats the packed form of a [k, n] b takes: k * (n rounded up to GemmPanelColumns()).
size_t GemmPackedFloats(size_t k, size_t n);
// packed = the packed form of b = bt^T, bt [n, k] with row stride bt_stride. Columns [j0, j1)
// of b, j0 a multiple of GemmPanelColumns(), pack on their own into packed + j0 * k, so
// threads may split the panels between them.
void GemmPackTransposed(const float* bt, size_t bt_stride, size_t n, size_t k, float* packed);
// GemmAccumulate(a, a_stride, m, b, n, k, n, c, c_stride) with b in packed form: the same
// bits in every element of c, and nothing past column n written.
void GemmAccumulatePacked(const float* a, size_t a_stride, size_t m, const float* packed, size_t k,
                          size_t n, float* c, size_t c_stride);

}  // namespace llmasos::cpu

#endif  // LLMASOS_DRIVERS_CPU_GEMM_H_
