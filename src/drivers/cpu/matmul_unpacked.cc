// MatMul for the block formats without a dedicated kernel (Q2_K .. Q6_K, Q8_K, IQ4_XS),
// compiled once per SIMD target. Q2_K .. Q6_K and IQ4_XS (the large matrices
// of real K-quant and IQ4_XS files) have kernels of their own below: KQuantTile straight from
// the blocks for few tokens, KPanelTile over a decoded row tile for prefill.
//
// For the others, a tile of weight rows is decoded once per call into a panel in quant_unpack.h's common form
// (signed 8-bit q in element order, a scale and a minimum per 16 elements), then every token
// streams over the panel: per 32 elements (16 on 128-bit targets) one integer dot product per
// (row, token), converted and scaled per int32 lane, so a lane's 4 products always share one
// 16-element scale. With 8-bit activations x ~= d_x q_x (per 32, scalar_ops.h):
//   sum w x ~= sum_16 (scale d_x) sum q_w q_x + (min d_x) sum q_x
// which is what the scalar twin (scalar::QuantizedRows) computes, up to summation order.
#include <cstring>
#include <type_traits>
#include <utility>
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

// The formats real Q2_K .. Q6_K files carry in their large matrices decode q with vectors (the
// same values as Unpack32) into their own kernels (KQuantTile, KPanelTile); the others go
// through Unpack32 and UnpackedTile.
template <TensorType kType>
inline constexpr bool kSimdDecode = kType == TensorType::kQ2_K || kType == TensorType::kQ3_K ||
                                    kType == TensorType::kQ4_K || kType == TensorType::kQ5_K ||
                                    kType == TensorType::kQ6_K || kType == TensorType::kIQ4_XS;
// A scale per 16 elements, and a term from the token's half-block sums that
// SubtractStoredOffset takes: Q3_K's and Q6_K's signed scales with q decoded plus an offset (q +
// 4, q + 32), Q2_K's unsigned ones with a minimum per 16 (times dmin). Q4_K and Q5_K: a scale
// and a minimum per 32 (kUnitMins); IQ4_XS a signed scale per 32 and signed values (DotScaled).
template <TensorType kType>
inline constexpr bool kHalfScales =
    kType == TensorType::kQ2_K || kType == TensorType::kQ3_K || kType == TensorType::kQ6_K;
template <TensorType kType>
inline constexpr bool kUnitMins = kType == TensorType::kQ4_K || kType == TensorType::kQ5_K;

template <TensorType kType>
using KBlock = std::conditional_t<
    kType == TensorType::kQ2_K, BlockQ2_K,
    std::conditional_t<
        kType == TensorType::kQ3_K, BlockQ3_K,
        std::conditional_t<
            kType == TensorType::kQ4_K, BlockQ4_K,
            std::conditional_t<kType == TensorType::kQ5_K, BlockQ5_K,
                               std::conditional_t<kType == TensorType::kQ6_K, BlockQ6_K, BlockIQ4_XS>>>>>;

// (v << kShift) & mask for kShift > 0, (v >> -kShift) & mask for kShift < 0, shifting 16-bit
// lanes (one instruction on x86, where 8-bit shifts need a mask of their own). REQUIRES: mask
// keeps only bits that stay within their byte under the shift.
template <int kShift>
HWY_INLINE VU8 ShiftMask(VU8 v, uint8_t mask) {
  const hn::Repartition<uint16_t, DU8> d16;
  const auto w = hn::BitCast(d16, v);
  hn::Vec<decltype(d16)> shifted = w;
  if constexpr (kShift > 0) shifted = hn::ShiftLeft<kShift>(w);
  if constexpr (kShift < 0) shifted = hn::ShiftRight<-kShift>(w);
  return hn::And(hn::BitCast(DU8(), shifted), hn::Set(DU8(), mask));
}

