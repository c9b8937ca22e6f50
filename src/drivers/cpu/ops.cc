// The CPU driver's vector kernels other than MatMul (matmul*.cc): norms, activations,
// element-wise arithmetic, half-float rows and row dequantization. Compiled once per SIMD
// target; each public function dispatches once per call.
#include "drivers/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/scalar_ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/ops.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/simd_util-inl.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "util/fp16.h"
#include "util/logging.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR

float DotTarget(const float* a, const float* b, size_t n) { return scalar::Dot(a, b, n); }
void AxpyTarget(float a, const float* x, size_t n, float* y) { scalar::Axpy(a, x, n, y); }
void AttentionScoresTarget(const float* q, size_t q_stride, size_t num_q, const float* kt,
                           size_t kt_stride, size_t n, size_t head_dim, float scale,
                           float* scores, size_t scores_stride) {
  scalar::AttentionScores(q, q_stride, num_q, kt, kt_stride, n, head_dim, scale, scores,
                          scores_stride);
}
void AttentionValuesTarget(const float* p, size_t p_stride, size_t num_q, const float* v,
                           size_t v_stride, size_t n, size_t head_dim, float* out,
                           size_t out_stride) {
  scalar::AttentionValues(p, p_stride, num_q, v, v_stride, n, head_dim, out, out_stride);
}
void AttentionScoresF16Target(const float* q, size_t q_stride, size_t num_q, const uint16_t* kt,
                              size_t kt_stride, size_t n, size_t head_dim, float scale,
                              float* scores, size_t scores_stride) {
  scalar::AttentionScoresF16(q, q_stride, num_q, kt, kt_stride, n, head_dim, scale, scores,
                             scores_stride);
}
void AttentionValuesF16Target(const float* p, size_t p_stride, size_t num_q, const uint16_t* v,
                              size_t v_stride, size_t n, size_t head_dim, float* out,
                              size_t out_stride) {
  scalar::AttentionValuesF16(p, p_stride, num_q, v, v_stride, n, head_dim, out, out_stride);
}
void AttentionScoresQ8Target(const float* q, size_t q_stride, size_t num_q, const BlockQ8_0* k,
                             size_t k_stride, size_t n, size_t head_dim, float scale,
                             float* scores, size_t scores_stride) {
  scalar::AttentionScoresQ8(q, q_stride, num_q, k, k_stride, n, head_dim, scale, scores,
                            scores_stride);
}
void AttentionValuesQ8Target(const float* p, size_t p_stride, size_t num_q, const BlockQ8_0* v,
                             size_t v_stride, size_t n, size_t head_dim, float* out,
                             size_t out_stride) {
  scalar::AttentionValuesQ8(p, p_stride, num_q, v, v_stride, n, head_dim, out, out_stride);
}
void AddInPlaceTarget(const float* x, size_t n, float* y) { scalar::AddInPlace(x, n, y); }
void RmsNormTarget(const float* x, const float* weight, size_t n, float eps, float* out) {
  scalar::RmsNorm(x, weight, n, eps, out);
}
float ExpMinusMaxTarget(float* x, size_t n, float* max) { return scalar::ExpMinusMax(x, n, max); }
void SoftmaxTarget(float* x, size_t n) { scalar::Softmax(x, n); }
void SwiGluTarget(const float* gate, const float* up, size_t n, float* out) {
  scalar::SwiGlu(gate, up, n, out);
}
void SwiGluBackwardTarget(const float* gate, const float* up, const float* da, size_t n,
                          float* dgate, float* dup) {
  scalar::SwiGluBackward(gate, up, da, n, dgate, dup);
}
void GeGluTarget(const float* gate, const float* up, size_t n, float* out) {
  scalar::GeGlu(gate, up, n, out);
}
void F32ToF16RowTarget(const float* x, size_t n, uint16_t* out) { scalar::F32ToF16Row(x, n, out); }
void F16ToF32RowTarget(const uint16_t* x, size_t n, float* out) { scalar::F16ToF32Row(x, n, out); }
void DequantizeRowTarget(const MatView& w, size_t row_idx, float* out) {
  scalar::DequantizeRow(w, row_idx, out);
}

#else  // HWY_TARGET != HWY_SCALAR

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// Highway's Exp is accurate on [-FLT_MAX, 104]; beyond 88.7 the float result is inf anyway,
// so clamping there keeps silu's exp(-g) finite-or-inf exactly as std::exp would.
constexpr float kExpClamp = 88.0f;

