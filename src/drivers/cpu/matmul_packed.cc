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
// against float activations. Q4_K, Q5_K, Q6_K and IQ4_XS keep their integer sub-block scales
// per row lane and apply them to each unit's integer dot products (see PackedKTile).
//
// Kernels exist for x86 AVX-512 targets (Q8_0 and the IQ4 types need VNNI: without it pmaddubsw
// would saturate on biased values); elsewhere PackMatrix returns null and MatMul uses the file's
// layout.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <vector>

// GCC 12's AVX-512 intrinsics (maskless forms built on _mm512_undefined_*) trip these
// warnings falsely; the values they name are never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "drivers/cpu/matmul_internal.h"
#include "drivers/cpu/ops.h"
#include "drivers/cpu/quant_unpack.h"
#include "util/fp16.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "drivers/cpu/matmul_packed.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include "drivers/cpu/simd_util-inl.h"
#include "hwy/highway.h"
#include "util/logging.h"

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3

bool HasPackedKernelTarget(TensorType type) {
  return IsPackedType(type) && (!PackedKernelNeedsVnni(type) || HWY_TARGET == HWY_AVX3_DL);
}

// Calls fn(std::integral_constant<size_t, kT>(), t) for token groups [t, t + kT) covering
// [0, num_tokens): groups of kMaxTokens, then one of the rest.
inline constexpr size_t kMaxTokens = 8;
template <class Fn>
HWY_INLINE void ForTokenGroups(size_t num_tokens, const Fn& fn) {
  size_t t = 0;
  for (; t + kMaxTokens <= num_tokens; t += kMaxTokens) fn(std::integral_constant<size_t, kMaxTokens>(), t);
  switch (num_tokens - t) {
    case 7: return fn(std::integral_constant<size_t, 7>(), t);
    case 6: return fn(std::integral_constant<size_t, 6>(), t);
    case 5: return fn(std::integral_constant<size_t, 5>(), t);
    case 4: return fn(std::integral_constant<size_t, 4>(), t);
    case 3: return fn(std::integral_constant<size_t, 3>(), t);
    case 2: return fn(std::integral_constant<size_t, 2>(), t);
    case 1: return fn(std::integral_constant<size_t, 1>(), t);
    default: return;
  }
}

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

