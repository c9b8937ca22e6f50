// MatMul for the block formats without a dedicated kernel (Q2_K .. Q6_K, Q8_K,
// IQ4_NL, IQ4_XS), compiled once per SIMD target.
//
// A tile of weight rows is decoded once per call into a panel in quant_unpack.h's common form
// (signed 8-bit q in element order, a scale and a minimum per 16 elements), then every token
// streams over the panel: per 32 elements (16 on 128-bit targets) one integer dot product per
// (row, token), converted and scaled per int32 lane, so a lane's 4 products always share one
// 16-element scale. With 8-bit activations x ~= d_x q_x (per 32, scalar_ops.h):
//   sum w x ~= sum_16 (scale d_x) sum q_w q_x + (min d_x) sum q_x
// which is what the scalar twin (scalar::QuantizedRows) computes, up to summation order.
#include <cstring>
#include <type_traits>
#include <vector>

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/quant_unpack.h"
#include "drivers/cpu/scalar_ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/matmul_unpacked.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/simd_util-inl.h"
#include "hwy/highway.h"
#include "util/logging.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR

void MatMulUnpackedTarget(const MatView& w, const QuantizedActivations& x, float* out,
                          ThreadPool& pool) {
  pool.ParallelFor(w.rows, 1, [&](size_t begin, size_t end, size_t) {
    scalar::QuantizedRows(w, x, begin, end, out);
  }, /*chunks_per_thread=*/4);
}

#else  // HWY_TARGET != HWY_SCALAR

inline constexpr size_t kPanelRows = 4;
// Tokens per register tile: kPanelRows * kTileTokens accumulators must fit beside the
// weights (32 vector registers on AVX-512 targets, 16 elsewhere).
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
inline constexpr size_t kTileTokens = 4;
#else
inline constexpr size_t kTileTokens = 2;
#endif

// One thread's decoded row tile, reused across tiles and calls.
struct UnpackedPanel {
  std::vector<int8_t> q;      // [rows][cols]
  std::vector<float> scale;   // [rows][cols / 16]
  std::vector<float> min;     // [rows][cols / 16]
};

// The formats real Q4_K_M / Q5_K_M files carry in their large matrices decode q with vectors
// here (the same values as Unpack32); the others use Unpack32 as it is.
template <TensorType kType>
inline constexpr bool kSimdDecode = kType == TensorType::kQ4_K || kType == TensorType::kQ5_K ||
                                    kType == TensorType::kQ6_K;

template <size_t kShift>
HWY_INLINE VU8 ShiftedBits(VU8 v, uint8_t mask) {
  return hn::And(hn::ShiftRight<kShift>(v), hn::Set(DU8(), mask));
}

// q of unit u of a Q4_K, Q5_K or Q6_K row into dst[0..32), as Unpack32 computes them.
template <TensorType kType>
HWY_INLINE void DecodeQ(const uint8_t* HWY_RESTRICT row, size_t u, int8_t* HWY_RESTRICT dst) {
  constexpr size_t kL = hn::MaxLanes(DU8());
  if constexpr (kType == TensorType::kQ6_K) {
    const auto& b = reinterpret_cast<const BlockQ6_K*>(row)[u / 8];
    const size_t h = (u % 8) / 4, k = u % 4;
    const uint8_t* ql = b.ql + 64 * h + 32 * (k % 2);
    const uint8_t* qh = b.qh + 32 * h;
    LLMASOS_UNROLL
    for (size_t v = 0; v < kVecsPerBlock; ++v) {
      const VU8 lo_bytes = hn::LoadU(DU8(), ql + v * kL);
      const VU8 lo = k < 2 ? ShiftedBits<0>(lo_bytes, 0x0F) : ShiftedBits<4>(lo_bytes, 0x0F);
      const VU8 hi_bytes = hn::LoadU(DU8(), qh + v * kL);
      VU8 hi;
      switch (k) {
        case 0: hi = ShiftedBits<0>(hi_bytes, 3); break;
        case 1: hi = ShiftedBits<2>(hi_bytes, 3); break;
        case 2: hi = ShiftedBits<4>(hi_bytes, 3); break;
        default: hi = ShiftedBits<6>(hi_bytes, 3); break;
      }
      const VU8 q = hn::Or(lo, hn::ShiftLeft<4>(hi));
      hn::StoreU(hn::Sub(hn::BitCast(DI8(), q), hn::Set(DI8(), int8_t{32})), DI8(), dst + v * kL);
    }
  } else {
    using Block = std::conditional_t<kType == TensorType::kQ4_K, BlockQ4_K, BlockQ5_K>;
    const auto& b = reinterpret_cast<const Block*>(row)[u / 8];
    const size_t j = u % 8;
    const uint8_t* qs = b.qs + 32 * (j / 2);
    LLMASOS_UNROLL
    for (size_t v = 0; v < kVecsPerBlock; ++v) {
      const VU8 bytes = hn::LoadU(DU8(), qs + v * kL);
      VU8 q = j % 2 == 0 ? ShiftedBits<0>(bytes, 0x0F) : ShiftedBits<4>(bytes, 0x0F);
      if constexpr (kType == TensorType::kQ5_K) {
        const VU8 bit = hn::And(hn::LoadU(DU8(), b.qh + v * kL), hn::Set(DU8(), static_cast<uint8_t>(1u << j)));
        q = hn::Or(q, hn::IfThenElseZero(hn::Ne(bit, hn::Zero(DU8())), hn::Set(DU8(), uint8_t{16})));
      }
      hn::StoreU(hn::BitCast(DI8(), q), DI8(), dst + v * kL);
    }
  }
}

