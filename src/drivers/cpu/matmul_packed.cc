// MatMul over weights repacked at load time (PackedMatrix; layout in matmul_internal.h).
//
// Why repack: with the file's layout a kernel keeps the K dimension in the vector lanes, so
// every (row, token) pair pays a conversion, a scale multiply and an FMA per block pair, and a
// horizontal sum at the end. In the packed layout the lanes are 16 rows: one vpdpbusd advances
// 16 (row, token) dot products by 4 elements against the token's 4 activation bytes broadcast,
// and the block's scale conversion, multiply and FMA serve 16 outputs at once. Results come
// out as 16 contiguous floats per token, with no horizontal sums. Q8_0 values are stored with
// a +128 bias (vpdpbusd multiplies unsigned by signed); the dot products start from -128 times
// the integer sum of the token's activations in the block, which cancels the bias exactly.
// IQ4_NL and IQ4_XS keep their 4-bit grid indices and look the values up (+ 128, one vpshufb
// per vector), cancelled as Q8_0's. F16 matrices use the same 16-row tiles with fp16 lanes
// against float activations. Q2_K .. Q6_K and IQ4_XS keep their integer sub-block scales per
// row lane and apply them to each unit's integer dot products (see PackedKTile).
//
// Kernels exist for x86 AVX-512 targets (Q8_0 and the IQ4 types need VNNI: without it
// pmaddubsw would saturate on biased values), and on AVX2 for Q4_0, Q4_1, Q5_0, Q5_1, Q4_K and
// Q5_K (the same tiles as two halves of 8 rows); elsewhere PackMatrix returns null and MatMul
// uses the file's layout. Writing and reading the layout (PackMatrixLayout,
// DequantizePackedRow) is portable code, in packed_layout.cc.
#include <algorithm>
#include <cstring>
#include <type_traits>

// GCC 12's AVX-512 intrinsics (maskless forms built on _mm512_undefined_*) trip these
// warnings falsely; the values they name are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/ops.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/matmul_packed.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/simd_util-inl.h"
#include "hwy/highway.h"
#include "util/logging.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {

// Calls fn(std::integral_constant<size_t, kT>(), t) for token groups [t, t + kT) covering
// [0, num_tokens): groups of kMax, then one of the rest.
template <size_t kN, class Fn>
HWY_INLINE void ForRestTokens(size_t rest, size_t t, const Fn& fn) {
  if constexpr (kN > 0) {
    if (rest == kN) return fn(std::integral_constant<size_t, kN>(), t);
    ForRestTokens<kN - 1>(rest, t, fn);
  }
}
template <size_t kMax, class Fn>
HWY_INLINE void ForTokenGroups(size_t num_tokens, const Fn& fn) {
  size_t t = 0;
  for (; t + kMax <= num_tokens; t += kMax) fn(std::integral_constant<size_t, kMax>(), t);
  ForRestTokens<kMax - 1>(num_tokens - t, t, fn);
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3

bool HasPackedKernelTarget(TensorType type) {
  return IsPackedType(type) && (!PackedKernelNeedsVnni(type) || HWY_TARGET == HWY_AVX3_DL);
}

// Tokens per AVX-512 tile call (ForTokenGroups).
inline constexpr size_t kMaxTokens = 8;

HWY_INLINE __m512i Dp(__m512i acc, __m512i u8, __m512i s8) {
  return DotU8S8(hn::Vec512<uint8_t>{u8}, hn::Vec512<int8_t>{s8}, hn::Vec512<int32_t>{acc}).raw;
}

// How far ahead of the Q8_0 and F16 weight streams to prefetch (measured: 1 KiB; 512 B and
// 2 KiB no better).
inline constexpr size_t kPrefetchBytes = 1024;
inline constexpr size_t kGroups = kQuantBlockElems / 4;  // 4-element groups per block

// Group g's bits of a vector that holds one bit per group (bit g of each byte), moved to bit kAt
// of each byte (the other bits zero).
template <int kAt>
HWY_INLINE __m512i BitGroup(__m512i bits, size_t g) {
  const int shift = kAt - static_cast<int>(g);
  const __m512i at = shift > 0 ? _mm512_slli_epi16(bits, shift)
                     : shift < 0 ? _mm512_srli_epi16(bits, -shift) : bits;
  return _mm512_and_si512(at, _mm512_set1_epi8(static_cast<char>(1 << kAt)));
}

// Group g's 2-bit fields of two vectors where bits 2s, 2s + 1 of vector k hold group k + 2s,
// moved to bits kAt, kAt + 1 of each byte (the other bits zero).
template <int kAt>
HWY_INLINE __m512i CrumbGroup(const __m512i (&crumbs)[2], size_t g) {
  const int shift = kAt - 2 * static_cast<int>(g / 2);
  const __m512i v = crumbs[g % 2];
  const __m512i at = shift > 0 ? _mm512_slli_epi16(v, shift)
                     : shift < 0 ? _mm512_srli_epi16(v, -shift) : v;
  return _mm512_and_si512(at, _mm512_set1_epi8(static_cast<char>(3 << kAt)));
}

// The 8 groups of 4-bit values at `values` (4 vectors: group j in the low nibbles of vector j,
// group j + 4 in the high ones) as unsigned bytes; with kFifth, the vector after them gives
// each value its bit 4 (bit g of a byte: group g).
template <bool kFifth>
HWY_INLINE void NibbleGroups(const uint8_t* HWY_RESTRICT values, __m512i (&w)[kGroups]) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  LLMASOS_UNROLL
  for (size_t j = 0; j < kGroups / 2; ++j) {
    const __m512i v = _mm512_loadu_si512(values + 64 * j);
    w[j] = _mm512_and_si512(v, low4);
    w[j + kGroups / 2] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
  }
  if constexpr (kFifth) {
    const __m512i high = _mm512_loadu_si512(values + kKPackHigh);
    LLMASOS_UNROLL
    for (size_t g = 0; g < kGroups; ++g) w[g] = _mm512_or_si512(w[g], BitGroup<4>(high, g));
  }
}