// ---- Super-block types (Q4_K, Q5_K, Q6_K, IQ4_XS) -------------------------------------------
// Per unit of 32 elements and token: 8 vpdpbusd as for Q4_1, in two chains (elements 0..15 and
// 16..31), then the row lanes' integer sub-block scales applied by one vpmulld (Q6_K: one per
// half, its scales are per 16) into the super-block's int32 sums. Per super-block and token:
// Q4_K's and Q5_K's minimum term sum_j m_j sum(x_j), Q6_K's offset 32 sum_h sc_h sum(x_h) (its
// values are stored as q + 32, unsigned) and IQ4_XS's 128 sum_j sc_j sum(x_j) (grid + 128) as
// int16 pair products (vpdpwssd) of the tile's m or sc with the token's block or half-block
// sums, then one conversion and one FMA per term.
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
    if constexpr (kHalves) {
      // Per unit, the int16 pairs (sub-blocks 2u, 2u + 1) that multiply the token's half-block
      // sums: Q3_K's and Q6_K's sc (for the offset of their stored q), Q2_K's m.
      __m512i c_pairs[8];
      LLMASOS_UNROLL
      for (size_t u = 0; u < 8; ++u) {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
            sblk + KPackUnitBytes(kType) * u + KPackUnitScales(kType)));
        c_pairs[u] = kType == TensorType::kQ2_K ? _mm512_srli_epi16(_mm512_cvtepu8_epi16(raw), 4)
                                                : _mm512_cvtepi8_epi16(raw);
      }
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        const int16_t* halves = xhalf + 2 * t * num_blocks + 16 * sb;
        __m512i offset = _mm512_setzero_si512();
        LLMASOS_UNROLL
        for (size_t u = 0; u < 8; ++u) {
          int32_t pair;  // the half-block sums of sub-blocks 2u, 2u + 1
          std::memcpy(&pair, halves + 2 * u, 4);
          offset = DpWords(offset, c_pairs[u], _mm512_set1_epi32(pair));
        }
        const __m512 dx = _mm512_set1_ps(xd[t * num_blocks + 8 * sb]);
        if constexpr (kType == TensorType::kQ2_K) {  // w = d sc q - dmin m
          const __m512 dmin = _mm512_cvtph_ps(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sblk + KPackD(kType) + 32)));
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isb[t]), _mm512_mul_ps(dw, dx), acc[t]);
          acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(offset), _mm512_mul_ps(dmin, dx), acc[t]);
        } else {  // stored q + 4 (Q3_K), q + 32 (Q6_K)
          const __m512i exact =
              _mm512_sub_epi32(isb[t], _mm512_slli_epi32(offset, kType == TensorType::kQ3_K ? 2 : 5));
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(dw, dx), acc[t]);
        }
      }
    } else if constexpr (kIq4) {
      __m512i sc_pairs[4];
      LLMASOS_UNROLL
      for (size_t i = 0; i < 4; ++i) {
        sc_pairs[i] = _mm512_cvtepi8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sblk + KPackScales(kType) + 32 * i)));
      }
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        const __m512i offset = UnitPairProducts(sc_pairs, xsum + t * num_blocks + 8 * sb);
        const __m512i exact = _mm512_sub_epi32(isb[t], _mm512_slli_epi32(offset, 7));
        const __m512 dx = _mm512_set1_ps(xd[t * num_blocks + 8 * sb]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), _mm512_mul_ps(dw, dx), acc[t]);
      }
    } else {
      const __m512 dmin = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sblk + KPackD(kType) + 32)));
      __m512i m_pairs[4];
      LLMASOS_UNROLL
      for (size_t i = 0; i < 4; ++i) {
        m_pairs[i] = _mm512_cvtepu8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sblk + KPackMins(kType) + 32 * i)));
      }
      LLMASOS_UNROLL
      for (size_t t = 0; t < kT; ++t) {
        const __m512i mins = UnitPairProducts(m_pairs, xsum + t * num_blocks + 8 * sb);
        const __m512 dx = _mm512_set1_ps(xd[t * num_blocks + 8 * sb]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isb[t]), _mm512_mul_ps(dw, dx), acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_mul_ps(dmin, dx), acc[t]);
      }
    }
  }
  LLMASOS_UNROLL
  for (size_t t = 0; t < kT; ++t) _mm512_storeu_ps(out + t * out_stride, acc[t]);
}

// Rows [row_begin, row_end) of the product, tile by tile, every token.
template <TensorType kType>
void PackedRows(const PackedMatrix& w, const QuantizedActivations& x, size_t row_begin,
                size_t row_end, float* out) {
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const size_t tile_bytes = PackedTileBytes(kType, w.cols);
  for (size_t r = row_begin; r < row_end; r += kPackRows) {
    const uint8_t* tile = w.data + (r / kPackRows) * tile_bytes;
    ForTokenGroups(x.num_tokens, [&](auto tokens_tag, size_t t) {
      constexpr size_t kT = decltype(tokens_tag)::value;
      if constexpr (IsPackedSuperBlock(kType)) {
        PackedKTile<kType, kT>(tile, num_blocks, x.qs + t * x.cols, x.d + t * num_blocks,
                               x.isums + t * num_blocks, x.half_sums + 2 * t * num_blocks, x.cols,
                               out + t * w.rows + r, w.rows);
      } else {
        PackedTile<kType, kT>(tile, num_blocks, x.qs + t * x.cols, x.d + t * num_blocks, x.s + t,
                              x.num_tokens, x.isums + t * num_blocks, x.cols, out + t * w.rows + r,
                              w.rows);
      }
    });
  }
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
      ForTokenGroups(num_tokens, [&](auto tokens_tag, size_t t) {
        PackedF16Tile<decltype(tokens_tag)::value>(tile, w.cols, x + t * w.cols,
                                                   out + t * w.rows + r, w.rows);
      });
    }
  }, /*chunks_per_thread=*/4);
  return true;
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