template <TensorType kType>
void FillPanel(const uint8_t* HWY_RESTRICT w_rows, size_t row_bytes, size_t num_rows,
               size_t cols, UnpackedPanel& p) {
  Unpacked32 u;
  const size_t halves = cols / 16;
  for (size_t r = 0; r < num_rows; ++r) {
    const uint8_t* row = w_rows + r * row_bytes;
    for (size_t b = 0; b < cols / 32; ++b) {
      if constexpr (kSimdDecode<kType>) {
        DecodeQ<kType>(row, b, &p.q[r * cols + 32 * b]);
        UnpackScales<kType>(row, b, u);
      } else {
        Unpack32<kType>(row, b, u);
        std::memcpy(&p.q[r * cols + 32 * b], u.q, 32);
      }
      p.scale[r * halves + 2 * b] = u.scale[0];
      p.scale[r * halves + 2 * b + 1] = u.scale[1];
      p.min[r * halves + 2 * b] = u.min[0];
      p.min[r * halves + 2 * b + 1] = u.min[1];
    }
  }
}

// The per-16 values of `s16` spread over the int32 lanes of the vector of bytes at `offset`:
// 16 bytes are 4 lanes, so a 256-bit vector holds two halves and a 128-bit one a single half.
HWY_INLINE VF32 LaneValues(const float* HWY_RESTRICT s16, size_t offset) {
  if constexpr (hn::MaxLanes(DF32()) == 8) {
    const hn::Half<DF32> dh;
    return hn::Combine(DF32(), hn::Set(dh, s16[offset / 16 + 1]), hn::Set(dh, s16[offset / 16]));
  } else {  // 4 lanes
    return hn::Set(DF32(), s16[offset / 16]);
  }
}