float DotTarget(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  // Two accumulators hide the FMA latency.
  VF sum0 = hn::Zero(df), sum1 = hn::Zero(df);
  size_t i = 0;
  for (; i + 2 * lanes <= n; i += 2 * lanes) {
    sum0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), sum0);
    sum1 = hn::MulAdd(hn::LoadU(df, a + i + lanes), hn::LoadU(df, b + i + lanes), sum1);
  }
  for (; i + lanes <= n; i += lanes) {
    sum0 = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), sum0);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(sum0, sum1)));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void AxpyTarget(float a, const float* HWY_RESTRICT x, size_t n, float* HWY_RESTRICT y) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  const VF va = hn::Set(df, a);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

HWY_INLINE float KvElement(float x) { return x; }
HWY_INLINE float KvElement(uint16_t h) { return HalfToFloat(h); }

// Query heads per register tile in the attention kernels.
constexpr size_t kAttentionHeads = 4;

// Calls fn(std::integral_constant<size_t, kHeads>(), g) for head groups [g, g + kHeads)
// covering [0, num_q): groups of kAttentionHeads, then one of the rest.
template <class Fn>
HWY_INLINE void ForHeadGroups(size_t num_q, const Fn& fn) {
  size_t g = 0;
  for (; g + kAttentionHeads <= num_q; g += kAttentionHeads) {
    fn(std::integral_constant<size_t, kAttentionHeads>(), g);
  }
  switch (num_q - g) {
    case 3: return fn(std::integral_constant<size_t, 3>(), g);
    case 2: return fn(std::integral_constant<size_t, 2>(), g);
    case 1: return fn(std::integral_constant<size_t, 1>(), g);
    default: return;
  }
}

// A vector of cached K/V elements as floats: F32 as stored, F16 converted in registers (F16C).
HWY_INLINE VF LoadKv(DF df, const float* HWY_RESTRICT p) { return hn::LoadU(df, p); }
HWY_INLINE VF LoadKv(DF df, const uint16_t* HWY_RESTRICT p) { return LoadHalfAsFloat(df, p); }

// Up to kAttentionHeads heads against a block of keys: lanes are keys, the loop runs over the
// head dimension, so each key element is loaded once for the group. The last keys, fewer than
// a vector, are computed in full lanes of which only those below n are stored; they are read
// from the row when it is long enough (kt_stride), else from a zero-padded copy. T: the
// cache's element type (float or fp16 bits).
template <size_t kHeads, class T>
void AttentionScoresHeads(const float* HWY_RESTRICT q, size_t q_stride,
                          const T* HWY_RESTRICT kt, size_t kt_stride, size_t n,
                          size_t head_dim, float scale, float* HWY_RESTRICT scores,
                          size_t scores_stride) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  HWY_ALIGN T padded[hn::MaxLanes(df)] = {};
  size_t j = 0;
  // Two vectors of keys at a time while both are whole (a 16-token KV block on AVX2): each
  // accumulator is a chain of head_dim dependent FMAs, so one vector's kHeads chains leave the
  // FMA units waiting on their latency; two vectors' chains interleave.
  for (; j + 2 * lanes <= n; j += 2 * lanes) {
    VF acc0[kHeads], acc1[kHeads];
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) acc0[g] = acc1[g] = hn::Zero(df);
    for (size_t d = 0; d < head_dim; ++d) {
      const T* row = kt + d * kt_stride + j;
      const VF k0 = LoadKv(df, row);
      const VF k1 = LoadKv(df, row + lanes);
      LLMASOS_UNROLL
      for (size_t g = 0; g < kHeads; ++g) {
        const VF qg = hn::Set(df, q[g * q_stride + d]);
        acc0[g] = hn::MulAdd(qg, k0, acc0[g]);
        acc1[g] = hn::MulAdd(qg, k1, acc1[g]);
      }
    }
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) {
      hn::StoreU(hn::Mul(acc0[g], hn::Set(df, scale)), df, scores + g * scores_stride + j);
      hn::StoreU(hn::Mul(acc1[g], hn::Set(df, scale)), df, scores + g * scores_stride + j + lanes);
    }
  }
  for (; j < n; j += lanes) {
    const size_t count = std::min(lanes, n - j);
    const bool in_row = j + lanes <= kt_stride;
    VF acc[kHeads];
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) acc[g] = hn::Zero(df);
    for (size_t d = 0; d < head_dim; ++d) {
      const T* row = kt + d * kt_stride + j;
      if (!in_row) std::memcpy(padded, row, count * sizeof(T));
      const VF k = LoadKv(df, in_row ? row : padded);
      LLMASOS_UNROLL
      for (size_t g = 0; g < kHeads; ++g) acc[g] = hn::MulAdd(hn::Set(df, q[g * q_stride + d]), k, acc[g]);
    }
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) {
      const VF scaled = hn::Mul(acc[g], hn::Set(df, scale));
      float* dst = scores + g * scores_stride + j;
      if (count == lanes) {
        hn::StoreU(scaled, df, dst);
      } else {
        hn::BlendedStore(scaled, hn::FirstN(df, count), df, dst);
      }
    }
  }
}