namespace {

uint32_t LoadWord(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
void StoreWord(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// kSpread[n]: bit i of n moved to bit 0 of byte i.
constexpr uint32_t kSpread[16] = {
    0x00000000, 0x00000001, 0x00000100, 0x00000101, 0x00010000, 0x00010001, 0x00010100, 0x00010101,
    0x01000000, 0x01000001, 0x01000100, 0x01000101, 0x01010000, 0x01010001, 0x01010100, 0x01010101};

// Q5_0/Q5_1's fifth bits (bit e of qh: element e) as the packed word of one row: bit g of byte
// i is element 4 g + i's.
uint32_t FifthBitsWord(const uint8_t* qh) {
  const uint32_t bits = LoadWord(qh);
  uint32_t word = 0;
  for (size_t g = 0; g < 8; ++g) word |= kSpread[(bits >> (4 * g)) & 0x0F] << g;
  return word;
}

// Four elements at a time, one per byte of a 32-bit word; writes every byte of the tile once.
// Q4, Q5, IQ4_NL: a block's byte j holds element j in its low nibble and j + 16 in its high one, so the
// packed vector j (groups j and j + 4) is the block's bytes 4j .. 4j + 3 as they are.
template <class Block>
void PackTile(const MatView& w, size_t row0, uint8_t* dst) {
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const size_t block_bytes = PackedBlockBytes(w.type);
  constexpr bool kQ8 = std::is_same_v<Block, BlockQ8_0>;
  constexpr bool kQ5 = std::is_same_v<Block, BlockQ5_0> || std::is_same_v<Block, BlockQ5_1>;
  const size_t value_bytes = PackValueBytes(w.type);
  for (size_t b = 0; b < num_blocks; ++b) {
    uint8_t* out = dst + b * block_bytes;
    auto* d = reinterpret_cast<uint16_t*>(out + value_bytes);
    for (size_t r = 0; r < kPackRows; ++r) {
      const Block& blk = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w.data) +
                                                       (row0 + r) * w.row_bytes)[b];
      const auto* qs = reinterpret_cast<const uint8_t*>(blk.qs);
      for (size_t g = 0; g < (kQ8 ? 8 : 4); ++g) {
        const uint32_t word = LoadWord(qs + 4 * g);
        StoreWord(out + g * 64 + r * 4, kQ8 ? word ^ 0x80808080u : word);  // Q8_0: q + 128
      }
      if constexpr (kQ5) StoreWord(out + kKPackHigh + r * 4, FifthBitsWord(blk.qh));
      std::memcpy(&d[r], &blk.d, 2);
      if constexpr (std::is_same_v<Block, BlockQ4_1> || std::is_same_v<Block, BlockQ5_1>) {
        std::memcpy(&d[kPackRows + r], &blk.m, 2);
      }
    }
  }
}

// The file's block of a super-block type.
template <TensorType kType>
struct SuperBlockOf;
template <> struct SuperBlockOf<TensorType::kQ2_K> { using type = BlockQ2_K; };
template <> struct SuperBlockOf<TensorType::kQ3_K> { using type = BlockQ3_K; };
template <> struct SuperBlockOf<TensorType::kQ4_K> { using type = BlockQ4_K; };
template <> struct SuperBlockOf<TensorType::kQ5_K> { using type = BlockQ5_K; };
template <> struct SuperBlockOf<TensorType::kQ6_K> { using type = BlockQ6_K; };
template <> struct SuperBlockOf<TensorType::kIQ4_XS> { using type = BlockIQ4_XS; };

// The packed word of a one-bit-per-group vector (bit g of byte i: element 4 g + i) from the
// file's bit planes: element e's bit is bit `shift` of bits[e].
uint32_t BitWord(const uint8_t* bits, size_t shift) {
  uint32_t word = 0;
  for (size_t g = 0; g < 8; ++g) word |= ((LoadWord(bits + 4 * g) >> shift) & 0x01010101u) << g;
  return word;
}

// The packed word of vector v (0, 1) of the 2-bit layout (groups v + 2 s at bits 2 s) from
// crumbs(e): the 2-bit fields of elements e .. e + 3, one per byte.
template <class Crumbs>
uint32_t CrumbWord(size_t v, const Crumbs& crumbs) {
  uint32_t word = 0;
  for (size_t s = 0; s < 4; ++s) word |= crumbs(4 * (v + 2 * s)) << (2 * s);
  return word;
}

// Q2_K .. Q6_K, IQ4_XS: the tile's super-blocks as matmul_internal.h lays them out. Writes
// every byte of the tile.
template <TensorType kType>
void PackKTile(const MatView& w, size_t row0, uint8_t* dst) {
  using Block = typename SuperBlockOf<kType>::type;
  const size_t block_bytes = PackedBlockBytes(kType);
  constexpr size_t unit_bytes = KPackUnitBytes(kType);
  for (size_t sb = 0; sb < w.cols / kSuperBlockElems; ++sb) {
    uint8_t* out = dst + sb * block_bytes;
    for (size_t r = 0; r < kPackRows; ++r) {
      const Block& b = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w.data) +
                                                     (row0 + r) * w.row_bytes)[sb];
      // Four elements at a time, one per byte of a 32-bit word; each value byte is written once.
      for (size_t u = 0; u < 8; ++u) {
        uint8_t* unit = out + unit_bytes * u;
        const size_t h = u / 4, k = u % 4;  // Q2_K, Q3_K, Q6_K: unit u is elements 128 h + 32 k ..
        if constexpr (kType == TensorType::kQ2_K || kType == TensorType::kQ3_K) {
          auto low2 = [&](size_t e) { return (LoadWord(b.qs + 32 * h + e) >> (2 * k)) & 0x03030303u; };
          for (size_t v = 0; v < 2; ++v) StoreWord(unit + 64 * v + 4 * r, CrumbWord(v, low2));
          if constexpr (kType == TensorType::kQ3_K) StoreWord(unit + 128 + 4 * r, BitWord(b.hmask, 4 * h + k));
          continue;
        }
        // The low 4 bits of q (Q6_K: of q + 32) of the unit's elements e .. e + 3.
        auto low4 = [&](size_t e) {
          if constexpr (kType == TensorType::kIQ4_XS) {  // byte j: elements j and j + 16
            return (LoadWord(b.qs + 16 * u + e % 16) >> (e < 16 ? 0 : 4)) & 0x0F0F0F0Fu;
          } else if constexpr (kType != TensorType::kQ6_K) {
            return (LoadWord(b.qs + 32 * (u / 2) + e) >> (4 * (u % 2))) & 0x0F0F0F0Fu;
          } else {
            return (LoadWord(b.ql + 64 * h + 32 * (k % 2) + e) >> (k < 2 ? 0 : 4)) & 0x0F0F0F0Fu;
          }
        };
        for (size_t j = 0; j < 4; ++j) StoreWord(unit + 64 * j + 4 * r, low4(4 * j) | low4(16 + 4 * j) << 4);
        if constexpr (kType == TensorType::kQ5_K) {  // bit 4 of q: bit u of qh
          StoreWord(unit + kKPackHigh + 4 * r, BitWord(b.qh, u));
        } else if constexpr (kType == TensorType::kQ6_K) {
          auto high2 = [&](size_t e) { return (LoadWord(b.qh + 32 * h + e) >> (2 * k)) & 0x03030303u; };
          for (size_t v = 0; v < 2; ++v) StoreWord(unit + kKPackHigh + 64 * v + 4 * r, CrumbWord(v, high2));
        }
      }
      if constexpr (kType == TensorType::kIQ4_XS) {
        for (size_t u = 0; u < 8; ++u) {
          const int ls = ((b.scales_l[u / 2] >> (4 * (u % 2))) & 0x0F) | (((b.scales_h >> (2 * u)) & 3) << 4);
          out[KPackScales(kType) + 2 * kPackRows * (u / 2) + 2 * r + u % 2] = static_cast<uint8_t>(ls - 32);
        }
        std::memcpy(out + KPackD(kType) + 2 * r, &b.d, 2);
      } else if constexpr (HasHalfUnitScales(kType)) {  // sub-block s: unit s / 2, byte s % 2
        for (size_t s = 0; s < 16; ++s) {
          uint8_t* at = out + unit_bytes * (s / 2) + KPackUnitScales(kType) + 2 * r + s % 2;
          if constexpr (kType == TensorType::kQ3_K) {
            *at = static_cast<uint8_t>(unpack_internal::ScaleQ3K(b.scales, s) - 32);
          } else {
            *at = static_cast<uint8_t>(b.scales[s]);  // Q6_K's signed scale; Q2_K's sc | m << 4
          }
        }
        std::memcpy(out + KPackD(kType) + 2 * r, &b.d, 2);
        if constexpr (kType == TensorType::kQ2_K) std::memcpy(out + KPackD(kType) + 2 * kPackRows + 2 * r, &b.dmin, 2);
      } else {
        for (size_t u = 0; u < 8; ++u) {
          int sc, m;
          unpack_internal::ScaleMinK4(b.scales, u, sc, m);
          out[KPackScales(kType) + kPackRows * u + r] = static_cast<uint8_t>(sc);
          out[KPackMins(kType) + 2 * kPackRows * (u / 2) + 2 * r + u % 2] = static_cast<uint8_t>(m);
        }
        std::memcpy(out + KPackD(kType) + 2 * r, &b.d, 2);
        std::memcpy(out + KPackD(kType) + 2 * kPackRows + 2 * r, &b.dmin, 2);
      }
    }
  }
}

