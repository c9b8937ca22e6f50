// The one place that decodes every block-quantized format (tensor_type.h), 32 elements at a
// time, into a single form the dequantiser, the scalar kernels and the SIMD kernels share:
//
//   w[e] = scale[e / 16] * q[e] + min[e / 16],   e < 32,  q a signed 8-bit integer.
//
// Two scales per 32 elements because Q2_K, Q3_K and Q6_K have sub-blocks of 16; the others
// repeat one. Formats without a minimum leave min at 0. Each formula is evaluated in the same
// order as GGML's reference dequantisers (scale = d * sub-block scale first, then scale * q,
// then the minimum), so DequantizeRow matches them and gguf-py's numpy versions exactly.
#ifndef LLMASOS_DRIVERS_CPU_QUANT_UNPACK_H_
#define LLMASOS_DRIVERS_CPU_QUANT_UNPACK_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "drivers/cpu/tensor_type.h"
#include "util/fp16.h"

namespace llmasos::cpu {

struct Unpacked32 {
  alignas(32) int8_t q[32];
  float scale[2];  // elements 0..15 and 16..31
  float min[2];
};

namespace unpack_internal {

// Q4_K and Q5_K: the 6-bit scale and minimum of sub-block j < 8 from the 12 packed bytes.
inline void ScaleMinK4(const uint8_t* s, size_t j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q3_K: the 6-bit scale of sub-block i < 16 (before subtracting 32).
inline int ScaleQ3K(const uint8_t* s, size_t i) {
  const int low = i < 8 ? (s[i] & 0x0F) : (s[i - 8] >> 4);
  const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
  return low | (high << 4);
}
// IQ4_XS: the signed scale ls - 32 of sub-block i < 8.
inline int ScaleIQ4XS(const BlockIQ4_XS& b, size_t i) {
  const int ls = ((b.scales_l[i / 2] >> (4 * (i % 2))) & 0x0F) | (((b.scales_h >> (2 * i)) & 3) << 4);
  return ls - 32;
}
// All 16 of Q3_K's (ScaleQ3K(s, i) in out[i]), four at a time in 32-bit words.
inline void ScalesQ3K(const uint8_t* s, uint8_t (&out)[16]) {
  uint32_t w[3];
  std::memcpy(w, s, sizeof(w));
  constexpr uint32_t kLow4 = 0x0F0F0F0F, kLow2 = 0x03030303;
  const uint32_t words[4] = {(w[0] & kLow4) | ((w[2] & kLow2) << 4),
                             (w[1] & kLow4) | (((w[2] >> 2) & kLow2) << 4),
                             ((w[0] >> 4) & kLow4) | (((w[2] >> 4) & kLow2) << 4),
                             ((w[1] >> 4) & kLow4) | (((w[2] >> 6) & kLow2) << 4)};
  std::memcpy(out, words, sizeof(words));
}

inline void SetScales(Unpacked32& u, float s0, float s1, float m0, float m1) {
  u.scale[0] = s0;
  u.scale[1] = s1;
  u.min[0] = m0;
  u.min[1] = m1;
}

}  // namespace unpack_internal

// Only the scales and minimums of unit `u` (for the SIMD kernels that decode q themselves).
// REQUIRES: kType is Q4_K, Q5_K or Q6_K.
template <TensorType kType>
inline void UnpackScales(const uint8_t* row, size_t u, Unpacked32& o) {
  using namespace unpack_internal;
  if constexpr (kType == TensorType::kQ6_K) {
    const auto& b = reinterpret_cast<const BlockQ6_K*>(row)[u / 8];
    const size_t i = 8 * ((u % 8) / 4) + 2 * (u % 4);
    const float d = F16ToF32(b.d);
    SetScales(o, d * static_cast<float>(b.scales[i]), d * static_cast<float>(b.scales[i + 1]),
              0.0f, 0.0f);
  } else {
    static_assert(kType == TensorType::kQ4_K || kType == TensorType::kQ5_K);
    using Block = std::conditional_t<kType == TensorType::kQ4_K, BlockQ4_K, BlockQ5_K>;
    const auto& b = reinterpret_cast<const Block*>(row)[u / 8];
    int sc, m;
    ScaleMinK4(b.scales, u % 8, sc, m);
    const float scale = F16ToF32(b.d) * static_cast<float>(sc);
    const float min = -(F16ToF32(b.dmin) * static_cast<float>(m));
    SetScales(o, scale, scale, min, min);
  }
}

// Unit `u` (elements 32 u .. 32 u + 31) of a row of kType. REQUIRES: kType is block-quantized.
template <TensorType kType>
inline void Unpack32(const uint8_t* row, size_t u, Unpacked32& o) {
  using namespace unpack_internal;
  if constexpr (kType == TensorType::kQ8_0) {
    const auto& b = reinterpret_cast<const BlockQ8_0*>(row)[u];
    std::memcpy(o.q, b.qs, 32);
    const float d = F16ToF32(b.d);
    SetScales(o, d, d, 0.0f, 0.0f);
  } else if constexpr (kType == TensorType::kQ4_0 || kType == TensorType::kQ4_1 ||
                       kType == TensorType::kIQ4_NL) {
    using Block = std::conditional_t<kType == TensorType::kQ4_1, BlockQ4_1, BlockQ4_0>;
    const auto& b = reinterpret_cast<const Block*>(row)[u];
    for (size_t j = 0; j < 16; ++j) {
      const int lo = b.qs[j] & 0x0F, hi = b.qs[j] >> 4;
      if constexpr (kType == TensorType::kQ4_0) {
        o.q[j] = static_cast<int8_t>(lo - 8);
        o.q[j + 16] = static_cast<int8_t>(hi - 8);
      } else if constexpr (kType == TensorType::kQ4_1) {
        o.q[j] = static_cast<int8_t>(lo);
        o.q[j + 16] = static_cast<int8_t>(hi);
      } else {
        o.q[j] = kIq4NlValues[lo];
        o.q[j + 16] = kIq4NlValues[hi];
      }
    }
    const float d = F16ToF32(b.d);
    float m = 0.0f;
    if constexpr (kType == TensorType::kQ4_1) m = F16ToF32(b.m);
    SetScales(o, d, d, m, m);
  } else if constexpr (kType == TensorType::kQ5_0 || kType == TensorType::kQ5_1) {
    using Block = std::conditional_t<kType == TensorType::kQ5_1, BlockQ5_1, BlockQ5_0>;
    const auto& b = reinterpret_cast<const Block*>(row)[u];
    uint32_t qh;
    std::memcpy(&qh, b.qh, 4);
    const int offset = kType == TensorType::kQ5_0 ? 16 : 0;
    for (size_t j = 0; j < 16; ++j) {
      const int lo = (b.qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4);
      const int hi = (b.qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
      o.q[j] = static_cast<int8_t>(lo - offset);
      o.q[j + 16] = static_cast<int8_t>(hi - offset);
    }
    const float d = F16ToF32(b.d);
    float m = 0.0f;
    if constexpr (kType == TensorType::kQ5_1) m = F16ToF32(b.m);
    SetScales(o, d, d, m, m);
  } else if constexpr (kType == TensorType::kQ2_K || kType == TensorType::kQ3_K) {
    using Block = std::conditional_t<kType == TensorType::kQ2_K, BlockQ2_K, BlockQ3_K>;
    const auto& b = reinterpret_cast<const Block*>(row)[u / 8];
    const size_t h = (u % 8) / 4, j = u % 4;  // element 128 h + 32 j + l
    const uint8_t* qs = b.qs + 32 * h;
    for (size_t l = 0; l < 32; ++l) {
      int q = (qs[l] >> (2 * j)) & 3;
      if constexpr (kType == TensorType::kQ3_K) q -= (b.hmask[l] >> (4 * h + j)) & 1 ? 0 : 4;
      o.q[l] = static_cast<int8_t>(q);
    }
    const float d = F16ToF32(b.d);
    const size_t i = 8 * h + 2 * j;  // the first of the unit's two sub-blocks
    if constexpr (kType == TensorType::kQ2_K) {
      const float dmin = F16ToF32(b.dmin);
      SetScales(o, d * static_cast<float>(b.scales[i] & 0x0F), d * static_cast<float>(b.scales[i + 1] & 0x0F),
                -(dmin * static_cast<float>(b.scales[i] >> 4)), -(dmin * static_cast<float>(b.scales[i + 1] >> 4)));
    } else {
      SetScales(o, d * static_cast<float>(ScaleQ3K(b.scales, i) - 32),
                d * static_cast<float>(ScaleQ3K(b.scales, i + 1) - 32), 0.0f, 0.0f);
    }
  } else if constexpr (kType == TensorType::kQ4_K || kType == TensorType::kQ5_K) {
    using Block = std::conditional_t<kType == TensorType::kQ4_K, BlockQ4_K, BlockQ5_K>;
    const auto& b = reinterpret_cast<const Block*>(row)[u / 8];
    const size_t j = u % 8;  // sub-block
    const uint8_t* qs = b.qs + 32 * (j / 2);
    const int shift = j % 2 == 0 ? 0 : 4;
    for (size_t l = 0; l < 32; ++l) {
      int q = (qs[l] >> shift) & 0x0F;
      if constexpr (kType == TensorType::kQ5_K) q |= ((b.qh[l] >> j) & 1) << 4;
      o.q[l] = static_cast<int8_t>(q);
    }
    UnpackScales<kType>(row, u, o);
  } else if constexpr (kType == TensorType::kQ6_K) {
    const auto& b = reinterpret_cast<const BlockQ6_K*>(row)[u / 8];
    const size_t h = (u % 8) / 4, k = u % 4;  // element 128 h + 32 k + l
    const uint8_t* ql = b.ql + 64 * h + 32 * (k % 2);
    const uint8_t* qh = b.qh + 32 * h;
    const int shift = k < 2 ? 0 : 4;
    for (size_t l = 0; l < 32; ++l) {
      const int q = ((ql[l] >> shift) & 0x0F) | (((qh[l] >> (2 * k)) & 3) << 4);
      o.q[l] = static_cast<int8_t>(q - 32);
    }
    UnpackScales<kType>(row, u, o);
  } else if constexpr (kType == TensorType::kQ8_K) {
    const auto& b = reinterpret_cast<const BlockQ8_K*>(row)[u / 8];
    std::memcpy(o.q, b.qs + 32 * (u % 8), 32);
    SetScales(o, b.d, b.d, 0.0f, 0.0f);
  } else if constexpr (kType == TensorType::kIQ4_XS) {
    const auto& b = reinterpret_cast<const BlockIQ4_XS*>(row)[u / 8];
    const size_t i = u % 8;
    const uint8_t* qs = b.qs + 16 * i;
    for (size_t j = 0; j < 16; ++j) {
      o.q[j] = kIq4NlValues[qs[j] & 0x0F];
      o.q[j + 16] = kIq4NlValues[qs[j] >> 4];
    }
    const float scale = F16ToF32(b.d) * static_cast<float>(ScaleIQ4XS(b, i));
    SetScales(o, scale, scale, 0.0f, 0.0f);
  } else {
    static_assert(kType == TensorType::kQ8_0, "not a block-quantized type");
  }
}

// Whether every q Unpack32 produces for kType is >= 0 (so unsigned-by-signed products apply).
template <TensorType kType>
inline constexpr bool kUnsignedUnpack =
    kType == TensorType::kQ4_1 || kType == TensorType::kQ5_1 || kType == TensorType::kQ2_K ||
    kType == TensorType::kQ4_K || kType == TensorType::kQ5_K;

// Whether Unpack32 sets a non-zero minimum for kType.
template <TensorType kType>
inline constexpr bool kUnpackHasMin = kType == TensorType::kQ4_1 || kType == TensorType::kQ5_1 ||
                                      kType == TensorType::kQ2_K || kType == TensorType::kQ4_K ||
                                      kType == TensorType::kQ5_K;

// Calls f(std::integral_constant<TensorType, type>) for a block-quantized runtime type.
template <class F>
inline decltype(auto) VisitQuantType(TensorType type, F&& f) {
  switch (type) {
#define LLMASOS_QUANT_CASE(T) \
  case TensorType::T: return f(std::integral_constant<TensorType, TensorType::T>());
    LLMASOS_QUANT_CASE(kQ4_0)
    LLMASOS_QUANT_CASE(kQ4_1)
    LLMASOS_QUANT_CASE(kQ5_0)
    LLMASOS_QUANT_CASE(kQ5_1)
    LLMASOS_QUANT_CASE(kQ8_0)
    LLMASOS_QUANT_CASE(kQ2_K)
    LLMASOS_QUANT_CASE(kQ3_K)
    LLMASOS_QUANT_CASE(kQ4_K)
    LLMASOS_QUANT_CASE(kQ5_K)
    LLMASOS_QUANT_CASE(kQ6_K)
    LLMASOS_QUANT_CASE(kQ8_K)
    LLMASOS_QUANT_CASE(kIQ4_NL)
    LLMASOS_QUANT_CASE(kIQ4_XS)
#undef LLMASOS_QUANT_CASE
    default:
      break;
  }
  return f(std::integral_constant<TensorType, TensorType::kF32>());
}

// Unpack32 for a runtime type. REQUIRES: IsBlockQuantized(type).
inline void UnpackBlock32(TensorType type, const uint8_t* row, size_t u, Unpacked32& o) {
  VisitQuantType(type, [&](auto t) {
    if constexpr (decltype(t)::value != TensorType::kF32) Unpack32<decltype(t)::value>(row, u, o);
  });
}

// Dequantises `n` elements (n % 32 == 0) of a row of a block-quantized type.
inline void DequantizeQuantRow(TensorType type, const uint8_t* row, size_t n, float* out) {
  VisitQuantType(type, [&](auto t) {
    constexpr TensorType kT = decltype(t)::value;
    if constexpr (kT != TensorType::kF32) {
      Unpacked32 u;
      for (size_t b = 0; b < n / 32; ++b) {
        Unpack32<kT>(row, b, u);
        for (size_t e = 0; e < 32; ++e) {
          out[32 * b + e] = u.scale[e / 16] * static_cast<float>(u.q[e]) + u.min[e / 16];
        }
      }
    }
  });
}

}  // namespace llmasos::cpu

#endif  // LLMASOS_DRIVERS_CPU_QUANT_UNPACK_H_
