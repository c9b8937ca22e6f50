// MatMul for F32, F16 and BF16 weights against float activations, compiled once per SIMD
// target. Weights are widened to f32 in registers; products and sums are f32 FMAs.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/scalar_ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/matmul_float.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/simd_util-inl.h"
#include "hwy/highway.h"
#include "util/fp16.h"
#include "util/logging.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR

void MatMulFloatTarget(const MatView& w, const float* x, size_t num_tokens, float* out,
                       ThreadPool& pool) {
  scalar::MatMul(w, x, num_tokens, out);
}

#else  // HWY_TARGET != HWY_SCALAR

// Register tile: kFloatTileRows * kFloatTileTokens accumulators plus the rows' weights.
inline constexpr size_t kFloatTileRows = 4;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
inline constexpr size_t kFloatTileTokens = 4;
#else
inline constexpr size_t kFloatTileTokens = 2;
#endif

template <TensorType kType>
HWY_INLINE hn::Vec<hn::ScalableTag<float>> LoadWeights(const uint8_t* HWY_RESTRICT row,
                                                       size_t col) {
  const hn::ScalableTag<float> df;
  if constexpr (kType == TensorType::kF32) {
    return hn::LoadU(df, reinterpret_cast<const float*>(row) + col);
  } else if constexpr (kType == TensorType::kF16) {
    return LoadHalfAsFloat(df, reinterpret_cast<const uint16_t*>(row) + col);
  } else {
    const hn::Rebind<hwy::bfloat16_t, decltype(df)> dbf;
    return hn::PromoteTo(df, hn::LoadU(dbf, reinterpret_cast<const hwy::bfloat16_t*>(row) + col));
  }
}

template <TensorType kType>
HWY_INLINE float WeightAt(const uint8_t* HWY_RESTRICT row, size_t col) {
  if constexpr (kType == TensorType::kF32) return reinterpret_cast<const float*>(row)[col];
  if constexpr (kType == TensorType::kF16) {
    return F16ToF32(reinterpret_cast<const uint16_t*>(row)[col]);
  }
  return Bf16ToF32(reinterpret_cast<const uint16_t*>(row)[col]);
}

// out[t * out_stride + r] = row r (of kRows, row_bytes apart) times token t (of kTokens,
// cols apart): each weight vector is widened once and used for every token of the tile.
template <TensorType kType, size_t kRows, size_t kTokens>
HWY_NOINLINE void FloatTile(const uint8_t* HWY_RESTRICT w_rows, size_t row_bytes, size_t cols,
                            const float* HWY_RESTRICT x, float* HWY_RESTRICT out,
                            size_t out_stride) {
  const hn::ScalableTag<float> df;
  const size_t n = hn::Lanes(df);
  hn::Vec<decltype(df)> acc[kRows][kTokens];
  LLMASOS_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    LLMASOS_UNROLL
    for (size_t t = 0; t < kTokens; ++t) acc[r][t] = hn::Zero(df);
  }
  size_t c = 0;
  for (; c + n <= cols; c += n) {
    hn::Vec<decltype(df)> w[kRows];
    LLMASOS_UNROLL
    for (size_t r = 0; r < kRows; ++r) w[r] = LoadWeights<kType>(w_rows + r * row_bytes, c);
    LLMASOS_UNROLL
    for (size_t t = 0; t < kTokens; ++t) {
      const auto xv = hn::LoadU(df, x + t * cols + c);
      LLMASOS_UNROLL
      for (size_t r = 0; r < kRows; ++r) acc[r][t] = hn::MulAdd(w[r], xv, acc[r][t]);
    }
  }
  LLMASOS_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    LLMASOS_UNROLL
    for (size_t t = 0; t < kTokens; ++t) {
      float sum = hn::GetLane(hn::SumOfLanes(df, acc[r][t]));
      for (size_t cc = c; cc < cols; ++cc) {
        sum += WeightAt<kType>(w_rows + r * row_bytes, cc) * x[t * cols + cc];
      }
      out[t * out_stride + r] = sum;
    }
  }
}

// Half-width weights (F16, BF16) widened once per row into f32 scratch when many tokens
// share them (prefill), so the tile's loop has only loads and FMAs: widening in the loop takes
// the FMA ports once per weight vector per token tile.
inline constexpr size_t kWidenMinTokens = 8;