// Vector v of unit kJ < 8 (elements 32 kJ ..) of super-block `blk`, unsigned: Q4_K's and
// Q5_K's q as Unpack32 computes it, Q6_K's as stored, q + 32 in [0, 63], Q3_K's q + 4 in
// [0, 7] (the kernels take the offset back out per super-block: SubtractStoredOffset), Q2_K's
// q in [0, 3]; IQ4_XS's grid value, signed (the bytes of an int8 vector, for DotScaled).
template <TensorType kType, size_t kJ>
HWY_INLINE VU8 DecodeQVec(const KBlock<kType>& b, size_t v) {
  constexpr size_t kL = hn::MaxLanes(DU8());
  if constexpr (kType == TensorType::kIQ4_XS) {
    // 16 bytes: elements 0..15 in the low nibbles, 16..31 in the high ones. A 256-bit vector
    // takes the low nibbles in its low half and the high ones in its high half; 128-bit vector
    // v the low (v = 0) or the high (v = 1) ones.
    const VU8 bytes = hn::LoadDup128(DU8(), b.qs + 16 * kJ);
    const VU8 low = hn::And(bytes, hn::Set(DU8(), 0x0F));
    const VU8 high = ShiftMask<-4>(bytes, 0x0F);
    VU8 idx;
    if constexpr (kL == 32) {
      (void)v;
      idx = hn::ConcatUpperLower(DU8(), high, low);
    } else {  // 16 lanes (DU8 holds at most 32)
      idx = v == 0 ? low : high;
    }
    return hn::BitCast(DU8(), LookUpIq4Grid(idx));
  } else if constexpr (kType == TensorType::kQ2_K || kType == TensorType::kQ3_K) {
    constexpr size_t kH = kJ / 4, kK = kJ % 4;  // element 128 kH + 32 kK + l
    const VU8 low2 = ShiftMask<-2 * static_cast<int>(kK)>(hn::LoadU(DU8(), b.qs + 32 * kH + v * kL), 0x03);
    if constexpr (kType == TensorType::kQ2_K) {
      return low2;
    } else {  // bit 4 kH + kK of hmask becomes bit 2 of q + 4
      return hn::Or(low2, ShiftMask<2 - static_cast<int>(4 * kH + kK)>(hn::LoadU(DU8(), b.hmask + v * kL), 0x04));
    }
  } else if constexpr (kType == TensorType::kQ6_K) {
    constexpr size_t kH = kJ / 4, kK = kJ % 4;  // element 128 kH + 32 kK + l
    const VU8 lo_bytes = hn::LoadU(DU8(), b.ql + 64 * kH + 32 * (kK % 2) + v * kL);
    const VU8 lo = ShiftMask<kK < 2 ? 0 : -4>(lo_bytes, 0x0F);
    // Bits 2 kK, 2 kK + 1 of qh become bits 4, 5 of q.
    const VU8 hi = ShiftMask<4 - 2 * static_cast<int>(kK)>(
        hn::LoadU(DU8(), b.qh + 32 * kH + v * kL), 0x30);
    return hn::Or(lo, hi);
  } else {
    const VU8 bytes = hn::LoadU(DU8(), b.qs + 32 * (kJ / 2) + v * kL);
    VU8 q = ShiftMask<kJ % 2 == 0 ? 0 : -4>(bytes, 0x0F);
    if constexpr (kType == TensorType::kQ5_K) {
      // Bit kJ of qh becomes bit 4 of q.
      q = hn::Or(q, ShiftMask<4 - static_cast<int>(kJ)>(hn::LoadU(DU8(), b.qh + v * kL), 0x10));
    }
    return q;
  }
}

// DotU8S8Scaled for a unit's decoded w (DecodeQVec): unsigned for every type but IQ4_XS, whose
// grid values are signed. For those, w x = |w| (x with w's sign, CopySignI8) as in DotS8S8:
// pmaddubsw's unsigned operand is then |w| <= 127 and its pair sums stay below 2^15. The
// activations are in [-127, 127], so negating one is exact.
template <TensorType kType>
HWY_INLINE VI32 DotScaled(VU8 w, VI8 x, hn::Vec<DI16> s, VI32 acc) {
  if constexpr (kType == TensorType::kIQ4_XS) {
    const VI8 ws = hn::BitCast(DI8(), w);
    return DotU8S8Scaled(hn::BitCast(DU8(), hn::Abs(ws)), CopySignI8(x, ws), s, acc);
  } else {
    return DotU8S8Scaled(w, x, s, acc);
  }
}

// f(std::integral_constant<size_t, j>) for each unit j of a super-block, unrolled.
template <class F, size_t... kJ>
HWY_INLINE void ForEachUnit(F&& f, std::index_sequence<kJ...>) {
  (f(std::integral_constant<size_t, kJ>()), ...);
}
template <class F>
HWY_INLINE void ForEachUnit(F&& f) {
  ForEachUnit(f, std::make_index_sequence<8>());
}