template <class T>
void AttentionScoresAll(const float* HWY_RESTRICT q, size_t q_stride, size_t num_q,
                        const T* HWY_RESTRICT kt, size_t kt_stride, size_t n, size_t head_dim,
                        float scale, float* HWY_RESTRICT scores, size_t scores_stride) {
  ForHeadGroups(num_q, [&](auto heads_tag, size_t g) {
    AttentionScoresHeads<decltype(heads_tag)::value>(q + g * q_stride, q_stride, kt, kt_stride, n,
                                                     head_dim, scale, scores + g * scores_stride,
                                                     scores_stride);
  });
}

void AttentionScoresTarget(const float* HWY_RESTRICT q, size_t q_stride, size_t num_q,
                           const float* HWY_RESTRICT kt, size_t kt_stride, size_t n,
                           size_t head_dim, float scale, float* HWY_RESTRICT scores,
                           size_t scores_stride) {
  AttentionScoresAll(q, q_stride, num_q, kt, kt_stride, n, head_dim, scale, scores, scores_stride);
}

void AttentionScoresF16Target(const float* HWY_RESTRICT q, size_t q_stride, size_t num_q,
                              const uint16_t* HWY_RESTRICT kt, size_t kt_stride, size_t n,
                              size_t head_dim, float scale, float* HWY_RESTRICT scores,
                              size_t scores_stride) {
  AttentionScoresAll(q, q_stride, num_q, kt, kt_stride, n, head_dim, scale, scores, scores_stride);
}

// Q8_0 keys are rows (a block spans 32 elements of one key), so lanes run over the head
// dimension: each key's 32-value blocks are widened and scaled in registers once for the
// group, multiplied into per-head accumulators, and summed across lanes once per key.
// REQUIRES: head_dim % 32 == 0 (a whole number of vectors: lanes divide 32).
template <size_t kHeads>
void AttentionScoresQ8Heads(const float* HWY_RESTRICT q, size_t q_stride,
                            const BlockQ8_0* HWY_RESTRICT k, size_t k_stride, size_t n,
                            size_t head_dim, float scale, float* HWY_RESTRICT scores,
                            size_t scores_stride) {
  const DF df;
  const hn::Rebind<int8_t, DF> di8;
  const hn::RebindToSigned<DF> di32;
  const size_t lanes = hn::Lanes(df);
  const size_t num_blocks = head_dim / BlockQ8_0::kBlockElems;
  for (size_t j = 0; j < n; ++j) {
    const BlockQ8_0* row = k + j * k_stride;
    VF acc[kHeads];
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) acc[g] = hn::Zero(df);
    for (size_t b = 0; b < num_blocks; ++b) {
      const VF vd = hn::Set(df, HalfToFloat(row[b].d));
      for (size_t i = 0; i < BlockQ8_0::kBlockElems; i += lanes) {
        const VF kf = hn::Mul(hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, row[b].qs + i))), vd);
        const size_t d = b * BlockQ8_0::kBlockElems + i;
        LLMASOS_UNROLL
        for (size_t g = 0; g < kHeads; ++g) acc[g] = hn::MulAdd(hn::LoadU(df, q + g * q_stride + d), kf, acc[g]);
      }
    }
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) scores[g * scores_stride + j] = scale * ReduceSumF(df, acc[g]);
  }
}

void AttentionScoresQ8Target(const float* HWY_RESTRICT q, size_t q_stride, size_t num_q,
                             const BlockQ8_0* HWY_RESTRICT k, size_t k_stride, size_t n,
                             size_t head_dim, float scale, float* HWY_RESTRICT scores,
                             size_t scores_stride) {
  ForHeadGroups(num_q, [&](auto heads_tag, size_t g) {
    AttentionScoresQ8Heads<decltype(heads_tag)::value>(q + g * q_stride, q_stride, k, k_stride, n,
                                                       head_dim, scale, scores + g * scores_stride,
                                                       scores_stride);
  });
}