// IQ4_NL's and IQ4_XS's grid (kIq4NlValues) + 128, as unsigned bytes.
struct Iq4Grid {
  uint8_t v[16];
};
inline constexpr Iq4Grid kIq4GridU8 = [] {
  Iq4Grid g{};
  for (size_t i = 0; i < 16; ++i) g.v[i] = static_cast<uint8_t>(kIq4NlValues[i] + 128);
  return g;
}();

// Grid indices (bytes 0..15) to their grid values + 128, in place.
HWY_INLINE void Iq4GridValues(__m512i (&w)[kGroups]) {
  const __m512i grid =
      _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4GridU8.v)));
  LLMASOS_UNROLL
  for (size_t g = 0; g < kGroups; ++g) w[g] = _mm512_shuffle_epi8(grid, w[g]);
}

// The 8 groups of a tile's block as unsigned bytes (row r's 4 elements in lane r).
template <TensorType kType>
HWY_INLINE void BlockGroups(const uint8_t* HWY_RESTRICT block, __m512i (&w)[kGroups]) {
  if constexpr (kType == TensorType::kQ8_0) {
    LLMASOS_UNROLL
    for (size_t g = 0; g < kGroups; ++g) w[g] = _mm512_loadu_si512(block + g * 64);
  } else {
    NibbleGroups<kType == TensorType::kQ5_0 || kType == TensorType::kQ5_1>(block, w);
    if constexpr (kType == TensorType::kIQ4_NL) Iq4GridValues(w);
  }
}

// out[t * out_stride + r] = row r of the tile times token t, r < kPackRows, t < kT.
//   xq, xd: the first token's quantized activations and block scales (cols and num_blocks
//   apart); xs: its block sums, xs[b * xs_stride + t].
//   xsum (used by Q8_0 and IQ4_NL): the integer sums of each block's activation bytes,
//   [token][block], from the quantizer (exact, so the biased products cancel exactly).
template <TensorType kType, size_t kT>
HWY_NOINLINE void PackedTile(const uint8_t* HWY_RESTRICT tile, size_t num_blocks,
                             const int8_t* HWY_RESTRICT xq, const float* HWY_RESTRICT xd,
                             const float* HWY_RESTRICT xs, size_t xs_stride,
                             const int32_t* HWY_RESTRICT xsum, size_t cols,
                             float* HWY_RESTRICT out, size_t out_stride) {
  // Stored + 128: the products start from -128 times the token's block sum.
  constexpr bool kBiased = kType == TensorType::kQ8_0 || kType == TensorType::kIQ4_NL;
  constexpr bool kHasMin = !kBiased;
  constexpr size_t kValueBytes = PackValueBytes(kType);
  const size_t block_bytes = PackedBlockBytes(kType);
  __m512 acc[kT];
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) acc[t] = _mm512_setzero_ps();
  for (size_t b = 0; b < num_blocks; ++b) {
    const uint8_t* block = tile + b * block_bytes;
    // Q8_0 streams once per call: fetch ahead, past this tile into the next (a prefetch beyond
    // the matrix is harmless). The 4-bit and 5-bit tiles go faster with the hardware
    // prefetchers alone (Zen 4, `llmasos bench -t 1 -n 32`, interleaved: the 1B shape in Q8_0
    // 15.6-16.4 t/s with, 13.6-15.1 without; in Q4_0 30.5-32.7 with, 33.8-35.8 without).
    if constexpr (kType == TensorType::kQ8_0) {
      for (size_t line = 0; line < block_bytes; line += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(block + kPrefetchBytes + line), _MM_HINT_T0);
      }
    }
    __m512i w[kGroups];
    BlockGroups<kType>(block, w);
    const __m512 dw = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kValueBytes)));
    __m512 mw = _mm512_setzero_ps();  // Q4, Q5: the per-row term times the token's block sum
    if constexpr (kType == TensorType::kQ4_1 || kType == TensorType::kQ5_1) {
      mw = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + kValueBytes + 32)));
    } else if constexpr (kType == TensorType::kQ4_0) {
      mw = _mm512_mul_ps(dw, _mm512_set1_ps(-8.0f));  // w = d q - 8 d
    } else if constexpr (kType == TensorType::kQ5_0) {
      mw = _mm512_mul_ps(dw, _mm512_set1_ps(-16.0f));  // w = d q - 16 d
    }
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) {
      const int8_t* xb = xq + t * cols + b * kQuantBlockElems;
      // Two chains of dot products hide vpdpbusd's latency for a lone token.
      __m512i isum0 = _mm512_setzero_si512(), isum1 = _mm512_setzero_si512();
      if constexpr (kBiased) isum0 = _mm512_set1_epi32(-128 * xsum[t * num_blocks + b]);
      LLMASOS_UNROLL
      for (size_t g = 0; g < kGroups; g += 2) {
        int32_t x0, x1;
        std::memcpy(&x0, xb + 4 * g, 4);
        std::memcpy(&x1, xb + 4 * g + 4, 4);
        isum0 = Dp(isum0, w[g], _mm512_set1_epi32(x0));
        isum1 = Dp(isum1, w[g + 1], _mm512_set1_epi32(x1));
      }
      const __m512 prod = _mm512_cvtepi32_ps(_mm512_add_epi32(isum0, isum1));
      acc[t] = _mm512_fmadd_ps(prod, _mm512_mul_ps(dw, _mm512_set1_ps(xd[t * num_blocks + b])), acc[t]);
      if constexpr (kHasMin) acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(xs[b * xs_stride + t]), acc[t]);
    }
  }
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) _mm512_storeu_ps(out + t * out_stride, acc[t]);
}