template <TensorType kType>
void FillPanel(const uint8_t* HWY_RESTRICT w_rows, size_t row_bytes, size_t num_rows,
               size_t cols, UnpackedPanel& p) {
  Unpacked32 u;
  const size_t halves = cols / 16;
  auto scales = [&](size_t r, size_t b) {
    p.scale[r * halves + 2 * b] = u.scale[0];
    p.scale[r * halves + 2 * b + 1] = u.scale[1];
    p.min[r * halves + 2 * b] = u.min[0];
    p.min[r * halves + 2 * b + 1] = u.min[1];
  };
  for (size_t r = 0; r < num_rows; ++r) {
    const uint8_t* row = w_rows + r * row_bytes;
    for (size_t b = 0; b < cols / 32; ++b) {
      Unpack32<kType>(row, b, u);
      std::memcpy(&p.q[r * cols + 32 * b], u.q, 32);
      scales(r, b);
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
  ZeroTile(acc);
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
  StoreTileSums(acc, out, out_stride);
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
  auto fill = [&](auto rows_tag, size_t r) {
    FillPanel<kType>(base + r * w.row_bytes, w.row_bytes, decltype(rows_tag)::value, w.cols, panel);
  };
  auto tile = [&](auto rows_tag, auto tokens_tag, size_t r, size_t t) {
    UnpackedTile<kType, decltype(rows_tag)::value, decltype(tokens_tag)::value>(
        panel, w.cols, x.qs + t * x.cols, x.d + t * num_blocks, num_blocks, out + t * w.rows + r,
        w.rows);
  };
  ForEachTile<kPanelRows, kTileTokens>(row_begin, row_end, x.num_tokens, fill, tile);
}

// ---- Direct K-quant kernel (decode and small batches) ---------------------------------------
// Q2_K .. Q6_K and IQ4_XS straight from the file's blocks, without a panel. Per super-block a row's
// integer sub-block scales sc are read once; per 32 elements its q are decoded in registers and
//   idot = sum_pairs (q_w q_x) * sc    (pmaddubsw, then pmaddwd by sc instead of by 1)
// is exact in int32 (Q2_K, Q3_K, Q6_K: two sc per 32, one per 16-element half of the int16 lanes). The
// activations carry one scale d_x per super-block (ActivationGroupElems), so the 8 units' idot
// are added in int32 and scaled once (AddSuperBlock):
//   acc += float(sum_j idot_j) * (d_x d_w)   (per super-block),
// and Q4_K/Q5_K's minimums come from the activations' block sums s_x = d_x sum(q_x):
//   min term = -dmin * sum_j m_j s_x[j].
// 3 vector operations per 32 elements (pmaddubsw, pmaddwd, add) instead of the 4 a scale per
// 32 needs (pmaddubsw, pmaddwd, convert, FMA). The scalar twin computes the same products with
// the float scales per 32 (QuantizedRows), equal within a super-block.
inline constexpr size_t kDirectMaxTokens = 8;  // from here on the panel path is faster
// One token: one row at a time, so a thread reads its rows as one sequential stream, which the
// hardware prefetcher follows. Four rows at a time read four short streams (a 2048-column Q4_K
// row is 1152 bytes) that it must pick up again for every tile: on a Llama 3.2 1B's
// [8192, 2048] Q4_K (9.4 MB, from memory) that cost 2.3x the time per call, its
// [2048, 8192] Q6_K 1.75x (kernels_bench MatVec1B, one thread, CPU time).
inline constexpr size_t kDirectDecodeRows = 1;
inline constexpr size_t kDirectRows = 2;
inline constexpr size_t kDirectTokens = 2;

// Unit sums of a token's activations over one super-block, s_x[j] = d_x[j] * sum(q_x) for its
// 8 units as float lanes (one vector on 256-bit targets, two elsewhere), computed from d and
// the integer sums exactly as the quantizer computes s.
inline constexpr size_t kUnitVecs = 8 / hn::MaxLanes(DF32());

HWY_INLINE void UnitSums(const float* HWY_RESTRICT xd, const int32_t* HWY_RESTRICT isums,
                         VF32 (&s)[kUnitVecs]) {
  LLMASOS_UNROLL
  for (size_t i = 0; i < kUnitVecs; ++i) {
    const size_t at = i * hn::MaxLanes(DF32());
    s[i] = hn::Mul(hn::LoadU(DF32(), xd + at), hn::ConvertTo(DF32(), hn::LoadU(DI32(), isums + at)));
  }
}

// A super-block row's scales: d, the integer sub-block scales as int16 (Q4_K/Q5_K/IQ4_XS one per
// unit of 32, Q2_K/Q3_K/Q6_K one per 16; these also the 16 coefficients of the half-block sums
// for HalfBlockTerm: 4 sc or 32 sc, Q2_K's m), and Q4_K/Q5_K's minimums dmin * m_j as float
// lanes, one per unit.
struct KScales {
  HWY_ALIGN int16_t sc[16];
  HWY_ALIGN int16_t sc32[16];  // the offset times sc (the name is Q6_K's 32 sc); Q2_K: m
  VF32 dmin_m[kUnitVecs];
  float d;
  float dmin;  // Q2_K
#if LLMASOS_X86_256
  __m256i sc_vec;  // Q2_K, Q3_K, Q6_K: sc[0..15] as int16 lanes, for UnitScales' shuffles
#endif
};

template <TensorType kType>
HWY_INLINE void ReadKScales(const KBlock<kType>& b, KScales& s) {
  s.d = HalfToFloat(b.d);
  if constexpr (kType == TensorType::kIQ4_XS) {  // a signed 6-bit scale ls - 32 per unit
    for (size_t j = 0; j < 8; ++j) s.sc[j] = static_cast<int16_t>(unpack_internal::ScaleIQ4XS(b, j));
  } else if constexpr (kType == TensorType::kQ2_K) {  // byte i: sc in its low nibble, m in its high one
    s.dmin = HalfToFloat(b.dmin);
#if LLMASOS_X86_256
    const __m256i bytes = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    s.sc_vec = _mm256_and_si256(bytes, _mm256_set1_epi16(0x0F));
    _mm256_store_si256(reinterpret_cast<__m256i*>(s.sc32), _mm256_srli_epi16(bytes, 4));
#else
    for (size_t i = 0; i < 16; ++i) {
      s.sc[i] = static_cast<int16_t>(b.scales[i] & 0x0F);
      s.sc32[i] = static_cast<int16_t>(b.scales[i] >> 4);
    }
#endif
  } else if constexpr (kHalfScales<kType>) {
    // Q6_K's int8 scales as stored; Q3_K's 6-bit ones minus 32.
    constexpr bool kQ3 = kType == TensorType::kQ3_K;
    uint8_t q3_scales[16];
    if constexpr (kQ3) unpack_internal::ScalesQ3K(b.scales, q3_scales);
    constexpr int kOffsetShift = kQ3 ? 2 : 5;  // offset 4 or 32
#if LLMASOS_X86_256
    if constexpr (kQ3) {
      s.sc_vec = _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q3_scales))),
                                  _mm256_set1_epi16(32));
    } else {
      s.sc_vec = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(s.sc32), _mm256_slli_epi16(s.sc_vec, kOffsetShift));
