// Quantized-weight MatMul for one Highway target: register tiles of kRows weight rows by
// kTokens tokens, integer dot products per block of 32, one float FMA per block and tile cell.
//
// Per block b of row r and token t (see scalar_ops.h for the activation format):
//   sum_j w[j] x[j] ~= (d_w d_x) * sum_j q_w[j] q_x[j]  +  m_w * s_x
// where Q8_0 has m_w = 0, Q4_1 stores m_w, and Q4_0 (w = d (q - 8)) is Q4_1 with m_w = -8 d_w,
// so both 4-bit types multiply unsigned nibbles and never subtract 8 per element.
#if defined(LLMASOS_DRIVERS_CPU_MATMUL_QUANT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LLMASOS_DRIVERS_CPU_MATMUL_QUANT_INL_H_
#undef LLMASOS_DRIVERS_CPU_MATMUL_QUANT_INL_H_
#else
#define LLMASOS_DRIVERS_CPU_MATMUL_QUANT_INL_H_
#endif

#include <cstddef>
#include <cstdint>

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/scalar_ops.h"
#include "drivers/cpu/simd_util-inl.h"
#include "drivers/cpu/tensor_type.h"
#include "hwy/highway.h"
#include "util/logging.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR

template <TensorType kType>
void QuantMatMul(const MatView& w, const QuantizedActivations& x, float* out,
                 ThreadPool& pool) {
  pool.ParallelFor(w.rows, 1, [&](size_t begin, size_t end, size_t) {
    scalar::QuantizedRows(w, x, begin, end, out);
  }, /*chunks_per_thread=*/4);
}

#else  // HWY_TARGET != HWY_SCALAR

// Weight rows per tile when many tokens share them (prefill), and tokens per tile. Bounded by
// registers: kRows * kTokens float accumulators plus kRows unpacked blocks must fit in 32
// (AVX-512 targets) or 16 vector registers.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
inline constexpr size_t kPrefillRows = 4;
#else
inline constexpr size_t kPrefillRows = 2;
#endif
inline constexpr size_t kPrefillTokens = 4;
inline constexpr size_t kDecodeRows = 4;

template <TensorType kType>
struct QuantBlockTraits;
template <>
struct QuantBlockTraits<TensorType::kQ4_0> {
  using Block = BlockQ4_0;
  static constexpr bool kHasMin = true;
};
template <>
struct QuantBlockTraits<TensorType::kQ4_1> {
  using Block = BlockQ4_1;
  static constexpr bool kHasMin = true;
};
template <>
struct QuantBlockTraits<TensorType::kQ8_0> {
  using Block = BlockQ8_0;
  static constexpr bool kHasMin = false;
};

// One weight block made ready for dot products: its lanes, scale and (Q4) minimum.
template <TensorType kType>
struct LoadedBlock {
  hn::Vec<std::conditional_t<kType == TensorType::kQ8_0, DI8, DU8>> w[kVecsPerBlock];
  float d;
  float m;
};

template <TensorType kType>
HWY_INLINE void LoadBlock(const typename QuantBlockTraits<kType>::Block* HWY_RESTRICT blk,
                          LoadedBlock<kType>& out) {
  if constexpr (kType == TensorType::kQ8_0) {
    for (size_t v = 0; v < kVecsPerBlock; ++v) {
      out.w[v] = hn::LoadU(DI8(), blk->qs + v * hn::MaxLanes(DI8()));
    }
    out.d = HalfToFloat(blk->d);
    out.m = 0.0f;
  } else {
    UnpackNibbles(blk->qs, out.w);
    out.d = HalfToFloat(blk->d);
    if constexpr (kType == TensorType::kQ4_1) {
      out.m = HalfToFloat(blk->m);
    } else {
      out.m = -8.0f * out.d;
    }
  }
}

template <TensorType kType>
HWY_INLINE VI32 BlockDot(const LoadedBlock<kType>& w, const VI8 (&x)[kVecsPerBlock]) {
  VI32 isum = hn::Zero(DI32());
  for (size_t v = 0; v < kVecsPerBlock; ++v) {
    if constexpr (kType == TensorType::kQ8_0) {
      isum = DotS8S8(w.w[v], x[v], isum);
    } else {
      isum = DotU8S8(w.w[v], x[v], isum);
    }
  }
  return isum;
}