// ---- Super-block types (Q2_K .. Q6_K, IQ4_XS) ---------------------------------------------
// Per unit of 32 elements and token: 8 vpdpbusd as for Q4_1, in two chains (elements 0..15 and
// 16..31), then the row lanes' integer sub-block scales applied by one vpmulld (Q2_K, Q3_K,
// Q6_K: one per half, their scales are per 16) into the super-block's int32 sums. Per
// super-block and token, one term from the token's block or half-block sums as int16 pair
// products (vpdpwssd) with the tile's coefficients (CoefficientPairs): Q2_K's, Q4_K's and
// Q5_K's minimums sum m sum(x), times dmin; or the offset of the stored values, taken out of the
// int32 sums: Q3_K's 4 sum_h sc_h sum(x_h) (q + 4), Q6_K's 32 sum_h sc_h sum(x_h) (q + 32) and
// IQ4_XS's 128 sum_j sc_j sum(x_j) (grid + 128). Then one conversion and one FMA per term.
// Everything is exact int32 within a super-block (|sum| < 2^29), as in matmul_unpacked.cc's
// K-quant kernels.

// acc + per int32 lane a[2i] b[2i] + a[2i + 1] b[2i + 1] (int16 pairs). Inline asm on AVX3_DL
// for the reason DotU8S8 gives (Highway 1.0.3's target string lacks "avx512vnni").
HWY_INLINE __m512i DpWords(__m512i acc, __m512i a, __m512i b) {
#if HWY_TARGET == HWY_AVX3_DL
  asm("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}

// Per row lane: sum_u c[u] sums[u] over a super-block's 8 units, c as int16 pairs of units 2i,
// 2i + 1 (pairs[i]), sums the token's 8 unit sums (|sum| <= 32 * 127, so vpmovdw's truncation
// to 16 bits keeps each).
HWY_INLINE __m512i UnitPairProducts(const __m512i (&pairs)[4], const int32_t* HWY_RESTRICT sums) {
  alignas(16) int32_t words[4];
  _mm_store_si128(reinterpret_cast<__m128i*>(words),
                  _mm256_cvtepi32_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums))));
  __m512i total = _mm512_setzero_si512();
  LLMASOS_UNROLL
  for (size_t i = 0; i < 4; ++i) total = DpWords(total, pairs[i], _mm512_set1_epi32(words[i]));
  return total;
}

// Per row lane: sum over a super-block's 16 sub-blocks of c[h] sums[h], c as int16 pairs of
// sub-blocks 2u, 2u + 1 (pairs[u]), sums the token's 16 half-block sums.
HWY_INLINE __m512i HalfPairProducts(const __m512i (&pairs)[8], const int16_t* HWY_RESTRICT sums) {
  __m512i total = _mm512_setzero_si512();
  LLMASOS_UNROLL
  for (size_t u = 0; u < 8; ++u) {
    int32_t pair;
    std::memcpy(&pair, sums + 2 * u, 4);
    total = DpWords(total, pairs[u], _mm512_set1_epi32(pair));
  }
  return total;
}

// Pair vector i of the int16 coefficients of the token's sums in a super-block's term: Q2_K's,
// Q4_K's and Q5_K's minimums m, Q3_K's, Q6_K's and IQ4_XS's scales sc (for their offsets).
// Per unit i for the types with scales per 16 (sub-blocks 2i, 2i + 1, against half-block sums;
// Q2_K's m the high nibble of its scale bytes), per unit pair i for the others (units 2i,
// 2i + 1, against block sums).
template <TensorType kType>
HWY_INLINE __m512i CoefficientPairs(const uint8_t* HWY_RESTRICT sblk, size_t i) {
  if constexpr (HasHalfUnitScales(kType)) {
    const __m256i raw = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(sblk + KPackUnitBytes(kType) * i + KPackUnitScales(kType)));
    return kType == TensorType::kQ2_K ? _mm512_srli_epi16(_mm512_cvtepu8_epi16(raw), 4)
                                      : _mm512_cvtepi8_epi16(raw);
  } else if constexpr (kType == TensorType::kIQ4_XS) {
    return _mm512_cvtepi8_epi16(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sblk + KPackScales(kType) + 32 * i)));
  } else {
    return _mm512_cvtepu8_epi16(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sblk + KPackMins(kType) + 32 * i)));
  }
}

