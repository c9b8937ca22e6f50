// The training pass's kernels: forward pieces that keep what their backward needs, and the
// backward of each operation of the llama-family forward. Each is checked against finite
// differences of its forward in backward_ops_test.cc. Math is float32; the inner loops call
// the CPU driver's SIMD kernels (Dot, Axpy, DequantizeRow).
//
// Conventions: row-major; "dy" is the gradient of the loss with respect to an operation's
// output; functions named *Backward ADD their input gradients into the dx buffers given
// (so the contributions of several consumers of one tensor sum without a copy).
#ifndef LLMASOS_MODEL_TRAIN_BACKWARD_OPS_H_
#define LLMASOS_MODEL_TRAIN_BACKWARD_OPS_H_

#include <cstddef>
#include <cstdint>

#include "drivers/cpu/ops.h"
#include "model/arch/llama_model.h"
#include "util/thread_pool.h"

namespace llmasos::train {

// y = x * inv * w with inv = 1 / sqrt(mean(x^2) + eps); returns inv. y may not alias x.
float RmsNormForward(const float* x, const float* w, size_t n, float eps, float* y);
// dx += d/dx of sum(dy * y), w frozen:  inv * (dy*w) - x * inv^3 / n * sum(dy*w*x).
void RmsNormBackward(const float* x, const float* w, float inv, const float* dy, size_t n,
                     float* dx);

// a = silu(g) * u is cpu::SwiGlu, its backward cpu::SwiGluBackward.

// Rotates the first rope_dims dims of one head vector by the angles of cos/sin (as the
// inference forward does); inverse = true rotates by minus the angles, which is the
// rotation's transpose and so its backward.
void Rope(arch::RopeMode mode, const float* cos, const float* sin, size_t rope_dims, bool inverse,
          float* x);

// Shapes of causal grouped-query attention over one sequence of num_tokens tokens:
//   q, dq:  [num_tokens, num_heads * head_dim]  (row stride q_stride)
//   k, v, dk, dv: [num_tokens, num_kv_heads * head_dim]  (row stride kv_stride)
// One call handles one KV head `kvh` and its group of query heads, so calls for different
// KV heads (or sequences) touch disjoint memory and may run in parallel.
struct AttentionShape {
  size_t num_tokens = 0;
  size_t group = 1;  // query heads per KV head
  size_t head_dim = 0;
  size_t q_stride = 0;
  size_t kv_stride = 0;
  float scale = 1.0f;  // 1 / sqrt(head_dim)
};
// Floats of scratch AttentionForward and AttentionBackward need for a sequence of num_tokens.
size_t AttentionScratchFloats(size_t head_dim, size_t num_tokens);
// out (like q) = softmax(scale q k^T + causal mask) v, for the group's heads, a block of
// query rows at a time with GEMMs (cpu::GemmAccumulate).
// scratch: AttentionScratchFloats(head_dim, num_tokens) floats.
void AttentionForward(const AttentionShape& s, size_t kvh, const float* q, const float* k,
                      const float* v, float* out, float* scratch);
// Given dout, adds dq, dk, dv (recomputing the probabilities).
// scratch: AttentionScratchFloats(head_dim, num_tokens) floats.
void AttentionBackward(const AttentionShape& s, size_t kvh, const float* q, const float* k,
                       const float* v, const float* dout, float* dq, float* dk, float* dv,
                       float* scratch);

// Cross-entropy of one row of logits against `target`: returns -log softmax(logits)[target],
// and overwrites logits with grad_scale * (softmax(logits) - onehot(target)).
double CrossEntropyForwardBackward(float* logits, size_t vocab, size_t target, float grad_scale);

// out[t, r] = sum_c W[r, c] * x[t, c], as cpu::MatMulFloatActivations computes it (float32
// activations against dequantized weights), but with the weights dequantized a tile of rows
// at a time, each tile once per call, and multiplied by a register-blocked GEMM
// (cpu::GemmAccumulate): several times faster on the training pass's token counts. Sums run
// in another order; the result does not depend on the pool's thread count.
//   x: [num_tokens, W.cols]   out: [num_tokens, W.rows]
void MatMulTiled(const cpu::MatView& w, const float* x, size_t num_tokens, float* out,
                 ThreadPool& pool);

// dx[t, :] += sum_r dy[t, r] * W[r, :] for t < num_tokens: the backward of cpu::MatMul with
// respect to its input, W read in its stored type (each element dequantized once per call)
// and multiplied by cpu::GemmAccumulate; the result does not depend on the thread count.
//   dy: [num_tokens, W.rows]   dx: [num_tokens, W.cols]
void MatMulTransposedAdd(const cpu::MatView& w, const float* dy, size_t num_tokens, float* dx,
                         ThreadPool& pool);

// out[c * rows + r] = in[r * in_stride + c] for r < rows, c < cols: out is in^T, [cols, rows].
void Transpose(const float* in, size_t in_stride, size_t rows, size_t cols, float* out);

// A float32 matrix [rows, cols] as a MatView, for cpu::MatMulFloatActivations.
inline cpu::MatView FloatMatrix(const float* data, size_t rows, size_t cols) {
  return cpu::MatView{cpu::TensorType::kF32, data, rows, cols, cols * sizeof(float)};
}

}  // namespace llmasos::train

#endif  // LLMASOS_MODEL_TRAIN_BACKWARD_OPS_H_