// Row `lane` of a super-block tile, as quant_unpack.h's DequantizeQuantRow computes it.
void DequantizePackedKRow(TensorType type, const uint8_t* tile, size_t lane, size_t cols,
                          float* out) {
  const bool has_dmin = type == TensorType::kQ2_K || type == TensorType::kQ4_K || type == TensorType::kQ5_K;
  const bool low2 = type == TensorType::kQ2_K || type == TensorType::kQ3_K;
  const size_t block_bytes = PackedBlockBytes(type);
  for (size_t sb = 0; sb < cols / kSuperBlockElems; ++sb) {
    const uint8_t* blk = tile + sb * block_bytes;
    uint16_t d_bits, dmin_bits = 0;
    std::memcpy(&d_bits, blk + KPackD(type) + 2 * lane, 2);
    if (has_dmin) std::memcpy(&dmin_bits, blk + KPackD(type) + 2 * kPackRows + 2 * lane, 2);
    const float d = F16ToF32(d_bits), dmin = F16ToF32(dmin_bits);
    for (size_t u = 0; u < 8; ++u) {
      const uint8_t* unit = blk + KPackUnitBytes(type) * u;
      for (size_t e = 0; e < 32; ++e) {
        const size_t g = e / 4, at = 4 * lane + e % 4;  // group, and byte within a vector
        int q;
        if (low2) {
          q = (unit[64 * (g % 2) + at] >> (2 * (g / 2))) & 3;
          if (type == TensorType::kQ3_K) q += (((unit[128 + at] >> g) & 1) << 2) - 4;
        } else {
          q = (unit[(g % 4) * 64 + at] >> (g < 4 ? 0 : 4)) & 0x0F;
          if (type == TensorType::kQ5_K) q |= ((unit[kKPackHigh + at] >> g) & 1) << 4;
          if (type == TensorType::kQ6_K) q = (q | ((unit[kKPackHigh + 64 * (g % 2) + at] >> (2 * (g / 2))) & 3) << 4) - 32;
          if (type == TensorType::kIQ4_XS) q = kIq4NlValues[q];
        }
        float scale, min = 0.0f;
        if (HasHalfUnitScales(type)) {
          const uint8_t sc = unit[KPackUnitScales(type) + 2 * lane + e / 16];
          if (type == TensorType::kQ2_K) {
            scale = d * static_cast<float>(sc & 0x0F);
            min = -(dmin * static_cast<float>(sc >> 4));
          } else {
            scale = d * static_cast<float>(static_cast<int8_t>(sc));
          }
        } else if (type == TensorType::kIQ4_XS) {
          const auto sc = static_cast<int8_t>(blk[KPackScales(type) + 2 * kPackRows * (u / 2) + 2 * lane + u % 2]);
          scale = d * static_cast<float>(sc);
        } else {
          scale = d * static_cast<float>(blk[KPackScales(type) + kPackRows * u + lane]);
          const uint8_t m = blk[KPackMins(type) + 2 * kPackRows * (u / 2) + 2 * lane + u % 2];
          min = -(dmin * static_cast<float>(m));
        }
        out[sb * kSuperBlockElems + 32 * u + e] = scale * static_cast<float>(q) + min;
      }
    }
  }
}

