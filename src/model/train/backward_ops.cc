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

void SwiGluBackward(const float* g, const float* u, const float* da, size_t n, float* dg,
                    float* du) {
  for (size_t i = 0; i < n; ++i) {
    const float s = 1.0f / (1.0f + std::exp(-g[i]));
    const float silu = g[i] * s;
    dg[i] = da[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    du[i] = da[i] * silu;
  }
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

void AttentionForward(const AttentionShape& s, size_t kvh, const float* q, const float* k,
                      const float* v, float* out, float* scratch) {
  const size_t d = s.head_dim;
  for (size_t g = 0; g < s.group; ++g) {
    const size_t head = kvh * s.group + g;
    for (size_t i = 0; i < s.num_tokens; ++i) {
      const float* qi = q + i * s.q_stride + head * d;
      for (size_t j = 0; j <= i; ++j) scratch[j] = s.scale * cpu::Dot(qi, k + j * s.kv_stride + kvh * d, d);
      cpu::Softmax(scratch, i + 1);
      float* oi = out + i * s.q_stride + head * d;
      std::fill(oi, oi + d, 0.0f);
      for (size_t j = 0; j <= i; ++j) cpu::Axpy(scratch[j], v + j * s.kv_stride + kvh * d, d, oi);
    }
  }
}

void AttentionBackward(const AttentionShape& s, size_t kvh, const float* q, const float* k,
                       const float* v, const float* dout, float* dq, float* dk, float* dv,
                       float* scratch) {
  const size_t d = s.head_dim;
  float* p = scratch;
  float* ds = scratch + s.num_tokens;
  for (size_t g = 0; g < s.group; ++g) {
    const size_t head = kvh * s.group + g;
    for (size_t i = 0; i < s.num_tokens; ++i) {
      const float* qi = q + i * s.q_stride + head * d;
      const float* doi = dout + i * s.q_stride + head * d;
      for (size_t j = 0; j <= i; ++j) p[j] = s.scale * cpu::Dot(qi, k + j * s.kv_stride + kvh * d, d);
      cpu::Softmax(p, i + 1);
      // dS_j = P_j (dP_j - sum_l P_l dP_l), dP_j = dout_i . v_j
      float sum = 0.0f;
      for (size_t j = 0; j <= i; ++j) {
        ds[j] = cpu::Dot(doi, v + j * s.kv_stride + kvh * d, d);
        sum += p[j] * ds[j];
      }
      float* dqi = dq + i * s.q_stride + head * d;
      for (size_t j = 0; j <= i; ++j) {
        const float dsj = s.scale * p[j] * (ds[j] - sum);
        cpu::Axpy(dsj, k + j * s.kv_stride + kvh * d, d, dqi);
        cpu::Axpy(dsj, qi, d, dk + j * s.kv_stride + kvh * d);
        cpu::Axpy(p[j], doi, d, dv + j * s.kv_stride + kvh * d);
      }
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

void MatMulTiled(const cpu::MatView& w, const float* x, size_t num_tokens, float* out,
                 ThreadPool& pool) {
  // out[t, r0:r0+R] = sum_c x[t, c] WT[c, r0:r0+R] for a transposed tile WT of R dequantized
  // rows: a GEMM of the chunk's tokens by the tile (cpu::GemmAccumulate).
  constexpr size_t kTileRows = 64;
  pool.ParallelFor(num_tokens, 1, [&](size_t begin, size_t end, size_t) {
    std::vector<float> row(w.cols), tile(w.cols * kTileRows);
    for (size_t t = begin; t < end; ++t) std::fill(out + t * w.rows, out + (t + 1) * w.rows, 0.0f);
    for (size_t r0 = 0; r0 < w.rows; r0 += kTileRows) {
      const size_t rows = std::min(kTileRows, w.rows - r0);
      for (size_t r = 0; r < rows; ++r) {
        cpu::DequantizeRow(w, r0 + r, row.data());
        for (size_t c = 0; c < w.cols; ++c) tile[c * rows + r] = row[c];
      }
      cpu::GemmAccumulate(x + begin * w.cols, w.cols, end - begin, tile.data(), rows, w.cols, rows,
                          out + begin * w.rows + r0, w.rows);
    }
  });
}

void MatMulTransposedAdd(const cpu::MatView& w, const float* dy, size_t num_tokens, float* dx,
                         ThreadPool& pool) {
  // Each chunk of tokens dequantizes W a tile of rows at a time into its own buffer (the
  // dequantization is repeated once per chunk, a num_chunks / num_tokens share of the work)
  // and adds dy[:, tile] x tile, a GEMM (cpu::GemmAccumulate) keeping a block of tokens' sums
  // in registers.
  constexpr size_t kTileRows = 64;
  pool.ParallelFor(num_tokens, 1, [&](size_t begin, size_t end, size_t) {
    std::vector<float> tile(kTileRows * w.cols);
    for (size_t r0 = 0; r0 < w.rows; r0 += kTileRows) {
      const size_t rows = std::min(kTileRows, w.rows - r0);
      for (size_t r = 0; r < rows; ++r) cpu::DequantizeRow(w, r0 + r, &tile[r * w.cols]);
      cpu::GemmAccumulate(dy + begin * w.rows + r0, w.rows, end - begin, tile.data(), w.cols, rows, w.cols,
                          dx + begin * w.cols, w.cols);
    }
  });
}

}  // namespace llmasos::train
