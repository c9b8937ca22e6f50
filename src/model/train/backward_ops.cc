#include "model/train/backward_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "drivers/cpu/gemm.h"

namespace llmasos::train {

float RmsNormForward(const float* x, const float* w, size_t n, float eps, float* y) {
  const float mean_sq = cpu::Dot(x, x, n) / static_cast<float>(n);
  const float inv = 1.0f / std::sqrt(mean_sq + eps);
  for (size_t i = 0; i < n; ++i) y[i] = x[i] * inv * w[i];
  return inv;
}

void RmsNormBackward(const float* x, const float* w, float inv, const float* dy, size_t n,
                     float* dx) {
  // y_i = x_i * inv * w_i, inv = (mean(x^2) + eps)^-1/2, d inv / d x_j = -inv^3 x_j / n.
  float dot = 0.0f;  // sum_i dy_i w_i x_i
  for (size_t i = 0; i < n; ++i) dot += dy[i] * w[i] * x[i];
  const float c = dot * inv * inv * inv / static_cast<float>(n);
  for (size_t i = 0; i < n; ++i) dx[i] += inv * dy[i] * w[i] - c * x[i];
}

void Rope(arch::RopeMode mode, const float* cos, const float* sin, size_t rope_dims, bool inverse,
          float* x) {
  const size_t half = rope_dims / 2;
  const size_t stride = mode == arch::RopeMode::kNormal ? 2 : 1;
  const size_t pair = mode == arch::RopeMode::kNormal ? 1 : half;
  for (size_t i = 0; i < half; ++i) {
    float* a = x + i * stride;
    float* b = a + pair;
    const float c = cos[i], s = inverse ? -sin[i] : sin[i];
    const float xa = *a, xb = *b;
    *a = xa * c - xb * s;
    *b = xa * s + xb * c;
  }
}

namespace {

// Query rows per block of the attention kernels: a block's probabilities are
// [kAttentionRows, num_tokens] floats of scratch.
constexpr size_t kAttentionRows = 32;

// Rows [i0, i1) of one head's attention probabilities, p[i - i0, j] (row stride i1):
// softmax over j <= i of scale * q_i . k_j, and 0 for i < j < i1. The scores are one GEMM
// of the block's queries by kt = K^T ([head_dim, num_tokens]).
void Probabilities(const AttentionShape& s, const float* qh, const float* kt, size_t i0, size_t i1,
                   float* p) {
  const size_t rows = i1 - i0;
  std::fill(p, p + rows * i1, 0.0f);
  cpu::GemmAccumulate(qh + i0 * s.q_stride, s.q_stride, rows, kt, s.num_tokens, s.head_dim, i1, p, i1);
  for (size_t r = 0; r < rows; ++r) {
    float* pr = p + r * i1;
    const size_t len = i0 + r + 1;
    for (size_t j = 0; j < len; ++j) pr[j] *= s.scale;
    cpu::Softmax(pr, len);
    std::fill(pr + len, pr + i1, 0.0f);
  }
}

}  // namespace

void Transpose(const float* in, size_t in_stride, size_t rows, size_t cols, float* out) {
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) out[c * rows + r] = in[r * in_stride + c];
  }
}

size_t AttentionScratchFloats(size_t head_dim, size_t num_tokens) {
  return (2 * head_dim + 3 * kAttentionRows) * num_tokens;
}

void AttentionForward(const AttentionShape& s, size_t kvh, const float* q, const float* k,
                      const float* v, float* out, float* scratch) {
  // Per block of query rows: P = softmax(scale Q K^T) masked, then O = P V, both GEMMs; the
  // block's rows take the keys up to its last row (the masked ones add zeros).
  const size_t d = s.head_dim, n = s.num_tokens;
  float* kt = scratch;     // [d, n]
  float* p = kt + d * n;   // [kAttentionRows, n]
  Transpose(k + kvh * d, s.kv_stride, n, d, kt);
  for (size_t g = 0; g < s.group; ++g) {
    const size_t head = kvh * s.group + g;
    const float* qh = q + head * d;
    float* oh = out + head * d;
    for (size_t i0 = 0; i0 < n; i0 += kAttentionRows) {
      const size_t i1 = std::min(n, i0 + kAttentionRows), rows = i1 - i0;
      Probabilities(s, qh, kt, i0, i1, p);
      for (size_t i = i0; i < i1; ++i) std::fill(oh + i * s.q_stride, oh + i * s.q_stride + d, 0.0f);
      cpu::GemmAccumulate(p, i1, rows, v + kvh * d, s.kv_stride, i1, d, oh + i0 * s.q_stride, s.q_stride);
    }
  }
}