// Maps fresh pages for [p, p + n) in one call (MADV_POPULATE_WRITE), rather than one page
// fault per 4 KiB as the packing first writes them: the 1B shape in Q8_0 (1.3 GB packed),
// `llmasos run FILE -n 1 -t 2`, median of 8: 0.96 -> 0.88 s. Advisory: where the kernel
// refuses (before Linux 5.14, or short of memory), the writes fault the pages in as before.
void PopulateForWrite(uint8_t* p, size_t n) {
#ifdef MADV_POPULATE_WRITE
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (begin < end) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)p;
  (void)n;
#endif
}

// F16: element k of row r at [k][r].
void PackF16Tile(const MatView& w, size_t row0, uint8_t* dst) {
  auto* out = reinterpret_cast<uint16_t*>(dst);
  for (size_t r = 0; r < kPackRows; ++r) {
    const auto* row = reinterpret_cast<const uint16_t*>(static_cast<const uint8_t*>(w.data) +
                                                        (row0 + r) * w.row_bytes);
    for (size_t k = 0; k < w.cols; ++k) std::memcpy(&out[k * kPackRows + r], &row[k], 2);
  }
}

}  // namespace

size_t PackedBlockBytes(TensorType type) {
  switch (type) {
    case TensorType::kQ4_0: return kPackRows * sizeof(BlockQ4_0);
    case TensorType::kQ4_1: return kPackRows * sizeof(BlockQ4_1);
    case TensorType::kQ5_0: return kPackRows * sizeof(BlockQ5_0);
    case TensorType::kQ5_1: return kPackRows * sizeof(BlockQ5_1);
    case TensorType::kQ8_0: return kPackRows * sizeof(BlockQ8_0);
    case TensorType::kIQ4_NL: return kPackRows * sizeof(BlockIQ4_NL);
    case TensorType::kF16: return kPackRows * kQuantBlockElems * sizeof(uint16_t);
    case TensorType::kQ2_K:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K: return KPackD(type) + 2 * 2 * kPackRows;
    case TensorType::kQ3_K:
    case TensorType::kQ6_K:
    case TensorType::kIQ4_XS: return KPackD(type) + 2 * kPackRows;
    default: CHECK(false) << "no packed layout for " << Traits(type).name; return 0;
  }
}