// out[t * out_stride + r] = row r of the tile times token t, r < kRows, t < kTokens.
//   w_rows: first row of the tile; rows are row_bytes apart.
//   x: the tile's first token's quantized activations (qs, d, s advanced to token t0).
template <TensorType kType, size_t kRows, size_t kTokens>
HWY_NOINLINE void QuantTile(const uint8_t* HWY_RESTRICT w_rows, size_t row_bytes,
                            size_t num_blocks, const int8_t* HWY_RESTRICT xq,
                            const float* HWY_RESTRICT xd, const float* HWY_RESTRICT xs,
                            size_t cols, float* HWY_RESTRICT out, size_t out_stride) {
  using Traits = QuantBlockTraits<kType>;
  using Block = typename Traits::Block;
  const DF32 df;
  VF32 acc[kRows][kTokens];
  float min_acc[kRows][kTokens];
  for (size_t r = 0; r < kRows; ++r) {
    for (size_t t = 0; t < kTokens; ++t) {
      acc[r][t] = hn::Zero(df);
      min_acc[r][t] = 0.0f;
    }
  }
  for (size_t b = 0; b < num_blocks; ++b) {
    LoadedBlock<kType> w[kRows];
    for (size_t r = 0; r < kRows; ++r) {
      LoadBlock<kType>(reinterpret_cast<const Block*>(w_rows + r * row_bytes) + b, w[r]);
    }
    for (size_t t = 0; t < kTokens; ++t) {
      VI8 x[kVecsPerBlock];
      const int8_t* x_blk = xq + t * cols + b * kBlockBytes;
      for (size_t v = 0; v < kVecsPerBlock; ++v) {
        x[v] = hn::LoadU(DI8(), x_blk + v * hn::MaxLanes(DI8()));
      }
      const float dx = xd[t * num_blocks + b];
      for (size_t r = 0; r < kRows; ++r) {
        const VF32 prod = hn::ConvertTo(df, BlockDot<kType>(w[r], x));
        acc[r][t] = hn::MulAdd(prod, hn::Set(df, w[r].d * dx), acc[r][t]);
        if constexpr (Traits::kHasMin) min_acc[r][t] += w[r].m * xs[t * num_blocks + b];
      }
    }
  }
  for (size_t r = 0; r < kRows; ++r) {
    for (size_t t = 0; t < kTokens; ++t) {
      out[t * out_stride + r] = ReduceSumF(df, acc[r][t]) + min_acc[r][t];
    }
  }
}

// Rows [row_begin, row_end) of the product, every token.
template <TensorType kType>
void QuantRows(const MatView& w, const QuantizedActivations& x, size_t row_begin,
               size_t row_end, float* out) {
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const auto* base = static_cast<const uint8_t*>(w.data);
  auto tile = [&](auto rows_tag, auto tokens_tag, size_t r, size_t t) {
    constexpr size_t kR = decltype(rows_tag)::value;
    constexpr size_t kT = decltype(tokens_tag)::value;
    QuantTile<kType, kR, kT>(base + r * w.row_bytes, w.row_bytes, num_blocks,
                             x.qs + t * x.cols, x.d + t * num_blocks, x.s + t * num_blocks,
                             x.cols, out + t * w.rows + r, w.rows);
  };
  using One = std::integral_constant<size_t, 1>;
  if (x.num_tokens == 1) {
    using Rows = std::integral_constant<size_t, kDecodeRows>;
    size_t r = row_begin;
    for (; r + kDecodeRows <= row_end; r += kDecodeRows) tile(Rows(), One(), r, 0);
    for (; r < row_end; ++r) tile(One(), One(), r, 0);
    return;
  }
  // Each weight tile stays in L1 while every token passes over it.
  using Rows = std::integral_constant<size_t, kPrefillRows>;
  using Tokens = std::integral_constant<size_t, kPrefillTokens>;
  auto all_tokens = [&](auto rows_tag, size_t r) {
    size_t t = 0;
    for (; t + kPrefillTokens <= x.num_tokens; t += kPrefillTokens) tile(rows_tag, Tokens(), r, t);
    for (; t < x.num_tokens; ++t) tile(rows_tag, One(), r, t);
  };
  size_t r = row_begin;
  for (; r + kPrefillRows <= row_end; r += kPrefillRows) all_tokens(Rows(), r);
  for (; r < row_end; ++r) all_tokens(One(), r);
}

template <TensorType kType>
void QuantMatMul(const MatView& w, const QuantizedActivations& x, float* out,
                 ThreadPool& pool) {
  // Row chunks a multiple of the tile height; several per thread so a thread that was
  // descheduled (shared cores) does not hold up the others for a whole share.
  const size_t granule = x.num_tokens == 1 ? kDecodeRows : kPrefillRows;
  pool.ParallelFor(w.rows, granule, [&](size_t begin, size_t end, size_t /*thread_idx*/) {
    QuantRows<kType>(w, x, begin, end, out);
  }, /*chunks_per_thread=*/4);
}

#endif  // HWY_TARGET != HWY_SCALAR

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
