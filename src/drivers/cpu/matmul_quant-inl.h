// Quantized-weight MatMul for one Highway target: register tiles of kRows weight rows by
// kTokens tokens, integer dot products per block of 32, one float FMA per block and tile cell.
// Two paths:
//   * direct (decode and small batches): blocks are unpacked in registers per tile;
//   * panels (8 tokens and more): a row tile is unpacked once into a scratch panel and every
//     token tile streams over it with full-width vectors (512-bit on AVX-512).
// Rows are split over the thread pool; within a thread, a row tile stays in L1 while all
// tokens pass over it, so weights are read from memory once per call.
//
// Per block b of row r and token t (see scalar_ops.h for the activation format):
//   sum_j w[j] x[j] ~= (d_w d_x) * sum_j q_w[j] q_x[j]  +  m_w * s_x
// where Q8_0 has m_w = 0, Q4_1 and Q5_1 store m_w, and Q4_0 (w = d (q - 8)) is Q4_1 with
// m_w = -8 d_w (Q5_0: -16 d_w), so the 4- and 5-bit types multiply unsigned values and never
// subtract the offset per element. IQ4_NL (w = d grid[q]) has m_w = 0 like Q8_0: one byte
// shuffle per vector turns its nibbles into the signed grid values, multiplied with the sign
// trick (DotS8S8), since grid + 128 reaches 241 and would saturate pmaddubsw's pair sums.
#if defined(LLMASOS_DRIVERS_CPU_MATMUL_QUANT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LLMASOS_DRIVERS_CPU_MATMUL_QUANT_INL_H_
#undef LLMASOS_DRIVERS_CPU_MATMUL_QUANT_INL_H_
#else
#define LLMASOS_DRIVERS_CPU_MATMUL_QUANT_INL_H_
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

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
// Rows per tile of the direct kernel (QuantTile) with several tokens. Q8_0 runs its prefill
// there on targets without VNNI panels, and takes 4 rows on every target: its blocks need no
// unpacking, so 16 accumulators spill less than 2 x 4 loses to reloading x. kernels_bench,
// AVX2 (Zen 3), [8192, 2048] Q8_0, 128 tokens, 1 thread, CPU time, best of 3 in each of three
// interleaved rounds: 2 x 4 63.1-63.4 ms, 4 x 4 57.0-57.9, 4 x 2 63.6-64.4.
template <TensorType kType>
inline constexpr size_t kDirectTileRows = kType == TensorType::kQ8_0 ? 4 : kPrefillRows;
// Rows per tile of the panel path (PanelTile, 8 tokens and more) on every target: a panel's
// rows are unpacked once, so only the accumulators and a token's x are live. kernels_bench,
// AVX2 (Zen 3), Q4_1 x 512 tokens, 1 thread, CPU time, best of 3 in three interleaved rounds,
// 2 / 4 rows: [1536, 576] 11.7-12.0 / 10.7-11.1 ms, [576, 1536] 10.9-11.4 / 10.5-11.0.
inline constexpr size_t kPanelTileRows = 4;
// One token: one row at a time, so a thread reads its rows as one sequential stream that the
// hardware prefetcher follows (as the K-quants' direct kernel does, matmul_unpacked.cc). Four
// rows at a time read four interleaved streams: on AVX2 (Zen 3, one thread, CPU time per call)
// Qwen2.5-0.5B's output [151936, 896] Q8_0 took 18.5-19.1 ms against 10.3-11.6 ms, and its 24
// ffn_gate stacked [116736, 896] Q5_0 14.5-14.9 ms against 8.3-8.4 ms (kernels_bench
// MatVecReal); in-cache shapes are unchanged.
inline constexpr size_t kDecodeRows = 1;

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
template <>
struct QuantBlockTraits<TensorType::kIQ4_NL> {
  using Block = BlockIQ4_NL;
  static constexpr bool kHasMin = false;
};
// Q5_0 (w = d (q - 16)) is Q5_1 with m_w = -16 d_w, as Q4_0 is Q4_1 with -8 d_w.
template <>
struct QuantBlockTraits<TensorType::kQ5_0> {
  using Block = BlockQ5_0;
  static constexpr bool kHasMin = true;
};
template <>
struct QuantBlockTraits<TensorType::kQ5_1> {
  using Block = BlockQ5_1;
  static constexpr bool kHasMin = true;
};