size_t PackedTileBytes(TensorType type, size_t cols) {
  const bool k_quant = IsPackedSuperBlock(type);
  return cols / (k_quant ? kSuperBlockElems : kQuantBlockElems) * PackedBlockBytes(type);
}

bool HasPackedKernel(TensorType type) { return HWY_DYNAMIC_DISPATCH(HasPackedKernelTarget)(type); }

bool RepackEnabledByEnv() {
  const char* env = std::getenv("LLMASOS_REPACK");
  return env == nullptr || std::string_view(env) != "0";
}

void DequantizePackedRow(const PackedMatrix& w, size_t row, float* out) {
  CHECK_LT(row, w.rows) << "row index out of range";
  const size_t lane = row % kPackRows;
  const size_t num_blocks = w.cols / kQuantBlockElems;
  const size_t block_bytes = PackedBlockBytes(w.type);
  const uint8_t* tile = w.data + row / kPackRows * PackedTileBytes(w.type, w.cols);
  if (IsPackedSuperBlock(w.type)) {
    return DequantizePackedKRow(w.type, tile, lane, w.cols, out);
  }
  if (w.type == TensorType::kF16) {
    const auto* h = reinterpret_cast<const uint16_t*>(tile);
    for (size_t k = 0; k < w.cols; ++k) out[k] = F16ToF32(h[k * kPackRows + lane]);
    return;
  }
  const bool q5 = w.type == TensorType::kQ5_0 || w.type == TensorType::kQ5_1;
  const size_t value_bytes = PackValueBytes(w.type);
  for (size_t b = 0; b < num_blocks; ++b) {
    const uint8_t* block = tile + b * block_bytes;
    const auto* scales = reinterpret_cast<const uint16_t*>(block + value_bytes);
    const float d = F16ToF32(scales[lane]);
    for (size_t e = 0; e < kQuantBlockElems; ++e) {
      const size_t g = e / 4, i = e % 4;
      float v;
      if (w.type == TensorType::kQ8_0) {
        v = d * static_cast<float>(static_cast<int8_t>(block[g * 64 + lane * 4 + i] ^ 0x80));
      } else {
        const uint8_t byte = block[(g % 4) * 64 + lane * 4 + i];
        int q = g < 4 ? byte & 0x0F : byte >> 4;
        if (q5) q |= ((block[kKPackHigh + lane * 4 + i] >> g) & 1) << 4;
        const bool has_min = w.type == TensorType::kQ4_1 || w.type == TensorType::kQ5_1;
        v = has_min ? d * static_cast<float>(q) + F16ToF32(scales[kPackRows + lane])
            : w.type == TensorType::kIQ4_NL ? d * static_cast<float>(kIq4NlValues[q])
                                            : d * static_cast<float>(q - (q5 ? 16 : 8));
      }
      out[b * kQuantBlockElems + e] = v;
    }
  }
}