// The 8 groups of unit u of a super-block tile's super-block `sb` as unsigned bytes (Q3_K:
// q + 4; Q6_K: q + 32; IQ4_XS: grid value + 128).
template <TensorType kType>
HWY_INLINE void KUnitGroups(const uint8_t* HWY_RESTRICT sb, size_t u, __m512i (&w)[kGroups]) {
  const uint8_t* unit = sb + KPackUnitBytes(kType) * u;
  if constexpr (kType == TensorType::kQ2_K || kType == TensorType::kQ3_K) {
    const __m512i low2[2] = {_mm512_loadu_si512(unit), _mm512_loadu_si512(unit + 64)};
    LLMASOS_UNROLL
    for (size_t g = 0; g < kGroups; ++g) w[g] = CrumbGroup<0>(low2, g);
    if constexpr (kType == TensorType::kQ3_K) {
      const __m512i bit2 = _mm512_loadu_si512(unit + 128);
      LLMASOS_UNROLL
      for (size_t g = 0; g < kGroups; ++g) w[g] = _mm512_or_si512(w[g], BitGroup<2>(bit2, g));
    }
  } else {
    NibbleGroups<kType == TensorType::kQ5_K>(unit, w);
    if constexpr (kType == TensorType::kIQ4_XS) Iq4GridValues(w);
    if constexpr (kType == TensorType::kQ6_K) {
      const __m512i high[2] = {_mm512_loadu_si512(unit + kKPackHigh),
                               _mm512_loadu_si512(unit + kKPackHigh + 64)};
      LLMASOS_UNROLL
      for (size_t g = 0; g < kGroups; ++g) w[g] = _mm512_or_si512(w[g], CrumbGroup<4>(high, g));
    }
  }
}

// Q2_K, Q3_K, Q6_K: a unit's [row][2] scale bytes as int32 lanes (the scale of elements 0..15,
// then 16..31, per row): Q3_K's and Q6_K's signed bytes, Q2_K's low nibbles.
template <TensorType kType>
HWY_INLINE void HalfUnitScales(const uint8_t* HWY_RESTRICT bytes, __m512i& lo, __m512i& hi) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bytes));
  if constexpr (kType == TensorType::kQ2_K) {
    const __m512i pairs = _mm512_cvtepu8_epi16(raw);
    const __m512i low4 = _mm512_set1_epi32(0x0F);
    lo = _mm512_and_si512(pairs, low4);
    hi = _mm512_and_si512(_mm512_srli_epi32(pairs, 16), low4);
  } else {
    const __m512i pairs = _mm512_cvtepi8_epi16(raw);
    lo = _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16);
    hi = _mm512_srai_epi32(pairs, 16);
  }
}

// out[t * out_stride + r] = row r of the tile times token t, r < kPackRows, t < kT.
//   xq, xd, xsum, xhalf: the first token's quantized activations, block scales (one value per
//   super-block, repeated per block), block sums and half-block sums (cols, num_blocks,
//   num_blocks and 2 num_blocks apart per token).
template <TensorType kType, size_t kT>
HWY_NOINLINE void PackedKTile(const uint8_t* HWY_RESTRICT tile, size_t num_blocks,
                              const int8_t* HWY_RESTRICT xq, const float* HWY_RESTRICT xd,
                              const int32_t* HWY_RESTRICT xsum, const int16_t* HWY_RESTRICT xhalf,
                              size_t cols, float* HWY_RESTRICT out, size_t out_stride) {
  constexpr bool kHalves = HasHalfUnitScales(kType);
  constexpr bool kIq4 = kType == TensorType::kIQ4_XS;
  const size_t sb_bytes = PackedBlockBytes(kType);
  __m512 acc[kT];
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) acc[t] = _mm512_setzero_ps();
  for (size_t sb = 0; sb < num_blocks / 8; ++sb) {
    const uint8_t* sblk = tile + sb * sb_bytes;
    __m512i isb[kT];
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) isb[t] = _mm512_setzero_si512();
    for (size_t u = 0; u < 8; ++u) {
      __m512i w[kGroups];
      KUnitGroups<kType>(sblk, u, w);
      __m512i sc_lo, sc_hi;  // per row lane: the scale of elements 0..15, 16..31 of the unit
      if constexpr (kHalves) {
        HalfUnitScales<kType>(sblk + KPackUnitBytes(kType) * u + KPackUnitScales(kType), sc_lo, sc_hi);
      } else if constexpr (kIq4) {  // units 2i, 2i + 1 side by side
        const __m512i pairs = _mm512_cvtepi8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sblk + KPackScales(kType) + 32 * (u / 2))));
        sc_lo = sc_hi = u % 2 == 0 ? _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16)
                                   : _mm512_srai_epi32(pairs, 16);
      } else {
        sc_lo = sc_hi = _mm512_cvtepu8_epi32(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(sblk + KPackScales(kType) + 16 * u)));
      }
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        const int8_t* xb = xq + t * cols + 256 * sb + 32 * u;
        __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
        LLMASOS_UNROLL
        for (size_t g = 0; g < kGroups / 2; ++g) {
          int32_t x0, x1;
          std::memcpy(&x0, xb + 4 * g, 4);
          std::memcpy(&x1, xb + 16 + 4 * g, 4);
          lo = Dp(lo, w[g], _mm512_set1_epi32(x0));
          hi = Dp(hi, w[g + kGroups / 2], _mm512_set1_epi32(x1));
        }
        if constexpr (kHalves) {
          isb[t] = _mm512_add_epi32(isb[t], _mm512_add_epi32(_mm512_mullo_epi32(lo, sc_lo),
                                                             _mm512_mullo_epi32(hi, sc_hi)));
        } else {
          isb[t] = _mm512_add_epi32(isb[t], _mm512_mullo_epi32(_mm512_add_epi32(lo, hi), sc_lo));
        }
      }
    }
    const __m512 dw = _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sblk + KPackD(kType))));
    // The int16 pairs that multiply the token's sums, and the super-block's term from them.
    constexpr size_t kPairs = kHalves ? 8 : 4;
    __m512i c_pairs[kPairs];
    LLMASOS_UNROLL
    for (size_t i = 0; i < kPairs; ++i) c_pairs[i] = CoefficientPairs<kType>(sblk, i);
    constexpr bool kHasDmin = KPackHasDmin(kType);
    __m512 dmin = _mm512_setzero_ps();
    if constexpr (kHasDmin) {
      dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sblk + KPackD(kType) + 32)));
    }
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) {
      __m512i products;
      if constexpr (kHalves) {
        products = HalfPairProducts(c_pairs, xhalf + 2 * t * num_blocks + 16 * sb);
      } else {
        products = UnitPairProducts(c_pairs, xsum + t * num_blocks + 8 * sb);
      }
      const __m512 dx = _mm512_set1_ps(xd[t * num_blocks + 8 * sb]);
      if constexpr (kHasDmin) {  // w = d sc q - dmin m
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isb[t]), _mm512_mul_ps(dw, dx), acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(products), _mm512_mul_ps(dmin, dx), acc[t]);
      } else {  // stored q + 4 (Q3_K), q + 32 (Q6_K), grid + 128 (IQ4_XS)
        constexpr int kOffsetShift = kType == TensorType::kQ3_K ? 2 : kType == TensorType::kQ6_K ? 5 : 7;
        const __m512i exact = _mm512_sub_epi32(isb[t], _mm512_slli_epi32(products, kOffsetShift));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(dw, dx), acc[t]);
      }
    }
  }
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) _mm512_storeu_ps(out + t * out_stride, acc[t]);
}