#else
    for (size_t i = 0; i < 16; ++i) {
      int sc;
      if constexpr (kQ3) {
        sc = q3_scales[i] - 32;
      } else {
        sc = b.scales[i];
      }
      s.sc[i] = static_cast<int16_t>(sc);
      s.sc32[i] = static_cast<int16_t>(sc * (1 << kOffsetShift));
    }
#endif
  } else {
    // The 12 bytes hold 6-bit sc and m per unit j (see unpack_internal::ScaleMinK4): units
    // 0..3 in the low 6 bits of bytes 0..3 (sc) and 4..7 (m); units 4..7 in the nibbles of
    // bytes 8..11, with their top 2 bits in the top 2 bits of bytes 0..3 (sc) and 4..7 (m).
    // Four units at a time in 32-bit words.
    uint32_t w[3];
    std::memcpy(w, b.scales, sizeof(w));
    constexpr uint32_t kLow6 = 0x3F3F3F3F, kLow4 = 0x0F0F0F0F, kLow2 = 0x03030303;
    const uint32_t sc_m[4] = {w[0] & kLow6, (w[2] & kLow4) | (((w[0] >> 6) & kLow2) << 4),
                              w[1] & kLow6, ((w[2] >> 4) & kLow4) | (((w[1] >> 6) & kLow2) << 4)};
    uint8_t bytes[16];
    std::memcpy(bytes, sc_m, sizeof(bytes));  // sc[0..7], then m[0..7]
    const hn::Rebind<uint8_t, DF32> du8_f;
    const hn::Rebind<int32_t, DF32> di32_f;
    const VF32 dmin = hn::Set(DF32(), HalfToFloat(b.dmin));
    LLMASOS_UNROLL
    for (size_t i = 0; i < kUnitVecs; ++i) {
      const auto m = hn::PromoteTo(di32_f, hn::LoadU(du8_f, bytes + 8 + i * hn::MaxLanes(DF32())));
      s.dmin_m[i] = hn::Mul(dmin, hn::ConvertTo(DF32(), m));
    }
    const hn::Rebind<uint8_t, hn::FixedTag<int16_t, 8>> du8_8;
    hn::Store(hn::PromoteTo(hn::FixedTag<int16_t, 8>(), hn::LoadU(du8_8, bytes)),
              hn::FixedTag<int16_t, 8>(), s.sc);
  }
}

// The int16 multipliers of vector v of unit j: one scale for Q4_K/Q5_K/IQ4_XS; for kHalfScales sc[2j]
// on the lanes of elements 0..15 and sc[2j + 1] on those of 16..31 (the two halves of a 256-bit
// vector, or the two 128-bit vectors).
template <TensorType kType, size_t kJ>
HWY_INLINE hn::Vec<DI16> UnitScales(const KScales& s, size_t v) {
  if constexpr (!kHalfScales<kType>) {
    return hn::Set(DI16(), s.sc[kJ]);
  } else {
#if LLMASOS_X86_256
    // 32-bit lane kJ is the pair (sc[2 kJ], sc[2 kJ + 1]): broadcast it, then take its low
    // half in the low 128 bits and its high half in the high 128 bits.
    const __m256i pair = _mm256_permutevar8x32_epi32(s.sc_vec, _mm256_set1_epi32(kJ));
    const __m256i pick = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                          2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    (void)v;
    return hn::Vec<DI16>{_mm256_shuffle_epi8(pair, pick)};
#else
    return hn::Set(DI16(), s.sc[2 * kJ + v]);
#endif
  }
}

// Per int32 lane i: a[2i] b[2i] + a[2i + 1] b[2i + 1] (pmaddwd; other targets may pair the
// products in another lane order, the same in every kernel).
HWY_INLINE VI32 MulPairs16(hn::Vec<DI16> a, hn::Vec<DI16> b) {
#if LLMASOS_X86_256
  return VI32{_mm256_madd_epi16(a.raw, b.raw)};
#elif LLMASOS_X86_SIMD
  return VI32{_mm_madd_epi16(a.raw, b.raw)};
#else
  VI32 odd = hn::Zero(DI32());
  const VI32 even = hn::ReorderWidenMulAccumulate(DI32(), a, b, hn::Zero(DI32()), odd);
  return hn::Add(even, odd);
#endif
}