// Q5: sets bit 4 of the 32 unpacked nibbles from the block's 32-bit qh (bit j for element j).
// Each byte lane looks up byte j / 8 of qh (replicated in every 4 bytes, so the lookup stays
// within its 128-bit block) and tests bit j % 8.
HWY_INLINE void AddFifthBits(const uint8_t* HWY_RESTRICT qh_bytes, VU8 (&w)[kVecsPerBlock]) {
  HWY_ALIGN static constexpr uint8_t kByteOf[32] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};
  HWY_ALIGN static constexpr uint8_t kBitOf[32] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128,
                                                   1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, sizeof(qh));
  const VU8 bytes = hn::BitCast(DU8(), hn::Set(DI32(), static_cast<int32_t>(qh)));
  const VU8 sixteen = hn::Set(DU8(), uint8_t{0x10});
  LLMASOS_UNROLL
  for (size_t v = 0; v < kVecsPerBlock; ++v) {
    const size_t at = v * hn::MaxLanes(DU8());
    const VU8 picked = hn::TableLookupBytes(bytes, hn::Load(DU8(), kByteOf + at));
    const auto set = hn::TestBit(picked, hn::Load(DU8(), kBitOf + at));
    w[v] = hn::Or(w[v], hn::IfThenElseZero(set, sixteen));
  }
}

// Whether a type's block values are signed bytes (multiplied by DotS8S8) rather than unsigned.
template <TensorType kType>
inline constexpr bool kSignedValues = kType == TensorType::kQ8_0 || kType == TensorType::kIQ4_NL;

// One weight block made ready for dot products: its lanes, scale and (Q4) minimum.
template <TensorType kType>
struct LoadedBlock {
  hn::Vec<std::conditional_t<kSignedValues<kType>, DI8, DU8>> w[kVecsPerBlock];
  float d;
  float m;
};

template <TensorType kType>
HWY_INLINE void LoadBlock(const typename QuantBlockTraits<kType>::Block* HWY_RESTRICT blk,
                          LoadedBlock<kType>& out) {
  if constexpr (kType == TensorType::kQ8_0) {
    LLMASOS_UNROLL
    for (size_t v = 0; v < kVecsPerBlock; ++v) {
      out.w[v] = hn::LoadU(DI8(), blk->qs + v * hn::MaxLanes(DI8()));
    }
    out.d = LoadBlockScale(&blk->d);
    out.m = 0.0f;
  } else if constexpr (kType == TensorType::kIQ4_NL) {
    VU8 idx[kVecsPerBlock];
    UnpackNibbles(blk->qs, idx);
    LLMASOS_UNROLL
    for (size_t v = 0; v < kVecsPerBlock; ++v) out.w[v] = LookUpIq4Grid(idx[v]);
    out.d = LoadBlockScale(&blk->d);
    out.m = 0.0f;
  } else if constexpr (kType == TensorType::kQ5_0 || kType == TensorType::kQ5_1) {
    UnpackNibbles(blk->qs, out.w);
    AddFifthBits(blk->qh, out.w);
    out.d = LoadBlockScale(&blk->d);
    if constexpr (kType == TensorType::kQ5_1) {
      out.m = HalfToFloat(blk->m);
    } else {
      out.m = -16.0f * out.d;
    }
  } else {
    UnpackNibbles(blk->qs, out.w);
    if constexpr (kType == TensorType::kQ4_1) {
#if LLMASOS_X86_256
      // d and m are adjacent halves: one load and one conversion for both.
      uint32_t dm;
      std::memcpy(&dm, &blk->d, sizeof(dm));
      const __m128 both = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dm)));
      out.d = _mm_cvtss_f32(both);
      out.m = _mm_cvtss_f32(_mm_movehdup_ps(both));