bool MatMulPackedFloat(const PackedMatrix& w, const float* x, size_t num_tokens, float* out,
                       ThreadPool& pool) {
  return HWY_DYNAMIC_DISPATCH(MatMulPackedFloatTarget)(w, x, num_tokens, out, pool);
}

bool MatMulPacked(const PackedMatrix& w, const QuantizedActivations& x, float* out,
                  ThreadPool& pool) {
  CHECK_EQ(x.cols, w.cols);
  CHECK(!IsPackedSuperBlock(w.type) || x.group == kSuperBlockElems)
      << "K-quant kernels need one activation scale per 256";
  return HWY_DYNAMIC_DISPATCH(MatMulPackedTarget)(w, x, out, pool);
}

bool HasPackedLayout(const MatView& w) {
  return IsPackedType(w.type) && w.rows != 0 && w.rows % kPackRows == 0 && w.cols % kQuantBlockElems == 0 &&
         w.cols % Traits(w.type).block_elems == 0;
}

size_t PackedBytes(const MatView& w) {
  CHECK(HasPackedLayout(w)) << "no packed layout for a " << w.rows << " x " << w.cols << " "
                            << Traits(w.type).name << " matrix";
  return w.rows / kPackRows * PackedTileBytes(w.type, w.cols);
}

std::unique_ptr<PackedMatrix> PackMatrix(const MatView& w, ThreadPool* pool) {
  if (!HasPackedLayout(w) || !HasPackedKernel(w.type)) return nullptr;
  return PackMatrixLayout(w, pool);
}