// Q6_K's q as decoded (DecodeQVec) is q + 32 (Q3_K's q + 4), which adds 32 sum_h sc[h] X[h] (4
// sum_h ...) to a super-block's integer sum, X[h] the token's sum of its quantized x over the 16
// elements of sub-block h (QuantizedActivations::half_sums). Taken back out per (row, token,
// super-block): one pmaddwd of the row's offset times sc (sc32[r], 16 int16) with the 16 X per
// 256-bit vector (two on 128-bit targets), in place of one psignb per 32 elements for a signed
// q. Exact in int32: |32 sc| <= 4096 and |X| <= 16 * 127.
template <size_t kR, size_t kT>
HWY_INLINE void SubtractStoredOffset(const int16_t* const (&sc32)[kR], const int16_t* HWY_RESTRICT half_sums,
                                 size_t token_stride, VI32 (&isb)[kR][kT]) {
  const DI16 d16;
  constexpr size_t kL16 = hn::MaxLanes(d16);
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) {
    LLMASOS_UNROLL
    for (size_t v = 0; v < 16 / kL16; ++v) {
      const auto sums = hn::LoadU(d16, half_sums + t * token_stride + v * kL16);
      LLMASOS_UNROLL
      for (size_t r = 0; r < kR; ++r) {
        isb[r][t] = hn::Sub(isb[r][t], MulPairs16(hn::LoadU(d16, sc32[r] + v * kL16), sums));
      }
    }
  }
}

// A super-block's end in both K-quant kernels: its integer sums isb[r][t] (sub-block scales
// applied, the 8 units added) scaled once, acc[r][t] += float(isb[r][t]) * (d_x d_w[r]), where
// d_x = xd[t * num_blocks] is the token's one scale for the super-block (the activations are
// quantized per 256 elements for these weights: ActivationGroupElems). The int32 sums are
// exact: per lane at most 8 units * (elements per lane and unit: 4 on 256-bit vectors, 8 on
// 128-bit ones) * 63 * 127 * 128 (Q6_K's q + 32), under 2^26, less SubtractStoredOffset's at most
// 2 * 4096 * 2032 per lane; the conversion to float is exact below 2^24 and otherwise rounds
// by far less than the activations' 8-bit rounding.
template <size_t kR, size_t kT>
HWY_INLINE void AddSuperBlock(const VI32 (&isb)[kR][kT], const float (&dw)[kR],
                              const float* HWY_RESTRICT xd, size_t num_blocks,
                              VF32 (&acc)[kR][kT]) {
  const DF32 df;
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) {
    const float dx = xd[t * num_blocks];
    LLMASOS_UNROLL
    for (size_t r = 0; r < kR; ++r) {
      acc[r][t] = hn::MulAdd(hn::ConvertTo(df, isb[r][t]), hn::Set(df, dx * dw[r]), acc[r][t]);
    }
  }
}

// The per-16 term of a super-block with scales per 16 (kHalfScales), from the token's half-block
// sums: Q3_K's and Q6_K's offset, taken out of the integer sums isb (sc32 the offset times sc);
// Q2_K's minimums, -dmin sum_h m_h X_h d_x added to acc (sc32 its m) before the super-block's
// isb are.
template <TensorType kType, size_t kR, size_t kT>
HWY_INLINE void HalfBlockTerm(const int16_t* const (&sc32)[kR], const float (&dmin)[kR],
                              const int16_t* HWY_RESTRICT half_sums, size_t num_blocks,
                              const float* HWY_RESTRICT xd, VI32 (&isb)[kR][kT],
                              VF32 (&acc)[kR][kT]) {
  if constexpr (kType == TensorType::kQ2_K) {
    VI32 mins[kR][kT];  // -sum_h m_h X_h
    ZeroTile(mins);
    SubtractStoredOffset(sc32, half_sums, 2 * num_blocks, mins);
    AddSuperBlock(mins, dmin, xd, num_blocks, acc);
  } else {
    (void)dmin;
    (void)xd;
    (void)acc;
    SubtractStoredOffset(sc32, half_sums, 2 * num_blocks, isb);
  }
}