// F16 weights, 16 rows per tile as fp16 lanes (element k of the tile's rows at [k][16]), times
// float activations: per element one conversion serves 16 rows and every token, and each
// token's value is a broadcast FMA operand. Sets of accumulators over alternating elements
// keep enough FMAs in flight when there are few tokens.
template <size_t kT>
HWY_NOINLINE void PackedF16Tile(const uint8_t* HWY_RESTRICT tile, size_t cols,
                                const float* HWY_RESTRICT x, float* HWY_RESTRICT out,
                                size_t out_stride) {
  constexpr size_t kSets = kT >= 4 ? 2 : 4;  // >= 2: one prefetch per 64-byte line
  constexpr size_t kRowBytes = kPackRows * sizeof(uint16_t);  // one element of 16 rows
  // Sums run in chunks of kChunk elements added into a total, so no accumulator adds more than
  // kChunk / kSets terms in sequence: the rounding error of a long dot product stays near that
  // of a pairwise sum (activation outliers of thousands make sequential sums drift).
  constexpr size_t kChunk = 64;
  __m512 total[kT];
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) total[t] = _mm512_setzero_ps();
  for (size_t k0 = 0; k0 < cols; k0 += kChunk) {  // REQUIRES: cols % 32 == 0
    const size_t k_end = std::min(cols, k0 + kChunk);
    __m512 acc[kSets][kT];
    LLMASOS_UNROLL
    for (size_t s = 0; s < kSets; ++s) {
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) acc[s][t] = _mm512_setzero_ps();
    }
    for (size_t k = k0; k < k_end; k += kSets) {
      _mm_prefetch(reinterpret_cast<const char*>(tile + k * kRowBytes + kPrefetchBytes), _MM_HINT_T0);
      LLMASOS_UNROLL
      for (size_t s = 0; s < kSets; ++s) {
        const __m512 w = _mm512_cvtph_ps(
            _mm256_load_si256(reinterpret_cast<const __m256i*>(tile + (k + s) * kRowBytes)));
        LLMASOS_UNROLL
        for (size_t t = 0; t < kT; ++t) acc[s][t] = _mm512_fmadd_ps(w, _mm512_set1_ps(x[t * cols + k + s]), acc[s][t]);
      }
    }
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) {
      LLMASOS_UNROLL
      for (size_t s = 0; s < kSets; ++s) total[t] = _mm512_add_ps(total[t], acc[s][t]);
    }
  }
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) _mm512_storeu_ps(out + t * out_stride, total[t]);
}

bool MatMulPackedFloatTarget(const PackedMatrix& w, const float* x, size_t num_tokens,
                             float* out, ThreadPool& pool) {
  if (w.type != TensorType::kF16 || !HasPackedKernelTarget(w.type)) return false;
  const size_t tile_bytes = PackedTileBytes(TensorType::kF16, w.cols);
  pool.ParallelFor(w.rows, kPackRows, [&](size_t begin, size_t end, size_t /*thread_idx*/) {
    for (size_t r = begin; r < end; r += kPackRows) {
      const uint8_t* tile = w.data + (r / kPackRows) * tile_bytes;
      ForTokenGroups<kMaxTokens>(num_tokens, [&](auto tokens_tag, size_t t) {
        PackedF16Tile<decltype(tokens_tag)::value>(tile, w.cols, x + t * w.cols,
                                                   out + t * w.rows + r, w.rows);
      });
    }
  }, /*chunks_per_thread=*/4);
  return true;
}

// The types PackedRows is compiled for on this target (HasPackedKernelTarget picks at run time).
template <TensorType kType>
inline constexpr bool kPackedKernel = IsPackedType(kType) && kType != TensorType::kF16;

#elif HWY_ARCH_X86 && HWY_TARGET == HWY_AVX2