template <TensorType kType>
void WidenRow(const uint8_t* HWY_RESTRICT row, size_t cols, float* HWY_RESTRICT dst) {
  const hn::ScalableTag<float> df;
  const size_t n = hn::Lanes(df);
  size_t c = 0;
  for (; c + n <= cols; c += n) hn::StoreU(LoadWeights<kType>(row, c), df, dst + c);
  for (; c < cols; ++c) dst[c] = WeightAt<kType>(row, c);
}

template <TensorType kType>
void FloatRows(const MatView& w, const float* x, size_t num_tokens, size_t row_begin,
               size_t row_end, float* out, size_t out_stride);

template <TensorType kType>
void WidenedRows(const MatView& w, const float* x, size_t num_tokens, size_t row_begin,
                 size_t row_end, float* out) {
  thread_local std::vector<float> panel;
  panel.resize(kFloatTileRows * w.cols);
  const auto* base = static_cast<const uint8_t*>(w.data);
  for (size_t r = row_begin; r < row_end; r += kFloatTileRows) {
    const size_t rows = std::min(kFloatTileRows, row_end - r);
    for (size_t i = 0; i < rows; ++i) WidenRow<kType>(base + (r + i) * w.row_bytes, w.cols, &panel[i * w.cols]);
    MatView widened{TensorType::kF32, panel.data(), rows, w.cols, w.cols * sizeof(float)};
    FloatRows<TensorType::kF32>(widened, x, num_tokens, 0, rows, out + r, w.rows);
  }
}

// Rows [row_begin, row_end) of w times every token; out[t * out_stride + r - row_begin].
template <TensorType kType>
void FloatRows(const MatView& w, const float* x, size_t num_tokens, size_t row_begin,
               size_t row_end, float* out, size_t out_stride) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  using Rows = std::integral_constant<size_t, kFloatTileRows>;
  using Tokens = std::integral_constant<size_t, kFloatTileTokens>;
  using One = std::integral_constant<size_t, 1>;
  // A tile's rows stay in L1 while every token passes over them.
  auto all_tokens = [&](auto rows_tag, size_t r) {
    constexpr size_t kR = decltype(rows_tag)::value;
    auto tile = [&](auto tokens_tag, size_t t) {
      FloatTile<kType, kR, decltype(tokens_tag)::value>(base + r * w.row_bytes, w.row_bytes,
                                                         w.cols, x + t * w.cols,
                                                         out + t * out_stride + r - row_begin,
                                                         out_stride);
    };
    size_t t = 0;
    for (; t + kFloatTileTokens <= num_tokens; t += kFloatTileTokens) tile(Tokens(), t);
    for (; t < num_tokens; ++t) tile(One(), t);
  };
  size_t r = row_begin;
  for (; r + kFloatTileRows <= row_end; r += kFloatTileRows) all_tokens(Rows(), r);
  for (; r < row_end; ++r) all_tokens(One(), r);
}

template <TensorType kType>
void FloatMatMul(const MatView& w, const float* x, size_t num_tokens, float* out,
                 ThreadPool& pool) {
  pool.ParallelFor(w.rows, kFloatTileRows, [&](size_t begin, size_t end, size_t) {
    if (kType != TensorType::kF32 && num_tokens >= kWidenMinTokens) {
      WidenedRows<kType>(w, x, num_tokens, begin, end, out);
    } else {
      FloatRows<kType>(w, x, num_tokens, begin, end, out + begin, w.rows);
    }
  }, /*chunks_per_thread=*/4);
}

void MatMulFloatTarget(const MatView& w, const float* x, size_t num_tokens, float* out,
                       ThreadPool& pool) {
  switch (w.type) {
    case TensorType::kF32: return FloatMatMul<TensorType::kF32>(w, x, num_tokens, out, pool);
    case TensorType::kF16: return FloatMatMul<TensorType::kF16>(w, x, num_tokens, out, pool);
    case TensorType::kBF16: return FloatMatMul<TensorType::kBF16>(w, x, num_tokens, out, pool);
    default: CHECK(false) << "MatMulFloat on a quantized type";
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {

HWY_EXPORT(MatMulFloatTarget);

void MatMulFloat(const MatView& w, const float* x, size_t num_tokens, float* out,
                 ThreadPool& pool) {
  HWY_DYNAMIC_DISPATCH(MatMulFloatTarget)(w, x, num_tokens, out, pool);
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