// Up to kAttentionHeads heads: lanes run over the head dimension, the loop over keys, so each
// value row is loaded once for the group. A head dimension past the last full vector goes
// through the scalar loop. T: the cache's element type (float or fp16 bits).
template <size_t kHeads, class T>
void AttentionValuesHeads(const float* HWY_RESTRICT p, size_t p_stride,
                          const T* HWY_RESTRICT v, size_t v_stride, size_t n,
                          size_t head_dim, float* HWY_RESTRICT out, size_t out_stride) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t d = 0;
  // Two vectors of the head dimension at a time: each broadcast p feeds two FMAs, so the
  // loop is less bound by loads (the training pass's products run through this kernel with
  // long rows; attention's 64-wide heads are whole pairs on AVX2).
  for (; d + 2 * lanes <= head_dim; d += 2 * lanes) {
    VF acc0[kHeads], acc1[kHeads];
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) {
      acc0[g] = hn::LoadU(df, out + g * out_stride + d);
      acc1[g] = hn::LoadU(df, out + g * out_stride + d + lanes);
    }
    for (size_t j = 0; j < n; ++j) {
      const VF val0 = LoadKv(df, v + j * v_stride + d);
      const VF val1 = LoadKv(df, v + j * v_stride + d + lanes);
      LLMASOS_UNROLL
      for (size_t g = 0; g < kHeads; ++g) {
        const VF pg = hn::Set(df, p[g * p_stride + j]);
        acc0[g] = hn::MulAdd(pg, val0, acc0[g]);
        acc1[g] = hn::MulAdd(pg, val1, acc1[g]);
      }
    }
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) {
      hn::StoreU(acc0[g], df, out + g * out_stride + d);
      hn::StoreU(acc1[g], df, out + g * out_stride + d + lanes);
    }
  }
  for (; d + lanes <= head_dim; d += lanes) {
    VF acc[kHeads];
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) acc[g] = hn::LoadU(df, out + g * out_stride + d);
    for (size_t j = 0; j < n; ++j) {
      const VF val = LoadKv(df, v + j * v_stride + d);
      LLMASOS_UNROLL
      for (size_t g = 0; g < kHeads; ++g) acc[g] = hn::MulAdd(hn::Set(df, p[g * p_stride + j]), val, acc[g]);
    }
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) hn::StoreU(acc[g], df, out + g * out_stride + d);
  }
  for (; d < head_dim; ++d) {
    for (size_t g = 0; g < kHeads; ++g) {
      float sum = out[g * out_stride + d];
      for (size_t j = 0; j < n; ++j) sum += p[g * p_stride + j] * KvElement(v[j * v_stride + d]);
      out[g * out_stride + d] = sum;
    }
  }
}

template <class T>
void AttentionValuesAll(const float* HWY_RESTRICT p, size_t p_stride, size_t num_q,
                        const T* HWY_RESTRICT v, size_t v_stride, size_t n, size_t head_dim,
                        float* HWY_RESTRICT out, size_t out_stride) {
  ForHeadGroups(num_q, [&](auto heads_tag, size_t g) {
    AttentionValuesHeads<decltype(heads_tag)::value>(p + g * p_stride, p_stride, v, v_stride, n,
                                                     head_dim, out + g * out_stride, out_stride);
  });
}

void AttentionValuesTarget(const float* HWY_RESTRICT p, size_t p_stride, size_t num_q,
                           const float* HWY_RESTRICT v, size_t v_stride, size_t n,
                           size_t head_dim, float* HWY_RESTRICT out, size_t out_stride) {
  AttentionValuesAll(p, p_stride, num_q, v, v_stride, n, head_dim, out, out_stride);
}

void AttentionValuesF16Target(const float* HWY_RESTRICT p, size_t p_stride, size_t num_q,
                              const uint16_t* HWY_RESTRICT v, size_t v_stride, size_t n,
                              size_t head_dim, float* HWY_RESTRICT out, size_t out_stride) {
  AttentionValuesAll(p, p_stride, num_q, v, v_stride, n, head_dim, out, out_stride);
}

// Q8_0 values: lanes over the head dimension, one vector of accumulators per head kept across
// the block's rows; row j's 32-value block adds p[g, j] * d_j * q_j, the scale folded into the
// broadcast weight, so a value is widened once for the group and never stored as a float.
// REQUIRES: head_dim % 32 == 0.
template <size_t kHeads>
void AttentionValuesQ8Heads(const float* HWY_RESTRICT p, size_t p_stride,
                            const BlockQ8_0* HWY_RESTRICT v, size_t v_stride, size_t n,
                            size_t head_dim, float* HWY_RESTRICT out, size_t out_stride) {
  const DF df;
  const hn::Rebind<int8_t, DF> di8;
  const hn::RebindToSigned<DF> di32;
  const size_t lanes = hn::Lanes(df);
  for (size_t d = 0; d < head_dim; d += lanes) {
    const size_t b = d / BlockQ8_0::kBlockElems;
    const size_t i = d % BlockQ8_0::kBlockElems;
    VF acc[kHeads];
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) acc[g] = hn::LoadU(df, out + g * out_stride + d);
    for (size_t j = 0; j < n; ++j) {
      const BlockQ8_0& blk = v[j * v_stride + b];
      const float scale = HalfToFloat(blk.d);
      const VF val = hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, blk.qs + i)));
      LLMASOS_UNROLL
      for (size_t g = 0; g < kHeads; ++g) {
        acc[g] = hn::MulAdd(hn::Set(df, p[g * p_stride + j] * scale), val, acc[g]);
      }
    }
    LLMASOS_UNROLL
    for (size_t g = 0; g < kHeads; ++g) hn::StoreU(acc[g], df, out + g * out_stride + d);
  }
}

