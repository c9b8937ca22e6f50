// The CPU driver's kernels: the operations the forward pass is made of. Each picks its SIMD
// target once per process (Highway dynamic dispatch: SSE4, AVX2, AVX-512 ...), never per call
// inside a loop. Every SIMD kernel has a scalar twin in scalar_ops.h used as the test oracle.
//
// Layout conventions (row-major throughout):
//   a weight matrix W has `rows` output features and `cols` input features; row r is stored
//   contiguously as RowBytes(type, cols) bytes. This is GGUF's layout: a tensor with dims
//   [ne0 = cols, ne1 = rows].
//   activations are float32, [num_tokens, features].
//
// Thread safety: kernels are pure functions of their arguments; those taking a ThreadPool
// use it for the duration of the call (see ThreadPool's own rule).
#ifndef LLMASOS_DRIVERS_CPU_OPS_H_
#define LLMASOS_DRIVERS_CPU_OPS_H_

#include <cstddef>
#include <cstdint>
#include <functional>

#include <memory>

#include "drivers/cpu/tensor_type.h"
#include "hwy/aligned_allocator.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace llmasos::cpu {

struct PackedMatrix;

// A read-only view of a weight matrix as stored in the model file (not owned).
struct MatView {
  TensorType type;
  const void* data;  // rows * row_bytes bytes
  size_t rows;
  size_t cols;
  size_t row_bytes;  // RowBytes(type, cols)
  // The same matrix repacked for this CPU (PackMatrix), or null. When set, MatMul and
  // DequantizeRow read it instead of `data`; the exact path always reads `data`.
  const PackedMatrix* packed = nullptr;
};

// A quantized weight matrix repacked at load time into the layout the CPU's fastest kernels
// stream (matmul_packed.cc): rows in tiles of 16, one row per 32-bit lane, each block's values
// in groups of 4 elements, its scales after its values. Same bytes per weight as the file's
// layout (Q4_K, Q5_K, Q3_K and IQ4_XS: 2.8%, 2.3%, 3.6% and 1.5% more, their 6-bit scales and
// minimums stored as bytes).
// The layout does not depend on the CPU; kPackedLayoutVersion names it (bump it when the bytes
// PackMatrix writes change, so stored copies of the old layout are rebuilt).
inline constexpr uint32_t kPackedLayoutVersion = 6;  // 3: Q5_K; 4: Q5_0, Q5_1; 5: IQ4; 6: Q2_K, Q3_K

struct PackedMatrix {
  TensorType type;
  size_t rows;
  size_t cols;
  size_t bytes;
  // `bytes` bytes, 64-byte aligned: `storage` when PackMatrix made them, or a mapped copy
  // stored earlier (model/arch/packed_blob.h) that outlives this view.
  const uint8_t* data = nullptr;
  hwy::AlignedFreeUniquePtr<uint8_t[]> storage;
};

// Whether `w` has a packed layout (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, F16, Q2_K .. Q6_K, IQ4_NL or IQ4_XS with
// rows % 16 == 0 and cols % 32 == 0), whatever this CPU's kernels; PackedBytes is its size then.
bool HasPackedLayout(const MatView& w);
size_t PackedBytes(const MatView& w);