// AVX2 reads the same layout as two halves of 8 rows: bytes [32 h, 32 h + 32) of each 64-byte
// vector are rows 8 h .. 8 h + 7. Without VNNI, pmaddubsw multiplies the unsigned values by a
// token's 4 activation bytes (broadcast) into int16 pair sums and pmaddwd by 1 adds the pairs
// into the row lanes. Only the types whose values stay below 32 have AVX2 kernels: a pair sum
// is then at most 2 * 31 * 127, and four groups' sums (4-bit values: all eight) add in int16
// before one pmaddwd. Q8_0's and the IQ4 types' biased values reach 255, where pmaddubsw
// saturates; they stay in the file's layout on AVX2, as do Q2_K, Q3_K and Q6_K for now.
constexpr bool PackedOnAvx2(TensorType type) {
  return type == TensorType::kQ4_0 || type == TensorType::kQ4_1 || type == TensorType::kQ5_0 ||
         type == TensorType::kQ5_1 || type == TensorType::kQ4_K || type == TensorType::kQ5_K;
}
bool HasPackedKernelTarget(TensorType type) { return PackedOnAvx2(type); }

inline constexpr size_t kAvx2Groups = kQuantBlockElems / 4;
// Tokens per call: more would amortize the decoding further, but 2 x 4 accumulators beside the
// 8 decoded groups already fill the 16 vector registers.
inline constexpr size_t kMaxTokens = 4;

// Group g's fifth bits (bit g of each byte) moved to bit 4.
HWY_INLINE __m256i FifthBit(__m256i high, size_t g) {
  const int shift = 4 - static_cast<int>(g);
  const __m256i at = shift > 0 ? _mm256_slli_epi16(high, shift)
                     : shift < 0 ? _mm256_srli_epi16(high, -shift) : high;
  return _mm256_and_si256(at, _mm256_set1_epi8(0x10));
}

// Half `half` of the 8 groups at `values` (laid out as NibbleGroups reads them) as unsigned bytes;
// with kFifth, bit 4 from the vector of fifth bits after the nibbles.
template <bool kFifth>
HWY_INLINE void HalfNibbleGroups(const uint8_t* HWY_RESTRICT values, size_t half,
                                 __m256i (&w)[kAvx2Groups]) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  LLMASOS_UNROLL
  for (size_t j = 0; j < kAvx2Groups / 2; ++j) {
    const __m256i v =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + 64 * j + 32 * half));
    w[j] = _mm256_and_si256(v, low4);
    w[j + kAvx2Groups / 2] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  }
  if constexpr (kFifth) {
    const __m256i high =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + kKPackHigh + 32 * half));
    LLMASOS_UNROLL
    for (size_t g = 0; g < kAvx2Groups; ++g) w[g] = _mm256_or_si256(w[g], FifthBit(high, g));
  }
}

// Per row lane, the 8 groups' products with a token's 32 activation bytes xb, each pair sum
// times the lane's int16 pair `scale` (pmaddwd): four groups (kFifth) or all eight added in
// int16 first.
template <bool kFifth>
HWY_INLINE __m256i HalfUnitDot(const __m256i (&w)[kAvx2Groups], const int8_t* HWY_RESTRICT xb,
                               __m256i scale) {
  constexpr size_t kInt16Groups = kFifth ? 4 : 8;  // 8 * 2 * 15 * 127, 4 * 2 * 31 * 127 < 2^15
  __m256i isum = _mm256_setzero_si256();
  LLMASOS_UNROLL
  for (size_t g0 = 0; g0 < kAvx2Groups; g0 += kInt16Groups) {
    __m256i pairs = _mm256_setzero_si256();
    LLMASOS_UNROLL
    for (size_t g = g0; g < g0 + kInt16Groups; ++g) {
      int32_t x4;
      std::memcpy(&x4, xb + 4 * g, 4);
      pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(w[g], _mm256_set1_epi32(x4)));
    }
    isum = _mm256_add_epi32(isum, _mm256_madd_epi16(pairs, scale));
  }
  return isum;
}

// out[t * out_stride + r] = row r of the tile times token t, r < kPackRows, t < kT, as
// PackedTile on AVX-512. Both halves of a block are done before the next block: a half per pass
// over the tile would fetch the whole tile from memory while computing half of it, and leave
// memory idle while computing the other half from cache (a Llama 3.2 1B's Q4_K decode went no
// faster than in the file's layout that way).
template <TensorType kType, size_t kT>
HWY_NOINLINE void PackedTile(const uint8_t* HWY_RESTRICT tile, size_t num_blocks,
                             const int8_t* HWY_RESTRICT xq, const float* HWY_RESTRICT xd,
                             const float* HWY_RESTRICT xs, size_t xs_stride,
                             const int32_t* HWY_RESTRICT /*xsum: for biased types, none here*/,
                             size_t cols, float* HWY_RESTRICT out, size_t out_stride) {
  constexpr bool kFifth = kType == TensorType::kQ5_0 || kType == TensorType::kQ5_1;
  constexpr size_t kValueBytes = PackValueBytes(kType);
  const size_t block_bytes = PackedBlockBytes(kType);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[2][kT];
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
  for (size_t b = 0; b < num_blocks; ++b) {
    LLMASOS_UNROLL
    for (size_t half = 0; half < 2; ++half) {
      __m256i w[kAvx2Groups];
      HalfNibbleGroups<kFifth>(tile + b * block_bytes, half, w);
      // The scales follow the values: d [16] fp16 (then Q4_1's and Q5_1's m [16]); this half's 8.
      const uint8_t* scales = tile + b * block_bytes + kValueBytes + 16 * half;
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales)));
      __m256 mw;  // the per-row term times the token's block sum
      if constexpr (kType == TensorType::kQ4_1 || kType == TensorType::kQ5_1) {
        mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + 32)));
      } else {
        mw = _mm256_mul_ps(dw, _mm256_set1_ps(kFifth ? -16.0f : -8.0f));  // w = d q - 8 d (16 d)
      }
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        const __m256i isum = HalfUnitDot<kFifth>(w, xq + t * cols + b * kQuantBlockElems, ones);
        const __m256 prod = _mm256_cvtepi32_ps(isum);
        __m256& a = acc[half][t];
        a = _mm256_fmadd_ps(prod, _mm256_mul_ps(dw, _mm256_set1_ps(xd[t * num_blocks + b])), a);
        a = _mm256_fmadd_ps(mw, _mm256_set1_ps(xs[b * xs_stride + t]), a);
      }
    }
  }
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) {
    _mm256_storeu_ps(out + t * out_stride, acc[0][t]);
    _mm256_storeu_ps(out + t * out_stride + 8, acc[1][t]);
  }
}