void AttentionValuesQ8Target(const float* HWY_RESTRICT p, size_t p_stride, size_t num_q,
                             const BlockQ8_0* HWY_RESTRICT v, size_t v_stride, size_t n,
                             size_t head_dim, float* HWY_RESTRICT out, size_t out_stride) {
  ForHeadGroups(num_q, [&](auto heads_tag, size_t g) {
    AttentionValuesQ8Heads<decltype(heads_tag)::value>(p + g * p_stride, p_stride, v, v_stride, n,
                                                       head_dim, out + g * out_stride, out_stride);
  });
}

void AddInPlaceTarget(const float* HWY_RESTRICT x, size_t n, float* HWY_RESTRICT y) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::Add(hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  }
  for (; i < n; ++i) y[i] += x[i];
}

// out may alias x: each element is read before its own store.
void RmsNormTarget(const float* x, const float* HWY_RESTRICT weight, size_t n, float eps,
                   float* out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  VF sum_sq = hn::Zero(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const VF v = hn::LoadU(df, x + i);
    sum_sq = hn::MulAdd(v, v, sum_sq);
  }
  float total = hn::GetLane(hn::SumOfLanes(df, sum_sq));
  for (; i < n; ++i) total += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(total / static_cast<float>(n) + eps);
  const VF vscale = hn::Set(df, scale);
  i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, x + i), vscale), hn::LoadU(df, weight + i)), df,
               out + i);
  }
  for (; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

float ExpMinusMaxTarget(float* HWY_RESTRICT x, size_t n, float* max_out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  float max = x[0];
  if (n >= lanes) {
    VF vmax = hn::LoadU(df, x);
    for (i = lanes; i + lanes <= n; i += lanes) vmax = hn::Max(vmax, hn::LoadU(df, x + i));
    max = hn::GetLane(hn::MaxOfLanes(df, vmax));
  }
  for (; i < n; ++i) max = max > x[i] ? max : x[i];
  const VF vmax = hn::Set(df, max);
  VF vsum = hn::Zero(df);
  i = 0;
  for (; i + lanes <= n; i += lanes) {
    const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i), vmax));
    hn::StoreU(e, df, x + i);
    vsum = hn::Add(vsum, e);
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, vsum));
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  *max_out = max;
  return sum;
}

void SoftmaxTarget(float* HWY_RESTRICT x, size_t n) {
  if (n == 0) return;
  float max;
  const float inv = 1.0f / ExpMinusMaxTarget(x, n, &max);
  const DF df;
  const size_t lanes = hn::Lanes(df);
  const VF vinv = hn::Set(df, inv);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), vinv), df, x + i);
  for (; i < n; ++i) x[i] *= inv;
}