#else
      out.d = HalfToFloat(blk->d);
      out.m = HalfToFloat(blk->m);
#endif
    } else {
      out.d = LoadBlockScale(&blk->d);
      out.m = -8.0f * out.d;
    }
  }
}

template <TensorType kType>
HWY_INLINE VI32 BlockDot(const LoadedBlock<kType>& w, const VI8 (&x)[kVecsPerBlock]) {
  VI32 isum = hn::Zero(DI32());
  LLMASOS_UNROLL
  for (size_t v = 0; v < kVecsPerBlock; ++v) {
    if constexpr (kSignedValues<kType>) {
      isum = DotS8S8(w.w[v], x[v], isum);
    } else {
      isum = DotU8S8(w.w[v], x[v], isum);
    }
  }
  return isum;
}

// out[t * out_stride + r] = row r of the tile times token t, r < kRows, t < kTokens.
//   w_rows: first row of the tile; rows are row_bytes apart.
//   xq, xd: the tile's first token's quantized activations and scales (rows cols and
//   num_blocks apart); xs: block sums of the tile's first token, xs[b * xs_stride + t].
template <TensorType kType, size_t kRows, size_t kTokens>
HWY_NOINLINE void QuantTile(const uint8_t* HWY_RESTRICT w_rows, size_t row_bytes,
                            size_t num_blocks, const int8_t* HWY_RESTRICT xq,
                            const float* HWY_RESTRICT xd, const float* HWY_RESTRICT xs,
                            size_t xs_stride, size_t cols, float* HWY_RESTRICT out,
                            size_t out_stride) {
  using Traits = QuantBlockTraits<kType>;
  using Block = typename Traits::Block;
  const DF32 df;
  // The min terms of a row for the tile's tokens, one lane per token: sum_b m_w * s_x.
  const hn::FixedTag<float, kTokens> dt;
  VF32 acc[kRows][kTokens];
  hn::Vec<decltype(dt)> min_acc[kRows];
  LLMASOS_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    min_acc[r] = hn::Zero(dt);
    LLMASOS_UNROLL
    for (size_t t = 0; t < kTokens; ++t) acc[r][t] = hn::Zero(df);
  }
  for (size_t b = 0; b < num_blocks; ++b) {
    LoadedBlock<kType> w[kRows];
    LLMASOS_UNROLL
    for (size_t r = 0; r < kRows; ++r) {
      LoadBlock<kType>(reinterpret_cast<const Block*>(w_rows + r * row_bytes) + b, w[r]);
    }
    VF32 dw[kRows];
    LLMASOS_UNROLL
    for (size_t r = 0; r < kRows; ++r) {
      dw[r] = hn::Set(df, w[r].d);
      if constexpr (Traits::kHasMin) {
        min_acc[r] = hn::MulAdd(hn::Set(dt, w[r].m), hn::LoadU(dt, xs + b * xs_stride), min_acc[r]);
      }
    }
    LLMASOS_UNROLL
    for (size_t t = 0; t < kTokens; ++t) {
      VI8 x[kVecsPerBlock];
      const int8_t* x_blk = xq + t * cols + b * kBlockBytes;
      LLMASOS_UNROLL
      for (size_t v = 0; v < kVecsPerBlock; ++v) {
        x[v] = hn::LoadU(DI8(), x_blk + v * hn::MaxLanes(DI8()));
      }
      // d_w d_x by one vector multiply per tile cell (see Opaque): the same rounded product
      // as DecodeRows' scalar one.
      const VF32 dx = Opaque(hn::Set(df, xd[t * num_blocks + b]));
      LLMASOS_UNROLL
      for (size_t r = 0; r < kRows; ++r) {
        const VF32 prod = hn::ConvertTo(df, BlockDot<kType>(w[r], x));
        acc[r][t] = hn::MulAdd(prod, hn::Mul(dw[r], dx), acc[r][t]);
      }
    }
  }
  LLMASOS_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    float min_terms[kTokens];
    hn::StoreU(min_acc[r], dt, min_terms);
    LLMASOS_UNROLL
    for (size_t t = 0; t < kTokens; ++t) {
      out[t * out_stride + r] = ReduceSumF(df, acc[r][t]) + min_terms[t];
    }
  }
}


