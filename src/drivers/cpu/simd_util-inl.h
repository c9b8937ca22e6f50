// Per-target SIMD helpers shared by the CPU driver's kernels: integer dot products of 8-bit
// lanes and scalar half-float conversion. Included once per Highway target (foreach_target).
#if defined(LLMASOS_DRIVERS_CPU_SIMD_UTIL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LLMASOS_DRIVERS_CPU_SIMD_UTIL_INL_H_
#undef LLMASOS_DRIVERS_CPU_SIMD_UTIL_INL_H_
#else
#define LLMASOS_DRIVERS_CPU_SIMD_UTIL_INL_H_
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "drivers/cpu/tensor_type.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "util/fp16.h"

#if HWY_ARCH_X86
#include <immintrin.h>
#endif

HWY_BEFORE_NAMESPACE();
namespace llmasos::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// HWY_SCALAR (1-lane vectors; GCC < 12.3 builds it instead of EMU128 as the fallback for CPUs
// without SSE4) has no 128-bit blocks: its kernels forward to scalar_ops instead.
#if HWY_TARGET != HWY_SCALAR

// Fully unrolls a loop over a register tile (a compile-time count), so tile arrays live in
// registers; -O2 alone keeps them on the stack.
#define LLMASOS_UNROLL _Pragma("GCC unroll 16")

// x86 targets from SSSE3 up have pmaddubsw; AVX2 and better use 256-bit vectors for blocks.
#define LLMASOS_X86_SIMD (HWY_ARCH_X86 && HWY_TARGET <= HWY_SSSE3)
#define LLMASOS_X86_256 (HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2)

// One quantization block of 32 bytes is one 256-bit vector on AVX2 and better, two 128-bit
// vectors elsewhere. Highway's 1.0.3 x86 targets: AVX3 also uses 256-bit vectors here (with
// its 32 registers), which keeps every target's block code identical.
using DU8 = hn::CappedTag<uint8_t, 32>;
using DI8 = hn::RebindToSigned<DU8>;
using DI16 = hn::Repartition<int16_t, DU8>;
using DI32 = hn::Repartition<int32_t, DU8>;
using DF32 = hn::Repartition<float, DU8>;
using VU8 = hn::Vec<DU8>;
using VI8 = hn::Vec<DI8>;
using VI32 = hn::Vec<DI32>;
using VF32 = hn::Vec<DF32>;
inline constexpr size_t kBlockBytes = 32;
inline constexpr size_t kVecsPerBlock = kBlockBytes / hn::MaxLanes(DU8());

// How far ahead of the current block the decode kernels (one token, one row at a time)
// prefetch their row stream. The hardware prefetcher alone leaves the weights' memory reads
// short of the bandwidth: on AVX2 (Zen 3, one thread, CPU time per call) 2 KiB ahead took
// Qwen's output [151936, 896] Q8_0 from 10.8-13.3 to 7.2-10.2 ms, Gemma's [262144, 640] from
// 12.7-14.2 to 11.2-12.0 ms, the stacked Q5_0 [116736, 896] from 7.0-7.4 to 6.8-6.9 ms; 512
// bytes gained less.
inline constexpr size_t kDecodePrefetchBytes = 2048;

// fp16 -> f32 for one scalar, in hardware where the target has F16C.
HWY_INLINE float HalfToFloat(uint16_t h) {
#if LLMASOS_X86_256
  return _cvtsh_ss(h);
#else
  return llmasos::F16ToF32(h);
#endif
}

// The fp16 at p as f32, for a weight block's scale: on x86 one 32-bit load straight into a
// vector register and one conversion (HalfToFloat's scalar goes through an insert first).
// REQUIRES: 4 bytes readable at p (every block has at least 16 more after its scale).
HWY_INLINE float LoadBlockScale(const uint16_t* HWY_RESTRICT p) {
#if LLMASOS_X86_256
  int32_t bits;
  std::memcpy(&bits, p, sizeof(bits));
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)));
#else
  return llmasos::F16ToF32(*p);
#endif
}