// Repacks `w` for the SIMD target chosen on this CPU; nullptr when that target has no packed
// kernel for w's type (Q4_0, Q4_1, Q5_0, Q5_1, the K-quants Q2_K to Q6_K and F16 need AVX-512,
// Q8_0, IQ4_NL and IQ4_XS AVX512-VNNI) or w's shape does not tile (rows % 16 or cols % 32 non-zero). Reads every byte of w once. With a pool, tiles
// are packed in parallel over its threads (the same bytes as without one).
std::unique_ptr<PackedMatrix> PackMatrix(const MatView& w, ThreadPool* pool = nullptr);
// As PackMatrix, but for any `w` with a packed layout even where this CPU has no kernel to
// multiply it (MatMul then reads the file's layout; DequantizeRow reads this one): what tests
// of the layout and of its stored copies run on every machine. REQUIRES: HasPackedLayout(w).
// The rows are packed in bands of about band_bytes of w, one after another; band_done(begin,
// end), when set, is called after each, in order, once no more of rows [begin, end) will be
// read: the loader releases a large matrix's file pages band by band, so that the matrix is
// not resident twice over (file and packed copy) while it is packed.
inline constexpr size_t kPackBandBytes = size_t{32} << 20;
std::unique_ptr<PackedMatrix> PackMatrixLayout(
    const MatView& w, ThreadPool* pool = nullptr,
    const std::function<void(size_t row_begin, size_t row_end)>& band_done = {},
    size_t band_bytes = kPackBandBytes);
// Whether the target chosen on this CPU multiplies w's type in the packed layout.
bool HasPackedKernel(TensorType type);
// Whether the environment leaves repacking on: LLMASOS_REPACK unset or anything but "0" (model
// loads and kernels_bench both obey it).
bool RepackEnabledByEnv();

// out[t, r] = sum_c W[r, c] * x[t, c]  for t < num_tokens, r < W.rows.
//   x:   [num_tokens, W.cols]
//   out: [num_tokens, W.rows]; must not alias x.
// Quantized weights are multiplied against x quantized to 8 bits per block of 32 (as
// llama.cpp does), so results match a float reference within quantization error.
void MatMul(const MatView& w, const float* x, size_t num_tokens, float* out, ThreadPool& pool);

// As MatMul, but without quantizing the activations: each weight row is dequantized to
// float32 and multiplied against x in float32. Several times slower than MatMul on quantized
// weights; it is the path whose results equal an exact float reference up to summation order,
// used by the forward-pass oracle (llmasos eval --float-activations).
void MatMulFloatActivations(const MatView& w, const float* x, size_t num_tokens, float* out,
                            ThreadPool& pool);

// out[i] = dequantized row `row_idx` of W (W.cols floats). Used for embedding look-up.
void DequantizeRow(const MatView& w, size_t row_idx, float* out);

// out[i] = x[i] / sqrt(mean(x^2) + eps) * weight[i], i < n. out may alias x.
void RmsNorm(const float* x, const float* weight, size_t n, float eps, float* out);

// x[i] = exp(x[i] - max) / sum, in place, i < n.
void Softmax(float* x, size_t n);

// Softmax without the division: x[i] = exp(x[i] - max) in place with max = max_j x[j], which
// goes to *max; returns sum_i of the new x[i]. Attention over a part of a context keeps these
// two to merge the parts (flash-decoding). REQUIRES: n > 0.
float ExpMinusMax(float* x, size_t n, float* max);

// out[i] = silu(gate[i]) * up[i]; silu(g) = g / (1 + exp(-g)). out may alias gate or up.
void SwiGlu(const float* gate, const float* up, size_t n, float* out);

// The backward of SwiGlu: given da = d loss / d out, writes (does not add)
//   dgate[i] = da[i] * up[i] * silu'(gate[i]),  dup[i] = da[i] * silu(gate[i]),
// silu'(g) = s (1 + g (1 - s)) with s = sigmoid(g). The last n % lanes elements go through a
// zero-padded vector, so each element's result is the same wherever a caller's split of [0, n)
// puts it. No output may alias an input.
void SwiGluBackward(const float* gate, const float* up, const float* da, size_t n, float* dgate,
                    float* dup);

// out[i] = gelu(gate[i]) * up[i] with GELU's tanh approximation (Gemma's GeGLU):
// gelu(g) = 0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3))). out may alias gate or up.
void GeGlu(const float* gate, const float* up, size_t n, float* out);

// y[i] += x[i].
void AddInPlace(const float* x, size_t n, float* y);

// Returns sum_i a[i] * b[i].
float Dot(const float* a, const float* b, size_t n);

// y[i] += a * x[i].
void Axpy(float a, const float* x, size_t n, float* y);