// ---- Decode: one token, one row at a time ---------------------------------------------------
// out[r] = row r . token for rows [0, num_rows) starting at w_rows: a thread's rows read as one
// sequential stream (see kDecodeRows). Per block one integer dot product, converted and
// scaled by d_w d_x (one scalar product, broadcast) into the row's float accumulator. The min
// terms are one scalar FMA per block; Q4_0 and Q5_0 (m_w = -8 d_w, -16 d_w) sum d_w s_x and
// multiply by the offset once per row (exact: a power of two). The rows' loop is inside the
// function, so the constants are set up once per call rather than once per row.
// Every operation and its order per row are QuantTile's, so a token's result is bit-identical
// whether it runs alone or in a small batch (batch_forward_test relies on it): one accumulator,
// not two interleaved ones, which measured no faster (the loads bound it, not the FMA latency).
template <TensorType kType>
HWY_NOINLINE void DecodeRows(const uint8_t* HWY_RESTRICT w_rows, size_t row_bytes,
                             size_t num_rows, size_t num_blocks, const int8_t* HWY_RESTRICT xq,
                             const float* HWY_RESTRICT xd, const float* HWY_RESTRICT xs,
                             float* HWY_RESTRICT out) {
  using Traits = QuantBlockTraits<kType>;
  using Block = typename Traits::Block;
  // The min term's factor per d_w for the formats whose minimum is an offset of d_w.
  constexpr float kOffset = kType == TensorType::kQ4_0 ? -8.0f
                            : kType == TensorType::kQ5_0 ? -16.0f : 1.0f;
  constexpr bool kMinIsOffset = kType == TensorType::kQ4_0 || kType == TensorType::kQ5_0;
  const DF32 df;
  for (size_t r = 0; r < num_rows; ++r) {
    const auto* blocks = reinterpret_cast<const Block*>(w_rows + r * row_bytes);
    VF32 acc = hn::Zero(df);
    float min_acc = 0.0f;
    auto step = [&](size_t b) HWY_ATTR {
      LoadedBlock<kType> w;
      LoadBlock<kType>(blocks + b, w);
      VI8 x[kVecsPerBlock];
      LLMASOS_UNROLL
      for (size_t v = 0; v < kVecsPerBlock; ++v) {
        x[v] = hn::LoadU(DI8(), xq + b * kBlockBytes + v * hn::MaxLanes(DI8()));
      }
      const VF32 prod = hn::ConvertTo(df, BlockDot<kType>(w, x));
      acc = hn::MulAdd(prod, hn::Set(df, w.d * xd[b]), acc);
      if constexpr (Traits::kHasMin) min_acc = std::fma(kMinIsOffset ? w.d : w.m, xs[b], min_acc);
    };
    size_t b = 0;
    for (; b + 2 <= num_blocks; b += 2) {
      hwy::Prefetch(reinterpret_cast<const uint8_t*>(blocks + b) + kDecodePrefetchBytes);
      step(b);
      step(b + 1);
    }
    if (b < num_blocks) step(b);
    out[r] = ReduceSumF(df, acc) + kOffset * min_acc;
  }
}

// ---- Prefill: weight panels --------------------------------------------------------------
// With many tokens, a row tile's 4-bit blocks are unpacked once into a panel (unsigned bytes
// in element order, each block's scale repeated for its 8 int32 lanes, its minimum), and the
// token tiles then stream over the panel with full-width vectors: per vector step only loads,
// the integer dot product, one convert, one multiply of scales and one FMA per tile cell.
// Q8_0 uses panels where the CPU has VNNI: its signed weights q are stored as q + 128 (unsigned,
// no int16 saturation in vpdpbusd), and each token's accumulator starts at -128 * sum(x) per
// lane, which makes the integer result exactly sum q * x. Elsewhere Q8_0 keeps the direct
// kernel with the sign trick per (row, token) pair.