std::unique_ptr<PackedMatrix> PackMatrixLayout(
    const MatView& w, ThreadPool* pool,
    const std::function<void(size_t row_begin, size_t row_end)>& band_done, size_t band_bytes) {
  CHECK_EQ(w.row_bytes, RowBytes(w.type, w.cols));
  auto packed = std::make_unique<PackedMatrix>();
  packed->type = w.type;
  packed->rows = w.rows;
  packed->cols = w.cols;
  packed->bytes = PackedBytes(w);
  const size_t tile_bytes = packed->bytes / (w.rows / kPackRows);
  packed->storage = hwy::AllocateAligned<uint8_t>(packed->bytes);
  CHECK(packed->storage != nullptr) << "out of memory packing a " << w.rows << " x " << w.cols
                                    << " matrix";
  packed->data = packed->storage.get();
  // Each tile is written whole by one call, so any split of the tiles over threads writes the
  // same bytes; the first touch of the pages is spread too.
  auto pack_tiles = [&](size_t tile_begin, size_t tile_end) {
    PopulateForWrite(packed->storage.get() + tile_begin * tile_bytes, (tile_end - tile_begin) * tile_bytes);
    for (size_t tile = tile_begin; tile < tile_end; ++tile) {
      uint8_t* dst = packed->storage.get() + tile * tile_bytes;
      switch (w.type) {
        case TensorType::kQ4_0: PackTile<BlockQ4_0>(w, tile * kPackRows, dst); break;
        case TensorType::kQ4_1: PackTile<BlockQ4_1>(w, tile * kPackRows, dst); break;
        case TensorType::kQ5_0: PackTile<BlockQ5_0>(w, tile * kPackRows, dst); break;
        case TensorType::kQ5_1: PackTile<BlockQ5_1>(w, tile * kPackRows, dst); break;
        case TensorType::kF16: PackF16Tile(w, tile * kPackRows, dst); break;
        case TensorType::kQ4_K: PackKTile<TensorType::kQ4_K>(w, tile * kPackRows, dst); break;
        case TensorType::kQ5_K: PackKTile<TensorType::kQ5_K>(w, tile * kPackRows, dst); break;
        case TensorType::kQ6_K: PackKTile<TensorType::kQ6_K>(w, tile * kPackRows, dst); break;
        case TensorType::kIQ4_NL: PackTile<BlockIQ4_NL>(w, tile * kPackRows, dst); break;
        case TensorType::kIQ4_XS: PackKTile<TensorType::kIQ4_XS>(w, tile * kPackRows, dst); break;
        case TensorType::kQ2_K: PackKTile<TensorType::kQ2_K>(w, tile * kPackRows, dst); break;
        case TensorType::kQ3_K: PackKTile<TensorType::kQ3_K>(w, tile * kPackRows, dst); break;
        default: PackTile<BlockQ8_0>(w, tile * kPackRows, dst); break;
      }
    }
  };
  const size_t num_tiles = w.rows / kPackRows;
  const size_t band_tiles = std::max<size_t>(1, band_bytes / (kPackRows * w.row_bytes));
  for (size_t band = 0; band < num_tiles; band += band_tiles) {
    const size_t band_end = std::min(num_tiles, band + band_tiles);
    if (pool == nullptr || pool->num_threads() == 1) {
      pack_tiles(band, band_end);
    } else {
      pool->ParallelFor(band_end - band, 1, [&](size_t begin, size_t end, size_t /*thread_idx*/) {
        pack_tiles(band + begin, band + end);
      }, /*chunks_per_thread=*/4);
    }
    if (band_done) band_done(band * kPackRows, band_end * kPackRows);
  }
  return packed;
}

}  // namespace llmasos::cpu
#endif  // HWY_ONCE