void AttentionBackward(const AttentionShape& s, size_t kvh, const float* q, const float* k,
                       const float* v, const float* dout, float* dq, float* dk, float* dv,
                       float* scratch) {
  // Per block of query rows, with P recomputed: dP = dO V^T, dS = P (dP - rowsum(P dP)) scale,
  // then dQ += dS K, dK += dS^T Q, dV += P^T dO, all GEMMs.
  const size_t d = s.head_dim, n = s.num_tokens;
  float* kt = scratch;                 // [d, n]
  float* vt = kt + d * n;              // [d, n]
  float* p = vt + d * n;               // [kAttentionRows, n]
  float* ds = p + kAttentionRows * n;  // [kAttentionRows, n]
  float* tr = ds + kAttentionRows * n; // [n, kAttentionRows]: dS^T, then P^T
  Transpose(k + kvh * d, s.kv_stride, n, d, kt);
  Transpose(v + kvh * d, s.kv_stride, n, d, vt);
  for (size_t g = 0; g < s.group; ++g) {
    const size_t head = kvh * s.group + g;
    const float* qh = q + head * d;
    const float* doh = dout + head * d;
    for (size_t i0 = 0; i0 < n; i0 += kAttentionRows) {
      const size_t i1 = std::min(n, i0 + kAttentionRows), rows = i1 - i0;
      Probabilities(s, qh, kt, i0, i1, p);
      std::fill(ds, ds + rows * i1, 0.0f);
      cpu::GemmAccumulate(doh + i0 * s.q_stride, s.q_stride, rows, vt, n, d, i1, ds, i1);
      for (size_t r = 0; r < rows; ++r) {
        const float* pr = p + r * i1;
        float* dsr = ds + r * i1;
        const size_t len = i0 + r + 1;
        float sum = 0.0f;
        for (size_t j = 0; j < len; ++j) sum += pr[j] * dsr[j];
        for (size_t j = 0; j < len; ++j) dsr[j] = s.scale * pr[j] * (dsr[j] - sum);
        std::fill(dsr + len, dsr + i1, 0.0f);
      }
      cpu::GemmAccumulate(ds, i1, rows, k + kvh * d, s.kv_stride, i1, d, dq + i0 * s.q_stride + head * d,
                          s.q_stride);
      Transpose(ds, i1, rows, i1, tr);
      cpu::GemmAccumulate(tr, rows, i1, qh + i0 * s.q_stride, s.q_stride, rows, d, dk + kvh * d, s.kv_stride);
      Transpose(p, i1, rows, i1, tr);
      cpu::GemmAccumulate(tr, rows, i1, doh + i0 * s.q_stride, s.q_stride, rows, d, dv + kvh * d, s.kv_stride);
    }
  }
}

double CrossEntropyForwardBackward(float* logits, size_t vocab, size_t target, float grad_scale) {
  cpu::Softmax(logits, vocab);
  const double p_target = logits[target];
  for (size_t i = 0; i < vocab; ++i) logits[i] *= grad_scale;
  logits[target] -= grad_scale;
  return -std::log(std::max(p_target, 1e-45));
}

namespace {

// Rows of W per task of MatMulTiled: 8 register blocks of GemmAccumulate; the K and V
// projections of a small model (192 rows) still make 4 tasks for 2 threads.
constexpr size_t kForwardTileRows = 48;
// Rows of W per GEMM pass of MatMulTransposedAdd (the depth of one pass of the kernel).
constexpr size_t kBackwardTileRows = 256;
// Tasks per thread where work is split in contiguous ranges: threads claim them one by one,
// so a thread that another process preempts holds up the others by one task, not a share.
constexpr size_t kChunksPerThread = 4;

// Row r of W, columns [c0, c0 + num_cols), in float. A matrix in its file's layout decodes
// just those blocks; a repacked one (not used by training: finetune loads without repacking)
// decodes the whole row into `row` ([W.cols]) and copies the slice.
// REQUIRES: c0 and num_cols whole blocks of W's type, or c0 + num_cols == W.cols.
void DequantizeRowSlice(const cpu::MatView& w, size_t r, size_t c0, size_t num_cols, float* out,
                        std::vector<float>& row) {
  if (w.packed != nullptr) {
    row.resize(w.cols);
    cpu::DequantizeRow(w, r, row.data());
    std::copy(row.begin() + c0, row.begin() + c0 + num_cols, out);
    return;
  }
  const cpu::TensorTypeTraits& traits = cpu::Traits(w.type);
  cpu::MatView slice = w;
  slice.data = static_cast<const uint8_t*>(w.data) + c0 / traits.block_elems * traits.block_bytes;
  slice.cols = num_cols;
  cpu::DequantizeRow(slice, r, out);
}

}  // namespace