// Attention over one block of cached keys for a group of query heads that share a KV head
// (grouped-query attention), so each key is loaded once for the whole group.
//   q:  num_q heads of head_dim floats, q_stride apart
//   kt: the block's keys transposed: element d of key j at kt[d * kt_stride + j], j < n;
//       entries n .. kt_stride - 1 of a row may be read (their results are discarded)
//   scores[g * scores_stride + j] = scale * dot(q_g, key j)
void AttentionScores(const float* q, size_t q_stride, size_t num_q, const float* kt,
                     size_t kt_stride, size_t n, size_t head_dim, float scale, float* scores,
                     size_t scores_stride);

// The weighted sum of one block of cached values for the same group:
//   out[g * out_stride + d] += sum_{j < n} p[g * p_stride + j] * v[j * v_stride + d]
void AttentionValues(const float* p, size_t p_stride, size_t num_q, const float* v,
                     size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride);

// The same two kernels over a KV cache stored in F16 (kv_type.h): the same layouts, elements
// fp16, widened in registers.
void AttentionScoresF16(const float* q, size_t q_stride, size_t num_q, const uint16_t* kt,
                        size_t kt_stride, size_t n, size_t head_dim, float scale, float* scores,
                        size_t scores_stride);
void AttentionValuesF16(const float* p, size_t p_stride, size_t num_q, const uint16_t* v,
                        size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride);

// And over Q8_0 (kv_type.h), keys as rows like values: key (value) j of the block is the
// head_dim / 32 Q8_0 blocks at k + j * k_stride (v + j * v_stride), strides in blocks; each
// block dequantised in registers (d * q).
//   scores[g * scores_stride + j] = scale * dot(q_g, key j)
//   out[g * out_stride + d] += sum_{j < n} p[g * p_stride + j] * value j [d]
// REQUIRES: head_dim % 32 == 0.
void AttentionScoresQ8(const float* q, size_t q_stride, size_t num_q, const BlockQ8_0* k,
                       size_t k_stride, size_t n, size_t head_dim, float scale, float* scores,
                       size_t scores_stride);
void AttentionValuesQ8(const float* p, size_t p_stride, size_t num_q, const BlockQ8_0* v,
                       size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride);

// Converts n floats to fp16 / from fp16 (used by F16 KV caches).
void F32ToF16Row(const float* x, size_t n, uint16_t* out);
void F16ToF32Row(const uint16_t* x, size_t n, float* out);

// Quantizes n floats (a whole number of `type`'s blocks) into its blocks; Q4_0, Q4_1, Q5_0,
// Q5_1 and Q8_0 round as llama.cpp's reference quantizers do, the K-quants fit their sub-block
// scales by a search of their own. Used by the GGUF writer and the quantize tool; not a hot
// path.
// REQUIRES: CanQuantizeRow(type).
void QuantizeRow(TensorType type, const float* x, size_t n, void* out);
// Whether QuantizeRow writes `type` (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
// Q6_K).
bool CanQuantizeRow(TensorType type);

// Name of the SIMD target the dispatcher chose on this machine, e.g. "AVX3", "AVX2".
const char* ChosenTarget();
// The environment variable that caps the SIMD target, and its reader.
inline constexpr char kSimdEnv[] = "LLMASOS_SIMD";
// With LLMASOS_SIMD set to a target name as ChosenTarget() prints it (AVX3_DL, AVX3, AVX2,
// SSE4, ...), the kernels use that target and no better one: this CPU then runs the code a CPU
// without its newer extensions runs (for measuring, e.g., the AVX2 twins beside llama.cpp
// built for AVX2 on an AVX-512 machine). Unset or empty: the best target. A name that is not
// one of this CPU's targets is an error naming them. Call before any kernel runs.
Status SelectSimdTargetFromEnv();

}  // namespace llmasos::cpu

#endif  // LLMASOS_DRIVERS_CPU_OPS_H_