// Q4_K and Q5_K, as PackedKTile on AVX-512, both halves at once as PackedTile above: per unit,
// the pair sums times the row's integer sub-block scale (pmaddwd by the scale as an int16 pair
// instead of by 1), added over the super-block in int32; per super-block and token the
// minimums' term from the token's block sums (pmaddwd of the rows' m pairs with two units'
// sums), then one conversion and one FMA each.
template <TensorType kType, size_t kT>
HWY_NOINLINE void PackedKTile(const uint8_t* HWY_RESTRICT tile, size_t num_blocks,
                              const int8_t* HWY_RESTRICT xq, const float* HWY_RESTRICT xd,
                              const int32_t* HWY_RESTRICT xsum,
                              const int16_t* HWY_RESTRICT /*xhalf: for Q6_K's kind, none here*/,
                              size_t cols, float* HWY_RESTRICT out, size_t out_stride) {
  static_assert(kType == TensorType::kQ4_K || kType == TensorType::kQ5_K);
  constexpr bool kFifth = kType == TensorType::kQ5_K;
  const size_t sb_bytes = PackedBlockBytes(kType);
  __m256 acc[2][kT];
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) acc[0][t] = acc[1][t] = _mm256_setzero_ps();
  for (size_t sb = 0; sb < num_blocks / 8; ++sb) {
    const uint8_t* sblk = tile + sb * sb_bytes;
    __m256i isb[2][kT];
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) isb[0][t] = isb[1][t] = _mm256_setzero_si256();
    for (size_t u = 0; u < 8; ++u) {
      LLMASOS_UNROLL
      for (size_t half = 0; half < 2; ++half) {
        __m256i w[kAvx2Groups];
        HalfNibbleGroups<kFifth>(sblk + KPackUnitBytes(kType) * u, half, w);
        // sc [unit][row] u8: this half's 8 rows, each as the int16 pair (sc, sc).
        int64_t sc8;
        std::memcpy(&sc8, sblk + KPackScales(kType) + 16 * u + 8 * half, 8);
        const __m256i sc32 = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sc8));
        const __m256i scale = _mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16));
        LLMASOS_UNROLL
        for (size_t t = 0; t < kT; ++t) {
          isb[half][t] = _mm256_add_epi32(
              isb[half][t], HalfUnitDot<kFifth>(w, xq + t * cols + 256 * sb + 32 * u, scale));
        }
      }
    }
    LLMASOS_UNROLL
    for (size_t half = 0; half < 2; ++half) {
      const uint8_t* d = sblk + KPackD(kType) + 16 * half;
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d)));
      const __m256 dmin =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d + 32)));
      // m [unit pair][row][2] u8: this half's rows as int16 pairs (m[2i], m[2i + 1]).
      __m256i m_pairs[4];
      LLMASOS_UNROLL
      for (size_t i = 0; i < 4; ++i) {
        m_pairs[i] = _mm256_cvtepu8_epi16(_mm_loadu_si128(
            reinterpret_cast<const __m128i*>(sblk + KPackMins(kType) + 32 * i + 16 * half)));
      }
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        // The token's unit sums (|sum| <= 32 * 127) as int16 pairs of units 2i, 2i + 1.
        const int32_t* sums = xsum + t * num_blocks + 8 * sb;
        __m256i products = _mm256_setzero_si256();
        LLMASOS_UNROLL
        for (size_t i = 0; i < 4; ++i) {
          const int32_t pair = static_cast<int32_t>((static_cast<uint32_t>(sums[2 * i]) & 0xFFFF) |
                                                    (static_cast<uint32_t>(sums[2 * i + 1]) << 16));
          products =
              _mm256_add_epi32(products, _mm256_madd_epi16(m_pairs[i], _mm256_set1_epi32(pair)));
        }
        const __m256 dx = _mm256_set1_ps(xd[t * num_blocks + 8 * sb]);
        __m256& a = acc[half][t];
        a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isb[half][t]), _mm256_mul_ps(dw, dx),
                            a);  // w = d sc q - dmin m
        a = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(products), _mm256_mul_ps(dmin, dx), a);
      }
    }
  }
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) {
    _mm256_storeu_ps(out + t * out_stride, acc[0][t]);
    _mm256_storeu_ps(out + t * out_stride + 8, acc[1][t]);
  }
}