inline constexpr size_t kPanelMinTokens = 8;
inline constexpr size_t kLanesPerBlock = kBlockBytes / sizeof(int32_t);  // int32 lanes

template <TensorType kType>
inline constexpr bool kUsesPanel = kType == TensorType::kQ4_0 || kType == TensorType::kQ4_1 ||
                                   kType == TensorType::kQ5_0 || kType == TensorType::kQ5_1 ||
                                   (kType == TensorType::kQ8_0 && HWY_TARGET == HWY_AVX3_DL);

// Scratch of one row tile, reused by a thread across tiles and calls.
struct PanelScratch {
  std::vector<uint8_t> w;  // [rows, cols]
  std::vector<float> d;    // [rows, num_blocks * kLanesPerBlock]
  std::vector<float> m;    // [rows, num_blocks]
  std::vector<float> mins;  // [rows, num_tokens]: sum_b m * s_x per row and token
};

template <TensorType kType>
void PackPanel(const uint8_t* HWY_RESTRICT w_rows, size_t row_bytes, size_t num_rows,
               size_t num_blocks, uint8_t* HWY_RESTRICT pw, float* HWY_RESTRICT pd,
               float* HWY_RESTRICT pm) {
  using Block = typename QuantBlockTraits<kType>::Block;
  const hn::Full128<uint8_t> d16;
  const hn::FixedTag<float, 4> d4;
  const auto mask = hn::Set(d16, uint8_t{0x0F});
  for (size_t r = 0; r < num_rows; ++r) {
    const auto* blocks = reinterpret_cast<const Block*>(w_rows + r * row_bytes);
    for (size_t b = 0; b < num_blocks; ++b) {
      uint8_t* dst = pw + (r * num_blocks + b) * kBlockBytes;
      if constexpr (kType == TensorType::kQ5_0 || kType == TensorType::kQ5_1) {
        LoadedBlock<kType> lb;
        LoadBlock<kType>(blocks + b, lb);
        LLMASOS_UNROLL
        for (size_t v = 0; v < kVecsPerBlock; ++v) hn::StoreU(lb.w[v], DU8(), dst + v * hn::MaxLanes(DU8()));
        float* d_lanes = pd + (r * num_blocks + b) * kLanesPerBlock;
        hn::StoreU(hn::Set(d4, lb.d), d4, d_lanes);
        hn::StoreU(hn::Set(d4, lb.d), d4, d_lanes + 4);
        pm[r * num_blocks + b] = lb.m;
        continue;
      } else if constexpr (kType == TensorType::kQ8_0) {
        const auto bias = hn::Set(d16, uint8_t{0x80});  // q + 128 == q ^ 0x80 as bytes
        const auto* qs = reinterpret_cast<const uint8_t*>(blocks[b].qs);
        hn::StoreU(hn::Xor(hn::LoadU(d16, qs), bias), d16, dst);
        hn::StoreU(hn::Xor(hn::LoadU(d16, qs + 16), bias), d16, dst + 16);
      } else {
        const auto packed = hn::LoadU(d16, blocks[b].qs);
        hn::StoreU(hn::And(packed, mask), d16, dst);
        hn::StoreU(hn::And(hn::ShiftRight<4>(packed), mask), d16, dst + 16);
      }
      const float d = HalfToFloat(blocks[b].d);
      float* d_lanes = pd + (r * num_blocks + b) * kLanesPerBlock;
      hn::StoreU(hn::Set(d4, d), d4, d_lanes);
      hn::StoreU(hn::Set(d4, d), d4, d_lanes + 4);
      if constexpr (kType == TensorType::kQ4_1) {
        pm[r * num_blocks + b] = HalfToFloat(blocks[b].m);
      } else if constexpr (kType == TensorType::kQ8_0) {
        pm[r * num_blocks + b] = 0.0f;  // the integer dot product is already exact
      } else {
        pm[r * num_blocks + b] = -8.0f * d;
      }
    }
  }
}