// out[t * out_stride + r] for kR rows from w_rows (row_bytes apart) and kT tokens; xq, xd,
// isums and half_sums are the tile's first token's activations, scales, block sums and
// half-block sums (cols, num_blocks, num_blocks and 2 num_blocks apart per token).
template <TensorType kType, size_t kR, size_t kT>
HWY_NOINLINE void KQuantTile(const uint8_t* HWY_RESTRICT w_rows, size_t row_bytes,
                             size_t num_blocks, const int8_t* HWY_RESTRICT xq,
                             const float* HWY_RESTRICT xd, const int32_t* HWY_RESTRICT isums,
                             const int16_t* HWY_RESTRICT half_sums, size_t cols,
                             float* HWY_RESTRICT out, size_t out_stride) {
  using Block = KBlock<kType>;
  constexpr size_t kL = hn::MaxLanes(DU8());
  // Lanes summed at the end: element products and (Q4_K/Q5_K) the minimum terms.
  VF32 acc[kR][kT];
  ZeroTile(acc);
  for (size_t sb = 0; sb < cols / 256; ++sb) {
    if constexpr (kR == 1 && kT == 1) {  // decode: one row's stream
      const auto* ahead = reinterpret_cast<const uint8_t*>(
          reinterpret_cast<const Block*>(w_rows) + sb) + kDecodePrefetchBytes;
      LLMASOS_UNROLL
      for (size_t line = 0; line < sizeof(Block); line += 64) hwy::Prefetch(ahead + line);
    }
    const Block* blk[kR];
    KScales ks[kR];
    LLMASOS_UNROLL
    for (size_t r = 0; r < kR; ++r) {
      blk[r] = reinterpret_cast<const Block*>(w_rows + r * row_bytes) + sb;
      ReadKScales<kType>(*blk[r], ks[r]);
    }
    if constexpr (kUnitMins<kType>) {
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        VF32 sx[kUnitVecs];
        UnitSums(xd + t * num_blocks + 8 * sb, isums + t * num_blocks + 8 * sb, sx);
        LLMASOS_UNROLL
        for (size_t r = 0; r < kR; ++r) {
          LLMASOS_UNROLL
          for (size_t i = 0; i < kUnitVecs; ++i) {
            acc[r][t] = hn::NegMulAdd(ks[r].dmin_m[i], sx[i], acc[r][t]);
          }
        }
      }
    }
    // Decode (one row, one token) sums odd units apart: one accumulator would chain all eight
    // units' vpdpwssd (latency 4-5 cycles each) through one register. Integer sums: the same
    // result.
    constexpr bool kTwoChains = kR * kT == 1;
    VI32 isb[kR][kT], isb_odd[kR][kT];
    ZeroTile(isb);
    ZeroTile(isb_odd);
    ForEachUnit([&](auto j_tag) {
      constexpr size_t kJ = decltype(j_tag)::value;
      auto& sums = kTwoChains && kJ % 2 == 1 ? isb_odd : isb;
      const size_t b = 8 * sb + kJ;
      VI8 x[kT][kVecsPerBlock];
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        LLMASOS_UNROLL
        for (size_t v = 0; v < kVecsPerBlock; ++v) {
          x[t][v] = hn::LoadU(DI8(), xq + t * cols + 32 * b + v * kL);
        }
      }
      LLMASOS_UNROLL
      for (size_t r = 0; r < kR; ++r) {
        LLMASOS_UNROLL
        for (size_t v = 0; v < kVecsPerBlock; ++v) {
          const auto w = DecodeQVec<kType, kJ>(*blk[r], v);
          const auto sc = UnitScales<kType, kJ>(ks[r], v);
          LLMASOS_UNROLL
          for (size_t t = 0; t < kT; ++t) sums[r][t] = DotScaled<kType>(w, x[t][v], sc, sums[r][t]);
        }
      }
    });
    if constexpr (kTwoChains) isb[0][0] = hn::Add(isb[0][0], isb_odd[0][0]);
    if constexpr (kHalfScales<kType>) {
      const int16_t* sc32[kR];
      float dmin[kR];
      LLMASOS_UNROLL
      for (size_t r = 0; r < kR; ++r) {
        sc32[r] = ks[r].sc32;
        dmin[r] = ks[r].dmin;
      }
      HalfBlockTerm<kType>(sc32, dmin, half_sums + 16 * sb, num_blocks, xd + 8 * sb, isb, acc);
    }
    float dw[kR];
    LLMASOS_UNROLL
    for (size_t r = 0; r < kR; ++r) dw[r] = ks[r].d;
    AddSuperBlock(isb, dw, xd + 8 * sb, num_blocks, acc);
  }
  StoreTileSums(acc, out, out_stride);
}

// ---- K-quant panel kernel (prefill) ------------------------------------------------------
// KQuantTile's arithmetic over a row tile decoded once into a panel laid out for it, tokens
// streamed over the panel: per (row, token, 32 elements) one pmaddubsw, one pmaddwd by the
// sub-block scales and one int32 add; one conversion and one FMA per super-block
// (AddSuperBlock), and the per-16 term of Q2_K, Q3_K and Q6_K (HalfBlockTerm). Everything a
// row needs beyond that is decoded at fill time: q as DecodeQVec gives it, the int16
// multipliers in UnitScales' lane layout, d, Q4_K/Q5_K's dmin * m, the per-16 types' 16
// coefficients of the half-block sums and Q2_K's dmin. Each output lane sees the same integers
// and the same float operations in the same order as in KQuantTile, so a token's result is
// bit-identical whether it runs alone (direct kernel) or in a batch (panel).
// 3 x 3: nine int32 sums stay in registers beside a row's q and scales and a token's x (4 x 3
// spilled a few of its twelve to the stack in the inner loop). kernels_bench, AVX2 (Zen 3),
// 1 thread, CPU time, 128 tokens, best of 3, three interleaved rounds, 4 x 3 / 3 x 3 / 4 x 2:
// [8192, 2048] Q4_K 39.2-41.0 / 34.4-37.1 / 33.9-40.2 ms, [2048, 8192] Q6_K 44.1-50.7 /
// 44.2-48.8 / 60.0-60.9, [2048, 8192] Q4_K 39.8-44.7 / 35.4-40.8 / 44.9-45.4 (a busy machine;
// with a scale per 32 and 4 x 3 the first two were 45.8 and 53.4 ms). Q6_K as q + 32 with
// SubtractStoredOffset instead of |q - 32| and a psignb per product, Zen 4, same measure: [2048,
// 8192] Q6_K at 128 tokens 38.1 -> 32.2 ms; one token (direct kernel) 593 -> 459 us.
inline constexpr size_t kKPanelRows = 3;
inline constexpr size_t kKTileTokens = 3;