// acc[i] += sum_{k<4} a[4i+k] * b[4i+k], a unsigned, b signed 8-bit. REQUIRES: no pair of
// products exceeds int16 (a <= 128, |b| <= 127 always holds for our data: Q4 nibbles or |q|
// of Q8_0 against activations in [-127, 127]), since pmaddubsw saturates pairs to int16.
HWY_INLINE VI32 DotU8S8(VU8 a, VI8 b, VI32 acc) {
#if HWY_ARCH_X86 && HWY_TARGET == HWY_AVX3_DL
  // AVX512-VNNI (part of Highway's AVX3_DL runtime check): one instruction, no saturation.
  // Inline asm because 1.0.3's AVX3_DL target string enables "avxvnni", not "avx512vnni",
  // and {evex} keeps the encoding Ice Lake can run (it lacks the VEX AVX-VNNI form).
  __m256i r = acc.raw;
  asm("%{evex%} vpdpbusd %2, %1, %0" : "+v"(r) : "v"(a.raw), "v"(b.raw));
  return VI32{r};
#elif LLMASOS_X86_256
  const __m256i pairs = _mm256_maddubs_epi16(a.raw, b.raw);
  return hn::Add(acc, VI32{_mm256_madd_epi16(pairs, _mm256_set1_epi16(1))});
#elif LLMASOS_X86_SIMD
  const __m128i pairs = _mm_maddubs_epi16(a.raw, b.raw);
  return hn::Add(acc, VI32{_mm_madd_epi16(pairs, _mm_set1_epi16(1))});
#else
  HWY_ALIGN uint8_t av[hn::MaxLanes(DU8())];
  HWY_ALIGN int8_t bv[hn::MaxLanes(DU8())];
  HWY_ALIGN int32_t sums[hn::MaxLanes(DI32())];
  hn::Store(a, DU8(), av);
  hn::Store(b, DI8(), bv);
  for (size_t i = 0; i < hn::MaxLanes(DI32()); ++i) {
    sums[i] = 0;
    for (size_t k = 0; k < 4; ++k) sums[i] += static_cast<int32_t>(av[4 * i + k]) * bv[4 * i + k];
  }
  return hn::Add(acc, hn::Load(DI32(), sums));
#endif
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
// The same for full 512-bit vectors (two blocks at a time).
HWY_INLINE hn::Vec512<int32_t> DotU8S8(hn::Vec512<uint8_t> a, hn::Vec512<int8_t> b,
                                       hn::Vec512<int32_t> acc) {
#if HWY_TARGET == HWY_AVX3_DL
  __m512i r = acc.raw;
  asm("vpdpbusd %2, %1, %0" : "+v"(r) : "v"(a.raw), "v"(b.raw));
  return hn::Vec512<int32_t>{r};
#else
  const __m512i pairs = _mm512_maddubs_epi16(a.raw, b.raw);
  return hn::Add(acc, hn::Vec512<int32_t>{_mm512_madd_epi16(pairs, _mm512_set1_epi16(1))});
#endif
}
#endif

// b with the sign of a: b where a > 0, -b where a < 0, 0 where a = 0 (psignb). REQUIRES: no
// lane of b is -128 (its negation does not fit; activations are within [-127, 127]).
HWY_INLINE VI8 CopySignI8(VI8 b, VI8 a) {
#if LLMASOS_X86_256
  return VI8{_mm256_sign_epi8(b.raw, a.raw)};
#elif LLMASOS_X86_SIMD
  return VI8{_mm_sign_epi8(b.raw, a.raw)};
#else
  const DI8 d;
  const VI8 zero = hn::Zero(d);
  return hn::IfThenElse(hn::Lt(a, zero), hn::Neg(b), hn::IfThenElseZero(hn::Gt(a, zero), b));
#endif
}

// Signed x signed version: |a| * (b with a's sign), the identity that lets pmaddubsw (unsigned
// times signed) multiply two signed vectors. |a| of -128 reads as 128 unsigned, still exact.
HWY_INLINE VI32 DotS8S8(VI8 a, VI8 b, VI32 acc) {
#if LLMASOS_X86_SIMD
  return DotU8S8(hn::BitCast(DU8(), hn::Abs(a)), CopySignI8(b, a), acc);
#else
  HWY_ALIGN int8_t av[hn::MaxLanes(DI8())];
  HWY_ALIGN int8_t bv[hn::MaxLanes(DI8())];
  HWY_ALIGN int32_t sums[hn::MaxLanes(DI32())];
  hn::Store(a, DI8(), av);
  hn::Store(b, DI8(), bv);
  for (size_t i = 0; i < hn::MaxLanes(DI32()); ++i) {
    sums[i] = 0;
    for (size_t k = 0; k < 4; ++k) sums[i] += static_cast<int32_t>(av[4 * i + k]) * bv[4 * i + k];
  }
  return hn::Add(acc, hn::Load(DI32(), sums));
#endif
}

// IQ4_NL's and IQ4_XS's grid values (kIq4NlValues) of the 4-bit indices in idx's lanes, by one
// byte shuffle; signed, so multiplied with the sign trick (DotS8S8, CopySignI8): grid + 128
// reaches 241 and would saturate pmaddubsw's pair sums.
HWY_INLINE VI8 LookUpIq4Grid(VU8 idx) {
  const VU8 grid = hn::LoadDup128(DU8(), reinterpret_cast<const uint8_t*>(kIq4NlValues));
  return hn::BitCast(DI8(), hn::TableLookupBytes(grid, idx));
}

// acc[i] += sum_{k<4} a[4i+k] b[4i+k] s[2i + k/2], a unsigned and b signed 8-bit, s a 16-bit
// multiplier per pair of products (DotU8S8 multiplies the pairs by 1): K-quant sub-block scales
// applied in the integer domain. REQUIRES: as DotU8S8, and 2 * |pair * s| fits int32 (pairs are
// below 2^15 and s below 2^15, so this always holds).
// On AVX3_DL the pairs are multiplied and added in one vpdpwssd, written out in its EVEX form
// (AVX512-VNNI): Highway 1.0.3's AVX3_DL target string enables the VEX-only "avxvnni" rather
// than "avx512vnni", and clang fuses pmaddwd + add into {vex} vpdpwssd by itself, an illegal
// instruction on AVX-512 CPUs without AVX-VNNI (Zen 4, Ice Lake). The sum is the same integer.
HWY_INLINE VI32 DotU8S8Scaled(VU8 a, VI8 b, hn::Vec<DI16> s, VI32 acc) {
#if HWY_ARCH_X86 && HWY_TARGET == HWY_AVX3_DL
  const __m256i pairs = _mm256_maddubs_epi16(a.raw, b.raw);
  __m256i r = acc.raw;
  asm("%{evex%} vpdpwssd %2, %1, %0" : "+v"(r) : "v"(pairs), "v"(s.raw));
  return VI32{r};
#elif LLMASOS_X86_256
  return hn::Add(acc, VI32{_mm256_madd_epi16(_mm256_maddubs_epi16(a.raw, b.raw), s.raw)});
#elif LLMASOS_X86_SIMD
  return hn::Add(acc, VI32{_mm_madd_epi16(_mm_maddubs_epi16(a.raw, b.raw), s.raw)});
#else
  // Lane by lane, for targets without pmaddubsw.
  HWY_ALIGN uint8_t av[hn::MaxLanes(DU8())];
  HWY_ALIGN int8_t bv[hn::MaxLanes(DU8())];
  HWY_ALIGN int16_t sv[hn::MaxLanes(DI16())];
  HWY_ALIGN int32_t sums[hn::MaxLanes(DI32())];
  hn::Store(a, DU8(), av);
  hn::Store(b, DI8(), bv);
  hn::Store(s, DI16(), sv);
  for (size_t i = 0; i < hn::MaxLanes(DI32()); ++i) {
    sums[i] = 0;
    for (size_t k = 0; k < 4; ++k) {
      sums[i] += static_cast<int32_t>(av[4 * i + k]) * bv[4 * i + k] * sv[2 * i + k / 2];
    }
  }
  return hn::Add(acc, hn::Load(DI32(), sums));
#endif
}

// Unpacks a Q4 block's 16 bytes (element j in the low nibble of byte j, j + 16 in the high
// nibble) into 32 unsigned lanes in element order.
HWY_INLINE void UnpackNibbles(const uint8_t* HWY_RESTRICT qs, VU8 (&w)[kVecsPerBlock]) {
#if LLMASOS_X86_256
  // The 16 bytes in both 128-bit halves (a broadcast load needs no shuffle port), the upper
  // half shifted by 4, then one mask for both.
  const __m256i both = _mm256_broadcastsi128_si256(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  const __m256i nibbles = _mm256_blend_epi32(both, _mm256_srli_epi16(both, 4), 0xF0);
  w[0] = hn::And(VU8{nibbles}, hn::Set(DU8(), uint8_t{0x0F}));
#else
  const hn::Full128<uint8_t> d16;
  const auto packed = hn::LoadU(d16, qs);
  const auto mask = hn::Set(d16, uint8_t{0x0F});
  w[0] = hn::And(packed, mask);
  w[1] = hn::And(hn::ShiftRight<4>(packed), mask);
#endif
}

// Half floats <-> f32 for a full float vector. Targets with F16C convert in hardware; the
// others use integer arithmetic here, because Highway 1.0.3's emulated conversions truncate
// instead of rounding and lose infinities, signed zeros and subnormals.
template <class DF>
HWY_INLINE hn::Vec<DF> LoadHalfAsFloat(DF df, const uint16_t* HWY_RESTRICT p) {
#if LLMASOS_X86_256
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
#else
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint16_t, DF> du16;
  const auto h = hn::BitCast(di, hn::PromoteTo(hn::RebindToUnsigned<DF>(), hn::LoadU(du16, p)));
  const auto sign = hn::ShiftLeft<16>(hn::And(h, hn::Set(di, 0x8000)));
  const auto abs = hn::And(h, hn::Set(di, 0x7FFF));
  // Exponent and mantissa moved into f32 position read as a float 2^-112 too small (the
  // exponent biases are 15 and 127); one exact multiply fixes that, subnormals included.
  const auto finite = hn::Mul(hn::BitCast(df, hn::ShiftLeft<13>(abs)), hn::Set(df, 0x1.0p112f));
  const auto non_finite = hn::BitCast(df, hn::Or(hn::ShiftLeft<13>(abs), hn::Set(di, 0x7F800000)));
  const auto mag = hn::IfThenElse(hn::RebindMask(df, hn::Gt(abs, hn::Set(di, 0x7BFF))),
                                  non_finite, finite);
  return hn::Or(mag, hn::BitCast(df, sign));
#endif
}

// Rounds to nearest even, overflow to infinity, NaN stays NaN (a quiet one), as F32ToF16.
template <class DF>
HWY_INLINE void StoreFloatAsHalf(DF df, hn::Vec<DF> v, uint16_t* HWY_RESTRICT p) {
#if LLMASOS_X86_256
  const hn::Rebind<hwy::float16_t, DF> dh;
  hn::StoreU(hn::DemoteTo(dh, v), dh, reinterpret_cast<hwy::float16_t*>(p));
#else
  const hn::RebindToSigned<DF> di;
  const hn::Rebind<uint16_t, DF> du16;
  const auto x = hn::BitCast(di, v);
  const auto sign = hn::And(hn::ShiftRight<16>(x), hn::Set(di, 0x8000));
  const auto abs = hn::And(x, hn::Set(di, 0x7FFFFFFF));
  // Normal results: rebias the exponent and round the mantissa from 23 to 10 bits, ties to
  // even (adding 0xFFF plus the lowest kept bit carries exactly when rounding up).
  const auto round_bias = hn::Add(hn::Set(di, 0xFFF), hn::And(hn::ShiftRight<13>(abs), hn::Set(di, 1)));
  auto h = hn::ShiftRight<13>(hn::Sub(hn::Add(abs, round_bias), hn::Set(di, 0x38000000)));
  // Subnormal results: the value in units of 2^-24, rounded to nearest even by the FPU.
  const auto sub = hn::NearestInt(hn::Mul(hn::BitCast(df, abs), hn::Set(df, 0x1.0p24f)));
  h = hn::IfThenElse(hn::Lt(abs, hn::Set(di, 0x38800000)), sub, h);
  h = hn::IfThenElse(hn::Gt(abs, hn::Set(di, 0x477FEFFF)), hn::Set(di, 0x7C00), h);
  h = hn::IfThenElse(hn::Gt(abs, hn::Set(di, 0x7F800000)), hn::Set(di, 0x7E00), h);
  hn::StoreU(hn::DemoteTo(du16, hn::Or(h, sign)), du16, p);
#endif
}

// v, hidden from the optimiser so it cannot fold v's computation into each use. GCC turns
// Mul(Set(a), Set(b)) into a scalar multiply and a register broadcast per use, two vector-pipe
// operations where one vector multiply does; an opaque broadcast keeps the vector multiply.
// Costs no instruction.
HWY_INLINE VF32 Opaque(VF32 v) {
#if LLMASOS_X86_SIMD
  asm("" : "+x"(v.raw));
#endif
  return v;
}

// Horizontal sum of a float vector.
template <class D>
HWY_INLINE float ReduceSumF(D d, hn::Vec<D> v) {
  return hn::GetLane(hn::SumOfLanes(d, v));
}

// A register tile of accumulators [rows][tokens] (float, or int32 sums): all lanes to zero,
// and each float one's lane sum to out[t * out_stride + r].
template <class V, size_t kR, size_t kT>
HWY_INLINE void ZeroTile(V (&acc)[kR][kT]) {
  LLMASOS_UNROLL
  for (size_t r = 0; r < kR; ++r) {
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) acc[r][t] = hn::Zero(hn::DFromV<V>());
  }
}
template <size_t kR, size_t kT>
HWY_INLINE void StoreTileSums(const VF32 (&acc)[kR][kT], float* HWY_RESTRICT out,
                              size_t out_stride) {
  LLMASOS_UNROLL
  for (size_t r = 0; r < kR; ++r) {
    LLMASOS_UNROLL
    for (size_t t = 0; t < kT; ++t) out[t * out_stride + r] = ReduceSumF(DF32(), acc[r][t]);
  }
}

#endif  // HWY_TARGET != HWY_SCALAR

// NOLINTNEXTLINE(google-readability-namespace-comments)
}  // namespace llmasos::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // include guard toggle