// A token's block scales as a vector whose int32 lanes line up with the bytes at `offset`:
// one block per 256 bits, so a 512-bit vector holds two.
template <class DF>
HWY_INLINE hn::Vec<DF> ActivationScales(DF df, const float* HWY_RESTRICT xd, size_t offset) {
  const size_t b = offset / kBlockBytes;
  if constexpr (hn::MaxLanes(DF()) == 2 * kLanesPerBlock) {
    const hn::Half<DF> dh;
    return hn::Combine(df, hn::Set(dh, xd[b + 1]), hn::Set(dh, xd[b]));
  } else {
    return hn::Set(df, xd[b]);
  }
}

// acc[r][t] += (bytes [offset, offset + vector) of panel row r) . (token t), scaled.
template <TensorType kType, class D8, size_t kRows, size_t kTokens, class VF>
HWY_INLINE void PanelStep(D8 d8, size_t offset, const uint8_t* HWY_RESTRICT pw,
                          const float* HWY_RESTRICT pd, size_t cols, size_t num_blocks,
                          const int8_t* HWY_RESTRICT xq, const float* HWY_RESTRICT xd,
                          VF (&acc)[kRows][kTokens]) {
  const hn::RebindToSigned<D8> di8;
  const hn::Repartition<int32_t, D8> di32;
  const hn::Repartition<float, D8> df;
  hn::Vec<D8> w[kRows];
  hn::Vec<decltype(df)> dw[kRows];
  LLMASOS_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    w[r] = hn::LoadU(d8, pw + r * cols + offset);
    dw[r] = hn::LoadU(df, pd + r * num_blocks * kLanesPerBlock + offset / 4);
  }
  LLMASOS_UNROLL
  for (size_t t = 0; t < kTokens; ++t) {
    const auto x = hn::LoadU(di8, xq + t * cols + offset);
    const auto dx = ActivationScales(df, xd + t * num_blocks, offset);
    auto init = hn::Zero(di32);
    if constexpr (kType == TensorType::kQ8_0) {
      // (q + 128) . x - 128 * sum(x) per int32 lane of 4 bytes.
      init = hn::Neg(hn::ShiftLeft<7>(DotU8S8(hn::Set(d8, uint8_t{1}), x, hn::Zero(di32))));
    }
    LLMASOS_UNROLL
    for (size_t r = 0; r < kRows; ++r) {
      const auto prod = hn::ConvertTo(df, DotU8S8(w[r], x, init));
      if constexpr (std::is_same_v<VF, hn::Vec<decltype(df)>>) {
        acc[r][t] = hn::MulAdd(prod, hn::Mul(dw[r], dx), acc[r][t]);
      } else {
        // The 256-bit tail step after 512-bit steps: widen into the accumulator.
        const hn::Repartition<float, hn::ScalableTag<uint8_t>> df_full;
        acc[r][t] = hn::Add(acc[r][t], hn::ZeroExtendVector(df_full, hn::Mul(prod, hn::Mul(dw[r], dx))));
      }
    }
  }
}