// A row tile decoded for KPanelTile, reused across tiles and calls: per unit of 32 elements,
// per row, one record (so the tile reads its panel as one sequential stream; separate
// [rows][cols] arrays put every row at the same offset modulo 4 KiB and thrash the L1's sets
// for 2^k columns) of
//   q      kBlockBytes: DecodeQVec's unsigned q
//   sc     kBlockBytes: UnitScales of each vector, int16
// and per super-block and row d and (Q4_K/Q5_K) the 8 dmin * m_j or (Q2_K/Q3_K/Q6_K) the 16
// coefficients of the half-block sums (Q2_K also dmin).
inline constexpr size_t kKRecordBytes = 2 * kBlockBytes;

struct KPanel {
  std::vector<uint8_t> records;  // [units][rows][kKRecordBytes]
  std::vector<float> dmin_m;     // [super-blocks][rows][8]
  std::vector<int16_t> sc32;     // [super-blocks][rows][16]
  std::vector<float> d;          // [super-blocks][rows]
  std::vector<float> dmin;       // [super-blocks][rows] (Q2_K)

  void Resize(size_t rows, size_t cols) {
    records.resize(rows * cols / 32 * kKRecordBytes);
    dmin_m.resize(rows * cols / 32);
    sc32.resize(rows * cols / 16);
    d.resize(rows * cols / 256);
    dmin.resize(rows * cols / 256);
  }
};

template <TensorType kType>
void FillKPanel(const uint8_t* HWY_RESTRICT w_rows, size_t row_bytes, size_t num_rows,
                size_t cols, KPanel& p) {
  constexpr size_t kL = hn::MaxLanes(DU8());
  constexpr size_t kRec = kKRecordBytes;
  for (size_t r = 0; r < num_rows; ++r) {
    const auto* blocks = reinterpret_cast<const KBlock<kType>*>(w_rows + r * row_bytes);
    for (size_t sb = 0; sb < cols / 256; ++sb) {
      KScales ks;
      ReadKScales<kType>(blocks[sb], ks);
      p.d[sb * num_rows + r] = ks.d;
      if constexpr (kHalfScales<kType>) {
        std::memcpy(&p.sc32[(sb * num_rows + r) * 16], ks.sc32, sizeof(ks.sc32));
        if constexpr (kType == TensorType::kQ2_K) p.dmin[sb * num_rows + r] = ks.dmin;
      } else if constexpr (kUnitMins<kType>) {
        LLMASOS_UNROLL
        for (size_t i = 0; i < kUnitVecs; ++i) {
          hn::StoreU(ks.dmin_m[i], DF32(), &p.dmin_m[(sb * num_rows + r) * 8 + i * hn::MaxLanes(DF32())]);
        }
      }
      ForEachUnit([&](auto j_tag) {
        constexpr size_t kJ = decltype(j_tag)::value;
        uint8_t* rec = &p.records[((8 * sb + kJ) * num_rows + r) * kRec];
        LLMASOS_UNROLL
        for (size_t v = 0; v < kVecsPerBlock; ++v) {
          hn::StoreU(DecodeQVec<kType, kJ>(blocks[sb], v), DU8(), rec + v * kL);
          hn::StoreU(UnitScales<kType, kJ>(ks, v), DI16(),
                     reinterpret_cast<int16_t*>(rec + kBlockBytes + v * kL));
        }
      });
    }
  }
}

// out[t * out_stride + r] for the panel's kR rows (the count it was filled with) and kT
// tokens; xq, xd, isums and half_sums as KQuantTile's.
template <TensorType kType, size_t kR, size_t kT>
HWY_NOINLINE void KPanelTile(const KPanel& p, size_t cols, const int8_t* HWY_RESTRICT xq,
                             const float* HWY_RESTRICT xd, const int32_t* HWY_RESTRICT isums,
                             const int16_t* HWY_RESTRICT half_sums, size_t num_blocks,
                             float* HWY_RESTRICT out, size_t out_stride) {
  constexpr size_t kL = hn::MaxLanes(DU8());
  constexpr size_t kRec = kKRecordBytes;
  const DF32 df;
  const uint8_t* HWY_RESTRICT rec = p.records.data();
  VF32 acc[kR][kT];
  ZeroTile(acc);
  for (size_t sb = 0; sb < cols / 256; ++sb) {
    if constexpr (kUnitMins<kType>) {
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        VF32 sx[kUnitVecs];
        UnitSums(xd + t * num_blocks + 8 * sb, isums + t * num_blocks + 8 * sb, sx);
        LLMASOS_UNROLL
        for (size_t r = 0; r < kR; ++r) {
          LLMASOS_UNROLL
          for (size_t i = 0; i < kUnitVecs; ++i) {
            const VF32 dmin_m = hn::LoadU(df, &p.dmin_m[(sb * kR + r) * 8 + i * hn::MaxLanes(df)]);
            acc[r][t] = hn::NegMulAdd(dmin_m, sx[i], acc[r][t]);
          }
        }
      }
    }
    VI32 isb[kR][kT];
    ZeroTile(isb);
    for (size_t b = 8 * sb; b < 8 * sb + 8; ++b, rec += kR * kRec) {
      LLMASOS_UNROLL
      for (size_t r = 0; r < kR; ++r) {
        const uint8_t* HWY_RESTRICT row_rec = rec + r * kRec;
        LLMASOS_UNROLL
        for (size_t v = 0; v < kVecsPerBlock; ++v) {
          const VU8 w = hn::LoadU(DU8(), row_rec + v * kL);
          const auto sc = hn::LoadU(DI16(), reinterpret_cast<const int16_t*>(row_rec + kBlockBytes + v * kL));
          LLMASOS_UNROLL
          for (size_t t = 0; t < kT; ++t) {
            const VI8 x = hn::LoadU(DI8(), xq + t * cols + 32 * b + v * kL);
            isb[r][t] = DotScaled<kType>(w, x, sc, isb[r][t]);
          }
        }
      }
    }
    if constexpr (kHalfScales<kType>) {
      const int16_t* sc32[kR];
      float dmin[kR];
      LLMASOS_UNROLL
      for (size_t r = 0; r < kR; ++r) {
        sc32[r] = &p.sc32[(sb * kR + r) * 16];
        dmin[r] = p.dmin[sb * kR + r];
      }
      HalfBlockTerm<kType>(sc32, dmin, half_sums + 16 * sb, num_blocks, xd + 8 * sb, isb, acc);
    }
    float dw[kR];
    LLMASOS_UNROLL
    for (size_t r = 0; r < kR; ++r) dw[r] = p.d[sb * kR + r];
    AddSuperBlock(isb, dw, xd + 8 * sb, num_blocks, acc);
  }
  StoreTileSums(acc, out, out_stride);
}