void MatMulTiled(const cpu::MatView& w, const float* x, size_t num_tokens, float* out,
                 ThreadPool& pool) {
  // out^T = W x^T, a tile of W's rows per task: each task dequantizes its own rows once (no
  // thread decodes a weight another one does) and multiplies them, as rows of GEMM operand a,
  // by x^T; its [rows, tokens] result is written back transposed. x^T is packed for the GEMM
  // once per call (tokens * cols floats, against rows * cols dequantized and rows * cols *
  // tokens multiply-adds), so no tile's product copies b panels again.
  const size_t width = cpu::GemmPanelColumns();
  const size_t padded = (num_tokens + width - 1) / width * width;  // tokens of a packed x^T
  std::vector<float> xp(cpu::GemmPackedFloats(w.cols, num_tokens));
  pool.ParallelFor(num_tokens, width, [&](size_t t0, size_t t1, size_t) {
    cpu::GemmPackTransposed(x + t0 * w.cols, w.cols, t1 - t0, w.cols, &xp[t0 * w.cols]);
  }, kChunksPerThread);
  const size_t num_tiles = (w.rows + kForwardTileRows - 1) / kForwardTileRows;
  const size_t tile_floats = kForwardTileRows * (w.cols + padded);
  std::vector<float> scratch(pool.num_threads() * tile_floats);
  pool.Run(num_tiles, [&](size_t tile_idx, size_t thread) {
    const size_t r0 = tile_idx * kForwardTileRows, rows = std::min(kForwardTileRows, w.rows - r0);
    float* tile = &scratch[thread * tile_floats];   // [rows, W.cols]
    float* prod = tile + kForwardTileRows * w.cols;  // [rows, padded]
    for (size_t r = 0; r < rows; ++r) cpu::DequantizeRow(w, r0 + r, tile + r * w.cols);
    std::fill(prod, prod + rows * padded, 0.0f);
    // The padding columns of x^T are zero: all of prod's columns are whole panels.
    cpu::GemmAccumulatePacked(tile, w.cols, rows, xp.data(), w.cols, padded, prod, padded);
    // Transposed back a panel of tokens at a time: its piece of prod ([rows, width]) and of
    // out ([width, rows]) stay in L1, where walking prod down a column for every token would
    // miss on each row (prod's rows are 1 KiB apart for 256 tokens).
    for (size_t t0 = 0; t0 < num_tokens; t0 += width) {
      const size_t t1 = std::min(num_tokens, t0 + width);
      for (size_t t = t0; t < t1; ++t) {
        for (size_t r = 0; r < rows; ++r) out[t * w.rows + r0 + r] = prod[r * padded + t];
      }
    }
  });
}

void MatMulTransposedAdd(const cpu::MatView& w, const float* dy, size_t num_tokens, float* dx,
                         ThreadPool& pool) {
  // dx[:, slice] += dy W[:, slice] for a slice of W's columns per task, whole blocks of its
  // type wide: each task dequantizes its slice of every row once, a tile of rows at a time,
  // and adds dy[:, tile] x tile with the GEMM, keeping a block of tokens' sums in registers.
  // Each dx element sums over W's rows in order, whatever the slices: the result does not
  // depend on the thread count.
  const size_t block = cpu::Traits(w.type).block_elems;
  pool.ParallelFor(w.cols, block, [&](size_t c0, size_t c1, size_t) {
    const size_t width = c1 - c0;
    std::vector<float> tile(kBackwardTileRows * width), row;
    for (size_t r0 = 0; r0 < w.rows; r0 += kBackwardTileRows) {
      const size_t rows = std::min(kBackwardTileRows, w.rows - r0);
      for (size_t r = 0; r < rows; ++r) DequantizeRowSlice(w, r0 + r, c0, width, &tile[r * width], row);
      cpu::GemmAccumulate(dy + r0, w.rows, num_tokens, tile.data(), width, rows, width, dx + c0, w.cols);
    }
  }, kChunksPerThread);
}

}  // namespace llmasos::train