// out[t * out_stride + r] for the panel's first kR rows and kT tokens.
template <TensorType kType, size_t kR, size_t kT>
HWY_NOINLINE void UnpackedTile(const UnpackedPanel& p, size_t cols, const int8_t* HWY_RESTRICT xq,
                               const float* HWY_RESTRICT xd, size_t num_blocks,
                               float* HWY_RESTRICT out, size_t out_stride) {
  constexpr bool kHasMin = kUnpackHasMin<kType>;
  const DF32 df;
  const DI32 di32;
  const size_t halves = cols / 16;
  VF32 acc[kR][kT];
  LLMASOS_UNROLL
  for (size_t r = 0; r < kR; ++r) {
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) acc[r][t] = hn::Zero(df);
  }
  constexpr size_t kStep = hn::MaxLanes(DU8());
  const int8_t* HWY_RESTRICT pq = p.q.data();
  const float* HWY_RESTRICT ps = p.scale.data();
  const float* HWY_RESTRICT pm = p.min.data();
  for (size_t offset = 0; offset < cols; offset += kStep) {
    const size_t b = offset / 32;
    VI8 w[kR];
    VF32 sc[kR], mn[kR];
    LLMASOS_UNROLL
    for (size_t r = 0; r < kR; ++r) {
      w[r] = hn::LoadU(DI8(), pq + r * cols + offset);
      sc[r] = LaneValues(ps + r * halves, offset);
      if constexpr (kHasMin) mn[r] = LaneValues(pm + r * halves, offset);
    }
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) {
      const VI8 x = hn::LoadU(DI8(), xq + t * cols + offset);
      const VF32 dx = hn::Set(df, xd[t * num_blocks + b]);
      VF32 xs = hn::Zero(df);
      if constexpr (kHasMin) {
        xs = hn::Mul(hn::ConvertTo(df, DotU8S8(hn::Set(DU8(), uint8_t{1}), x, hn::Zero(di32))), dx);
      }
      LLMASOS_UNROLL
      for (size_t r = 0; r < kR; ++r) {
        VI32 dot;
        if constexpr (kUnsignedUnpack<kType>) {
          dot = DotU8S8(hn::BitCast(DU8(), w[r]), x, hn::Zero(di32));
        } else {
          dot = DotS8S8(w[r], x, hn::Zero(di32));
        }
        acc[r][t] = hn::MulAdd(hn::ConvertTo(df, dot), hn::Mul(sc[r], dx), acc[r][t]);
        if constexpr (kHasMin) acc[r][t] = hn::MulAdd(xs, mn[r], acc[r][t]);
      }
    }
  }
  LLMASOS_UNROLL
  for (size_t r = 0; r < kR; ++r) {
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) out[t * out_stride + r] = ReduceSumF(df, acc[r][t]);
  }
}

template <TensorType kType>
void UnpackedRows(const MatView& w, const QuantizedActivations& x, size_t row_begin,
                  size_t row_end, float* out) {
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const auto* base = static_cast<const uint8_t*>(w.data);
  thread_local UnpackedPanel panel;
  panel.q.resize(kPanelRows * w.cols);
  panel.scale.resize(kPanelRows * w.cols / 16);
  panel.min.resize(kPanelRows * w.cols / 16);
  auto all_tokens = [&](auto rows_tag, size_t r) {
    constexpr size_t kR = decltype(rows_tag)::value;
    FillPanel<kType>(base + r * w.row_bytes, w.row_bytes, kR, w.cols, panel);
    size_t t = 0;
    for (; t + kTileTokens <= x.num_tokens; t += kTileTokens) {
      UnpackedTile<kType, kR, kTileTokens>(panel, w.cols, x.qs + t * x.cols, x.d + t * num_blocks,
                                           num_blocks, out + t * w.rows + r, w.rows);
    }
    for (; t < x.num_tokens; ++t) {
      UnpackedTile<kType, kR, 1>(panel, w.cols, x.qs + t * x.cols, x.d + t * num_blocks,
                                 num_blocks, out + t * w.rows + r, w.rows);
    }
  };
  size_t r = row_begin;
  for (; r + kPanelRows <= row_end; r += kPanelRows) {
    all_tokens(std::integral_constant<size_t, kPanelRows>(), r);
  }
  for (; r < row_end; ++r) all_tokens(std::integral_constant<size_t, 1>(), r);
}

void MatMulUnpackedTarget(const MatView& w, const QuantizedActivations& x, float* out,
                          ThreadPool& pool) {
  VisitQuantType(w.type, [&](auto type_tag) {
    constexpr TensorType kType = decltype(type_tag)::value;
    if constexpr (kType == TensorType::kF32) {
      CHECK(false) << "MatMulUnpacked: not a block-quantized type";
    } else {
      pool.ParallelFor(w.rows, kPanelRows, [&](size_t begin, size_t end, size_t) {
        UnpackedRows<kType>(w, x, begin, end, out);
      }, /*chunks_per_thread=*/4);
    }
  });
}

#endif  // HWY_TARGET != HWY_SCALAR

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {

HWY_EXPORT(MatMulUnpackedTarget);

void MatMulUnpacked(const MatView& w, const QuantizedActivations& x, float* out,
                    ThreadPool& pool) {
  CHECK(IsBlockQuantized(w.type));
  HWY_DYNAMIC_DISPATCH(MatMulUnpackedTarget)(w, x, out, pool);
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