// Rows [row_begin, row_end) of the product through KPanelTile. REQUIRES: as KQuantRows.
template <TensorType kType>
void KPanelRows(const MatView& w, const QuantizedActivations& x, size_t row_begin,
                size_t row_end, float* out) {
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const auto* base = static_cast<const uint8_t*>(w.data);
  thread_local KPanel panel;
  panel.Resize(kKPanelRows, w.cols);
  auto fill = [&](auto rows_tag, size_t r) {
    FillKPanel<kType>(base + r * w.row_bytes, w.row_bytes, decltype(rows_tag)::value, w.cols, panel);
  };
  auto tile = [&](auto rows_tag, auto tokens_tag, size_t r, size_t t) {
    KPanelTile<kType, decltype(rows_tag)::value, decltype(tokens_tag)::value>(
        panel, w.cols, x.qs + t * x.cols, x.d + t * num_blocks, x.isums + t * num_blocks,
        x.half_sums + 2 * t * num_blocks, num_blocks, out + t * w.rows + r, w.rows);
  };
  ForEachTile<kKPanelRows, kKTileTokens>(row_begin, row_end, x.num_tokens, fill, tile);
}

// Rows [row_begin, row_end) of the product through KQuantTile. REQUIRES: kSimdDecode<kType>,
// x.isums and x.half_sums set.
template <TensorType kType>
void KQuantRows(const MatView& w, const QuantizedActivations& x, size_t row_begin,
                size_t row_end, float* out) {
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const auto* base = static_cast<const uint8_t*>(w.data);
  auto tile = [&](auto rows_tag, auto tokens_tag, size_t r, size_t t) {
    constexpr size_t kR = decltype(rows_tag)::value;
    constexpr size_t kT = decltype(tokens_tag)::value;
    KQuantTile<kType, kR, kT>(base + r * w.row_bytes, w.row_bytes, num_blocks, x.qs + t * x.cols,
                              x.d + t * num_blocks, x.isums + t * num_blocks,
                              x.half_sums + 2 * t * num_blocks, x.cols, out + t * w.rows + r,
                              w.rows);
  };
  if (x.num_tokens == 1) return ForEachTile<kDirectDecodeRows, 1>(row_begin, row_end, 1, tile);
  ForEachTile<kDirectRows, kDirectTokens>(row_begin, row_end, x.num_tokens, tile);
}

void MatMulUnpackedTarget(const MatView& w, const QuantizedActivations& x, float* out,
                          ThreadPool& pool) {
  VisitQuantType(w.type, [&](auto type_tag) {
    constexpr TensorType kType = decltype(type_tag)::value;
    if constexpr (kType == TensorType::kF32) {
      CHECK(false) << "MatMulUnpacked: not a block-quantized type";
    } else {
      if constexpr (kSimdDecode<kType>) {
        DCHECK(x.isums != nullptr && x.half_sums != nullptr);
        CHECK_EQ(x.group, kSuperBlockElems) << "K-quant kernels need one activation scale per 256";
        if (x.num_tokens < kDirectMaxTokens) {
          pool.ParallelFor(w.rows, kDirectDecodeRows, [&](size_t begin, size_t end, size_t) {
            KQuantRows<kType>(w, x, begin, end, out);
          }, /*chunks_per_thread=*/4);
        } else {
          pool.ParallelFor(w.rows, kKPanelRows, [&](size_t begin, size_t end, size_t) {
            KPanelRows<kType>(w, x, begin, end, out);
          }, /*chunks_per_thread=*/4);
        }
      } else {
        pool.ParallelFor(w.rows, kPanelRows, [&](size_t begin, size_t end, size_t) {
          UnpackedRows<kType>(w, x, begin, end, out);
        }, /*chunks_per_thread=*/4);
      }
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