// out may alias gate or up.
void SwiGluTarget(const float* gate, const float* up, size_t n, float* out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  const VF one = hn::Set(df, 1.0f);
  const VF clamp = hn::Set(df, kExpClamp);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const VF g = hn::LoadU(df, gate + i);
    const VF e = hn::Exp(df, hn::Min(hn::Neg(g), clamp));
    hn::StoreU(hn::Mul(hn::Div(g, hn::Add(one, e)), hn::LoadU(df, up + i)), df, out + i);
  }
  for (; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

// One vector of SwiGluBackward at offset 0 of each pointer.
HWY_INLINE void SwiGluBackwardVector(DF df, const float* HWY_RESTRICT gate, const float* HWY_RESTRICT up,
                                     const float* HWY_RESTRICT da, float* HWY_RESTRICT dgate,
                                     float* HWY_RESTRICT dup) {
  const VF one = hn::Set(df, 1.0f);
  const VF g = hn::LoadU(df, gate);
  const VF d = hn::LoadU(df, da);
  const VF s = hn::Div(one, hn::Add(one, hn::Exp(df, hn::Min(hn::Neg(g), hn::Set(df, kExpClamp)))));
  // silu'(g) = s (1 + g (1 - s)).
  const VF dsilu = hn::Mul(s, hn::MulAdd(g, hn::Sub(one, s), one));
  hn::StoreU(hn::Mul(hn::Mul(d, hn::LoadU(df, up)), dsilu), df, dgate);
  hn::StoreU(hn::Mul(d, hn::Mul(g, s)), df, dup);
}

void SwiGluBackwardTarget(const float* HWY_RESTRICT gate, const float* HWY_RESTRICT up,
                          const float* HWY_RESTRICT da, size_t n, float* HWY_RESTRICT dgate,
                          float* HWY_RESTRICT dup) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) SwiGluBackwardVector(df, gate + i, up + i, da + i, dgate + i, dup + i);
  if (i == n) return;
  // The tail, zero-padded to a vector: [gate, up, da, dgate, dup] x lanes.
  HWY_ALIGN float pad[5 * HWY_LANES(float)] = {};
  const size_t rest = n - i;
  std::copy(gate + i, gate + n, pad);
  std::copy(up + i, up + n, pad + lanes);
  std::copy(da + i, da + n, pad + 2 * lanes);
  SwiGluBackwardVector(df, pad, pad + lanes, pad + 2 * lanes, pad + 3 * lanes, pad + 4 * lanes);
  std::copy(pad + 3 * lanes, pad + 3 * lanes + rest, dgate + i);
  std::copy(pad + 4 * lanes, pad + 4 * lanes + rest, dup + i);
}

// The tanh argument is clamped to [-10, 10], where float tanh is already exactly +-1, so a
// huge |g| (g^3 overflowing to inf) gives gelu(g) = g or -0 as std::tanh does, not NaN.
void GeGluTarget(const float* gate, const float* up, size_t n, float* out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  const VF k = hn::Set(df, kSqrt2OverPi);
  const VF c = hn::Set(df, 0.044715f);
  const VF half = hn::Set(df, 0.5f);
  const VF one = hn::Set(df, 1.0f);
  const VF lo = hn::Set(df, -10.0f), hi = hn::Set(df, 10.0f);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const VF g = hn::LoadU(df, gate + i);
    const VF inner = hn::Mul(k, hn::Add(g, hn::Mul(hn::Mul(hn::Mul(c, g), g), g)));
    const VF t = hn::Tanh(df, hn::Min(hn::Max(inner, lo), hi));
    hn::StoreU(hn::Mul(hn::Mul(hn::Mul(half, g), hn::Add(one, t)), hn::LoadU(df, up + i)), df, out + i);
  }
  if (i < n) scalar::GeGlu(gate + i, up + i, n - i, out + i);
}

void F32ToF16RowTarget(const float* HWY_RESTRICT x, size_t n, uint16_t* HWY_RESTRICT out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) StoreFloatAsHalf(df, hn::LoadU(df, x + i), out + i);
  for (; i < n; ++i) out[i] = F32ToF16(x[i]);
}

void F16ToF32RowTarget(const uint16_t* HWY_RESTRICT x, size_t n, float* HWY_RESTRICT out) {
  const DF df;
  const size_t lanes = hn::Lanes(df);
  size_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(LoadHalfAsFloat(df, x + i), df, out + i);
  for (; i < n; ++i) out[i] = F16ToF32(x[i]);
}

// out[0..32) = d * q + m for 32 unsigned 8-bit q (stored in `q`).
HWY_INLINE void AffineBlock(const uint8_t* HWY_RESTRICT q, float d, float m,
                            float* HWY_RESTRICT out) {
  const DF df;
  const hn::Rebind<uint8_t, DF> du8;
  const hn::RebindToSigned<DF> di32;
  const size_t lanes = hn::Lanes(df);
  const VF vd = hn::Set(df, d), vm = hn::Set(df, m);
  for (size_t i = 0; i < kQuantBlockElems; i += lanes) {
    const VF qf = hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(du8, q + i)));
    hn::StoreU(hn::MulAdd(qf, vd, vm), df, out + i);
  }
}