// The types PackedRows is compiled for on this target.
template <TensorType kType>
inline constexpr bool kPackedKernel = PackedOnAvx2(kType);

bool MatMulPackedFloatTarget(const PackedMatrix&, const float*, size_t, float*, ThreadPool&) {
  return false;
}

#endif

#if HWY_ARCH_X86 && (HWY_TARGET <= HWY_AVX3 || HWY_TARGET == HWY_AVX2)

// Rows [row_begin, row_end) of the product, tile by tile, every token, with this target's
// PackedTile or PackedKTile (nothing for a type it has none for: HasPackedKernelTarget said so).
template <TensorType kType>
void PackedRows(const PackedMatrix& w, const QuantizedActivations& x, size_t row_begin,
                size_t row_end, float* out) {
  if constexpr (kPackedKernel<kType>) {
    const size_t num_blocks = w.cols / kQuantBlockElems;
    const size_t tile_bytes = PackedTileBytes(kType, w.cols);
    for (size_t r = row_begin; r < row_end; r += kPackRows) {
      const uint8_t* tile = w.data + (r / kPackRows) * tile_bytes;
      ForTokenGroups<kMaxTokens>(x.num_tokens, [&](auto tokens_tag, size_t t) {
        constexpr size_t kT = decltype(tokens_tag)::value;
        if constexpr (IsPackedSuperBlock(kType)) {
          PackedKTile<kType, kT>(tile, num_blocks, x.qs + t * x.cols, x.d + t * num_blocks,
                                 x.isums + t * num_blocks, x.half_sums + 2 * t * num_blocks, x.cols,
                                 out + t * w.rows + r, w.rows);
        } else {
          PackedTile<kType, kT>(tile, num_blocks, x.qs + t * x.cols, x.d + t * num_blocks, x.s + t,
                                x.num_tokens, x.isums + t * num_blocks, x.cols,
                                out + t * w.rows + r, w.rows);
        }
      });
    }
  }
}

bool MatMulPackedTarget(const PackedMatrix& w, const QuantizedActivations& x, float* out,
                        ThreadPool& pool) {
  if (!HasPackedKernelTarget(w.type)) return false;
  pool.ParallelFor(w.rows, kPackRows, [&](size_t begin, size_t end, size_t /*thread_idx*/) {
    switch (w.type) {
      case TensorType::kQ4_0: return PackedRows<TensorType::kQ4_0>(w, x, begin, end, out);
      case TensorType::kQ4_1: return PackedRows<TensorType::kQ4_1>(w, x, begin, end, out);
      case TensorType::kQ5_0: return PackedRows<TensorType::kQ5_0>(w, x, begin, end, out);
      case TensorType::kQ5_1: return PackedRows<TensorType::kQ5_1>(w, x, begin, end, out);
      case TensorType::kQ4_K: return PackedRows<TensorType::kQ4_K>(w, x, begin, end, out);
      case TensorType::kQ5_K: return PackedRows<TensorType::kQ5_K>(w, x, begin, end, out);
      case TensorType::kQ6_K: return PackedRows<TensorType::kQ6_K>(w, x, begin, end, out);
      case TensorType::kIQ4_NL: return PackedRows<TensorType::kIQ4_NL>(w, x, begin, end, out);
      case TensorType::kQ2_K: return PackedRows<TensorType::kQ2_K>(w, x, begin, end, out);
      case TensorType::kQ3_K: return PackedRows<TensorType::kQ3_K>(w, x, begin, end, out);
      case TensorType::kIQ4_XS: return PackedRows<TensorType::kIQ4_XS>(w, x, begin, end, out);
      default: return PackedRows<TensorType::kQ8_0>(w, x, begin, end, out);
    }
  }, /*chunks_per_thread=*/4);
  return true;
}

#else  // no packed kernels for this target

bool HasPackedKernelTarget(TensorType) { return false; }
bool MatMulPackedTarget(const PackedMatrix&, const QuantizedActivations&, float*, ThreadPool&) {
  return false;
}
bool MatMulPackedFloatTarget(const PackedMatrix&, const float*, size_t, float*, ThreadPool&) {
  return false;
}

#endif

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace llmasos::cpu {

HWY_EXPORT(HasPackedKernelTarget);
HWY_EXPORT(MatMulPackedTarget);
HWY_EXPORT(MatMulPackedFloatTarget);

bool HasPackedKernel(TensorType type) { return HWY_DYNAMIC_DISPATCH(HasPackedKernelTarget)(type); }

bool MatMulPackedFloat(const PackedMatrix& w, const float* x, size_t num_tokens, float* out,
                       ThreadPool& pool) {
  return HWY_DYNAMIC_DISPATCH(MatMulPackedFloatTarget)(w, x, num_tokens, out, pool);
}

bool MatMulPacked(const PackedMatrix& w, const QuantizedActivations& x, float* out,
                  ThreadPool& pool) {
  CHECK_EQ(x.cols, w.cols);
  CHECK(!IsPackedSuperBlock(w.type) || x.group == kSuperBlockElems)
      << "super-block kernels need one activation scale per 256";
  return HWY_DYNAMIC_DISPATCH(MatMulPackedTarget)(w, x, out, pool);
}

std::unique_ptr<PackedMatrix> PackMatrix(const MatView& w, ThreadPool* pool) {
  if (!HasPackedLayout(w) || !HasPackedKernel(w.type)) return nullptr;
  return PackMatrixLayout(w, pool);
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