// out[t * out_stride + r] for the panel's kRows rows and kTokens tokens (see QuantTile).
//   mins: the tile's min terms (PanelMinTerms), mins[r * mins_stride + t]; null for Q8_0.
template <TensorType kType, size_t kRows, size_t kTokens>
HWY_NOINLINE void PanelTile(const uint8_t* HWY_RESTRICT pw, const float* HWY_RESTRICT pd,
                            size_t num_blocks, const int8_t* HWY_RESTRICT xq,
                            const float* HWY_RESTRICT xd, size_t cols,
                            const float* HWY_RESTRICT mins, size_t mins_stride,
                            float* HWY_RESTRICT out, size_t out_stride) {
  const hn::ScalableTag<uint8_t> d8;
  const hn::Repartition<float, decltype(d8)> df;
  hn::Vec<decltype(df)> acc[kRows][kTokens];
  LLMASOS_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    LLMASOS_UNROLL
    for (size_t t = 0; t < kTokens; ++t) acc[r][t] = hn::Zero(df);
  }
  constexpr size_t kStep = hn::MaxLanes(hn::ScalableTag<uint8_t>());
  size_t offset = 0;
  for (; offset + kStep <= cols; offset += kStep) {
    PanelStep<kType>(d8, offset, pw, pd, cols, num_blocks, xq, xd, acc);
  }
  if (offset < cols) {  // one 32-byte block left over after 64-byte steps
    PanelStep<kType>(DU8(), offset, pw, pd, cols, num_blocks, xq, xd, acc);
  }
  LLMASOS_UNROLL
  for (size_t r = 0; r < kRows; ++r) {
    LLMASOS_UNROLL
    for (size_t t = 0; t < kTokens; ++t) {
      const float min_term = kType == TensorType::kQ8_0 ? 0.0f : mins[r * mins_stride + t];
      out[t * out_stride + r] = ReduceSumF(df, acc[r][t]) + min_term;
    }
  }
}

// mins[r * num_tokens + t] = sum_b pm[r][b] * s_x[b][t] for the panel's kRows rows and every
// token: the min terms of all the row tile's token tiles in one pass. Vectors run over tokens
// (s_x is [num_blocks, num_tokens]), four of them at a time for all rows, so each loaded s_x
// vector serves every row and the sums over blocks are 4 * kRows independent FMA chains,
// instead of one chain per token tile that waits on the FMA latency at every block. Each lane
// still adds the blocks in order from zero, as a per-tile sum would.
template <size_t kRows>
void PanelMinTerms(const float* HWY_RESTRICT pm, size_t num_blocks, const float* HWY_RESTRICT xs,
                   size_t num_tokens, float* HWY_RESTRICT mins) {
  const hn::ScalableTag<float> df;
  constexpr size_t kVecs = 4;
  const size_t lanes = hn::Lanes(df);
  size_t t = 0;
  for (; t + kVecs * lanes <= num_tokens; t += kVecs * lanes) {
    hn::Vec<decltype(df)> acc[kRows][kVecs];
    LLMASOS_UNROLL
    for (size_t r = 0; r < kRows; ++r) {
      LLMASOS_UNROLL
      for (size_t v = 0; v < kVecs; ++v) acc[r][v] = hn::Zero(df);
    }
    for (size_t b = 0; b < num_blocks; ++b) {
      hn::Vec<decltype(df)> sx[kVecs];
      LLMASOS_UNROLL
      for (size_t v = 0; v < kVecs; ++v) sx[v] = hn::LoadU(df, xs + b * num_tokens + t + v * lanes);
      LLMASOS_UNROLL
      for (size_t r = 0; r < kRows; ++r) {
        const auto mb = hn::Set(df, pm[r * num_blocks + b]);
        LLMASOS_UNROLL
        for (size_t v = 0; v < kVecs; ++v) acc[r][v] = hn::MulAdd(mb, sx[v], acc[r][v]);
      }
    }
    LLMASOS_UNROLL
    for (size_t r = 0; r < kRows; ++r) {
      LLMASOS_UNROLL
      for (size_t v = 0; v < kVecs; ++v) hn::StoreU(acc[r][v], df, mins + r * num_tokens + t + v * lanes);
    }
  }
  for (; t + lanes <= num_tokens; t += lanes) {
    for (size_t r = 0; r < kRows; ++r) {
      auto acc = hn::Zero(df);
      for (size_t b = 0; b < num_blocks; ++b) {
        acc = hn::MulAdd(hn::Set(df, pm[r * num_blocks + b]), hn::LoadU(df, xs + b * num_tokens + t), acc);
      }
      hn::StoreU(acc, df, mins + r * num_tokens + t);
    }
  }
  for (; t < num_tokens; ++t) {
    for (size_t r = 0; r < kRows; ++r) {
      float acc = 0.0f;
      // std::fma: the same single rounding per block as the vector lanes.
      for (size_t b = 0; b < num_blocks; ++b) acc = std::fma(pm[r * num_blocks + b], xs[b * num_tokens + t], acc);
      mins[r * num_tokens + t] = acc;
    }
  }
}