void DequantizeRowTarget(const MatView& w, size_t row_idx, float* HWY_RESTRICT out) {
  const uint8_t* row = static_cast<const uint8_t*>(w.data) + row_idx * w.row_bytes;
  const size_t num_blocks = w.cols / kQuantBlockElems;
  switch (w.type) {
    case TensorType::kF32:
      std::memcpy(out, row, w.cols * sizeof(float));
      return;
    case TensorType::kF16:
      F16ToF32RowTarget(reinterpret_cast<const uint16_t*>(row), w.cols, out);
      return;
    case TensorType::kBF16: {
      const DF df;
      const hn::Rebind<hwy::bfloat16_t, DF> dbf;
      const size_t lanes = hn::Lanes(df);
      const auto* src = reinterpret_cast<const hwy::bfloat16_t*>(row);
      size_t i = 0;
      for (; i + lanes <= w.cols; i += lanes) {
        hn::StoreU(hn::PromoteTo(df, hn::LoadU(dbf, src + i)), df, out + i);
      }
      for (; i < w.cols; ++i) out[i] = Bf16ToF32(reinterpret_cast<const uint16_t*>(row)[i]);
      return;
    }
    case TensorType::kQ8_0: {
      const DF df;
      const hn::Rebind<int8_t, DF> di8;
      const hn::RebindToSigned<DF> di32;
      const size_t lanes = hn::Lanes(df);
      for (size_t b = 0; b < num_blocks; ++b) {
        const auto& blk = reinterpret_cast<const BlockQ8_0*>(row)[b];
        const VF vd = hn::Set(df, HalfToFloat(blk.d));
        for (size_t i = 0; i < kQuantBlockElems; i += lanes) {
          const VF qf = hn::ConvertTo(df, hn::PromoteTo(di32, hn::LoadU(di8, blk.qs + i)));
          hn::StoreU(hn::Mul(vd, qf), df, out + b * kQuantBlockElems + i);
        }
      }
      return;
    }
    case TensorType::kQ4_0:
    case TensorType::kQ4_1: {
      const bool has_min = w.type == TensorType::kQ4_1;
      const size_t block_bytes = has_min ? sizeof(BlockQ4_1) : sizeof(BlockQ4_0);
      for (size_t b = 0; b < num_blocks; ++b) {
        const uint8_t* blk = row + b * block_bytes;
        uint16_t d_bits, m_bits = 0;
        std::memcpy(&d_bits, blk, 2);
        if (has_min) std::memcpy(&m_bits, blk + 2, 2);
        const float d = HalfToFloat(d_bits);
        // Q4_0: d * (q - 8) = d * q + (-8 d).
        const float m = has_min ? HalfToFloat(m_bits) : -8.0f * d;
        VU8 lanes[kVecsPerBlock];
        UnpackNibbles(blk + (has_min ? 4 : 2), lanes);
        HWY_ALIGN uint8_t q[kQuantBlockElems];
        for (size_t v = 0; v < kVecsPerBlock; ++v) {
          hn::Store(lanes[v], DU8(), q + v * hn::MaxLanes(DU8()));
        }
        AffineBlock(q, d, m, out + b * kQuantBlockElems);
      }
      return;
    }
    default:
      // The other formats: one scalar decoder (quant_unpack.h), bit-identical to the twin.
      scalar::DequantizeRow(w, row_idx, out);
      return;
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

const char* ChosenTargetTarget() { return hwy::TargetName(HWY_TARGET); }

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {

HWY_EXPORT(DotTarget);
HWY_EXPORT(AxpyTarget);
HWY_EXPORT(AttentionScoresTarget);
HWY_EXPORT(AttentionValuesTarget);
HWY_EXPORT(AttentionScoresF16Target);
HWY_EXPORT(AttentionValuesF16Target);
HWY_EXPORT(AttentionScoresQ8Target);
HWY_EXPORT(AttentionValuesQ8Target);
HWY_EXPORT(AddInPlaceTarget);
HWY_EXPORT(RmsNormTarget);
HWY_EXPORT(ExpMinusMaxTarget);
HWY_EXPORT(SoftmaxTarget);
HWY_EXPORT(SwiGluTarget);
HWY_EXPORT(GeGluTarget);
HWY_EXPORT(SwiGluBackwardTarget);
HWY_EXPORT(F32ToF16RowTarget);
HWY_EXPORT(F16ToF32RowTarget);
HWY_EXPORT(DequantizeRowTarget);
HWY_EXPORT(ChosenTargetTarget);

float Dot(const float* a, const float* b, size_t n) {
  return HWY_DYNAMIC_DISPATCH(DotTarget)(a, b, n);
}
void Axpy(float a, const float* x, size_t n, float* y) {
  HWY_DYNAMIC_DISPATCH(AxpyTarget)(a, x, n, y);
}
void AttentionScores(const float* q, size_t q_stride, size_t num_q, const float* kt,
                     size_t kt_stride, size_t n, size_t head_dim, float scale, float* scores,
                     size_t scores_stride) {
  HWY_DYNAMIC_DISPATCH(AttentionScoresTarget)(q, q_stride, num_q, kt, kt_stride, n, head_dim,
                                              scale, scores, scores_stride);
}
void AttentionValues(const float* p, size_t p_stride, size_t num_q, const float* v,
                     size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride) {
  HWY_DYNAMIC_DISPATCH(AttentionValuesTarget)(p, p_stride, num_q, v, v_stride, n, head_dim, out,
                                              out_stride);
}
void AttentionScoresF16(const float* q, size_t q_stride, size_t num_q, const uint16_t* kt,
                        size_t kt_stride, size_t n, size_t head_dim, float scale, float* scores,
                        size_t scores_stride) {
  HWY_DYNAMIC_DISPATCH(AttentionScoresF16Target)(q, q_stride, num_q, kt, kt_stride, n, head_dim,
                                                 scale, scores, scores_stride);
}
void AttentionValuesF16(const float* p, size_t p_stride, size_t num_q, const uint16_t* v,
                        size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride) {
  HWY_DYNAMIC_DISPATCH(AttentionValuesF16Target)(p, p_stride, num_q, v, v_stride, n, head_dim,
                                                 out, out_stride);
}
void AttentionScoresQ8(const float* q, size_t q_stride, size_t num_q, const BlockQ8_0* k,
                       size_t k_stride, size_t n, size_t head_dim, float scale, float* scores,
                       size_t scores_stride) {
  DCHECK_EQ(head_dim % BlockQ8_0::kBlockElems, 0u);
  HWY_DYNAMIC_DISPATCH(AttentionScoresQ8Target)(q, q_stride, num_q, k, k_stride, n, head_dim,
                                                scale, scores, scores_stride);
}
void AttentionValuesQ8(const float* p, size_t p_stride, size_t num_q, const BlockQ8_0* v,
                       size_t v_stride, size_t n, size_t head_dim, float* out, size_t out_stride) {
  DCHECK_EQ(head_dim % BlockQ8_0::kBlockElems, 0u);
  HWY_DYNAMIC_DISPATCH(AttentionValuesQ8Target)(p, p_stride, num_q, v, v_stride, n, head_dim,
                                                out, out_stride);
}
void AddInPlace(const float* x, size_t n, float* y) {
  HWY_DYNAMIC_DISPATCH(AddInPlaceTarget)(x, n, y);
}
void RmsNorm(const float* x, const float* weight, size_t n, float eps, float* out) {
  CHECK_GT(n, 0u);
  HWY_DYNAMIC_DISPATCH(RmsNormTarget)(x, weight, n, eps, out);
}
float ExpMinusMax(float* x, size_t n, float* max) {
  CHECK_GT(n, 0u);
  return HWY_DYNAMIC_DISPATCH(ExpMinusMaxTarget)(x, n, max);
}
void Softmax(float* x, size_t n) { HWY_DYNAMIC_DISPATCH(SoftmaxTarget)(x, n); }
void SwiGlu(const float* gate, const float* up, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(SwiGluTarget)(gate, up, n, out);
}

void SwiGluBackward(const float* gate, const float* up, const float* da, size_t n, float* dgate,
                    float* dup) {
  HWY_DYNAMIC_DISPATCH(SwiGluBackwardTarget)(gate, up, da, n, dgate, dup);
}
void GeGlu(const float* gate, const float* up, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(GeGluTarget)(gate, up, n, out);
}
void F32ToF16Row(const float* x, size_t n, uint16_t* out) {
  HWY_DYNAMIC_DISPATCH(F32ToF16RowTarget)(x, n, out);
}
void F16ToF32Row(const uint16_t* x, size_t n, float* out) {
  HWY_DYNAMIC_DISPATCH(F16ToF32RowTarget)(x, n, out);
}
void DequantizeRow(const MatView& w, size_t row_idx, float* out) {
  CHECK_LT(row_idx, w.rows) << "row index out of range";
  if (w.packed != nullptr) return DequantizePackedRow(*w.packed, row_idx, out);
  HWY_DYNAMIC_DISPATCH(DequantizeRowTarget)(w, row_idx, out);
}
const char* ChosenTarget() { return HWY_DYNAMIC_DISPATCH(ChosenTargetTarget)(); }

Status SelectSimdTargetFromEnv() {
  const char* name = std::getenv(kSimdEnv);
  if (name == nullptr || *name == '\0') return OkStatus();
  // Highway's targets are bits, the better ones the lower: disabling every bit below the
  // named one's makes it the best that is left.
  std::string names;
  for (int64_t target : hwy::SupportedAndGeneratedTargets()) {
    if (std::strcmp(hwy::TargetName(target), name) == 0) {
      hwy::DisableTargets(target - 1);
      return OkStatus();
    }
    names += (names.empty() ? "" : ", ") + std::string(hwy::TargetName(target));
  }
  return InvalidArgumentError(std::string(kSimdEnv) + "=" + name +
                              " is not a SIMD target of this CPU; it has: " + names);
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