template <TensorType kType>
void PanelRows(const MatView& w, const QuantizedActivations& x, size_t row_begin,
               size_t row_end, float* out) {
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const auto* base = static_cast<const uint8_t*>(w.data);
  thread_local PanelScratch scratch;
  scratch.w.resize(kPanelTileRows * w.cols);
  scratch.d.resize(kPanelTileRows * num_blocks * kLanesPerBlock);
  scratch.m.resize(kPanelTileRows * num_blocks);
  constexpr bool kHasMin = kType != TensorType::kQ8_0;
  if (kHasMin) scratch.mins.resize(kPanelTileRows * x.num_tokens);
  const float* mins = kHasMin ? scratch.mins.data() : nullptr;
  auto tile = [&](auto rows_tag, auto tokens_tag, size_t r, size_t t) {
    constexpr size_t kR = decltype(rows_tag)::value;
    constexpr size_t kT = decltype(tokens_tag)::value;
    PanelTile<kType, kR, kT>(scratch.w.data(), scratch.d.data(), num_blocks, x.qs + t * x.cols,
                             x.d + t * num_blocks, x.cols, kHasMin ? mins + t : nullptr,
                             x.num_tokens, out + t * w.rows + r, w.rows);
  };
  auto pack = [&](auto rows_tag, size_t r) {
    constexpr size_t kR = decltype(rows_tag)::value;
    PackPanel<kType>(base + r * w.row_bytes, w.row_bytes, kR, num_blocks, scratch.w.data(),
                     scratch.d.data(), scratch.m.data());
    if constexpr (kHasMin) {
      PanelMinTerms<kR>(scratch.m.data(), num_blocks, x.s, x.num_tokens, scratch.mins.data());
    }
  };
  ForEachTile<kPanelTileRows, kPrefillTokens>(row_begin, row_end, x.num_tokens, pack, tile);
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
                             x.qs + t * x.cols, x.d + t * num_blocks, x.s + t,
                             x.num_tokens, x.cols, out + t * w.rows + r, w.rows);
  };
  if (x.num_tokens == 1) {
    return DecodeRows<kType>(base + row_begin * w.row_bytes, w.row_bytes, row_end - row_begin,
                             num_blocks, x.qs, x.d, x.s, out + row_begin);
  }
  if constexpr (kUsesPanel<kType>) {
    if (x.num_tokens >= kPanelMinTokens) return PanelRows<kType>(w, x, row_begin, row_end, out);
  }
  // Each weight tile stays in L1 while every token passes over it.
  ForEachTile<kDirectTileRows<kType>, kPrefillTokens>(row_begin, row_end, x.num_tokens, tile);
}

template <TensorType kType>
void QuantMatMul(const MatView& w, const QuantizedActivations& x, float* out,
                 ThreadPool& pool) {
  // Row chunks a multiple of the tile height; several per thread so a thread that was
  // descheduled (shared cores) does not hold up the others for a whole share.
  const size_t granule = x.num_tokens == 1                                 ? kDecodeRows
                         : kUsesPanel<kType> && x.num_tokens >= kPanelMinTokens ? kPanelTileRows
                                                                                  : kDirectTileRows<kType>;
  pool.ParallelFor(w.rows, granule, [&](size_t begin, size_t end, size_t /*thread_idx*/) {
    QuantRows<kType>(w, x, begin, end, out);
  }, /*chunks_per_thread=*/4);
}

#endif  // HWY_TARGET != HWY_SCALAR

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
