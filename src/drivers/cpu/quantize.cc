// QuantizeRow: float32 -> a GGUF tensor type's blocks. Rounding follows llama.cpp's reference
// quantizers (the facts of the formats), so files we write load there and vice versa:
//   Q8_0: d = max|x| / 127, q = round(x / d).
//   Q4_0: m = the value with the largest magnitude (sign kept), d = m / -8,
//         q = min(15, trunc(x / d + 8.5)); w = d * (q - 8).
//   Q4_1: d = (max - min) / 15, q = min(15, trunc((x - min) / d + 0.5)); w = d * q + min.
// Nibbles: element j of a block in the low nibble of qs[j], element j + 16 in the high one.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "drivers/cpu/ops.h"
#include "util/fp16.h"
#include "util/logging.h"

namespace llmasos::cpu {
namespace {

constexpr size_t kQK = 32;

void QuantizeQ8_0(const float* x, size_t n, BlockQ8_0* out) {
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0;
    for (size_t j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    out[b].d = F32ToF16(d);
    for (size_t j = 0; j < kQK; ++j) out[b].qs[j] = static_cast<int8_t>(std::lround(x[j] * id));
  }
}

void QuantizeQ4_0(const float* x, size_t n, BlockQ4_0* out) {
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0;
    float max = 0;
    for (size_t j = 0; j < kQK; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    out[b].d = F32ToF16(d);
    for (size_t j = 0; j < kQK / 2; ++j) {
      const int lo = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int hi = std::min(15, static_cast<int>(x[j + kQK / 2] * id + 8.5f));
      out[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void QuantizeQ4_1(const float* x, size_t n, BlockQ4_1* out) {
  for (size_t b = 0; b < n / kQK; ++b, x += kQK) {
    float min = x[0];
    float max = x[0];
    for (size_t j = 1; j < kQK; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    const float d = (max - min) / 15.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    out[b].d = F32ToF16(d);
    out[b].m = F32ToF16(min);
    for (size_t j = 0; j < kQK / 2; ++j) {
      const int lo = std::min(15, static_cast<int>((x[j] - min) * id + 0.5f));
      const int hi = std::min(15, static_cast<int>((x[j + kQK / 2] - min) * id + 0.5f));
      out[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

}  // namespace

void QuantizeRow(TensorType type, const float* x, size_t n, void* out) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, x, n * sizeof(float));
      return;
    case TensorType::kF16: {
      auto* o = static_cast<uint16_t*>(out);
      for (size_t i = 0; i < n; ++i) o[i] = F32ToF16(x[i]);
      return;
    }
    case TensorType::kBF16: {
      auto* o = static_cast<uint16_t*>(out);
      for (size_t i = 0; i < n; ++i) o[i] = F32ToBf16(x[i]);
      return;
    }
    default:
      break;
  }
  CHECK_EQ(n % kQK, 0u) << "QuantizeRow: " << n << " elements is not a whole number of blocks";
  switch (type) {
    case TensorType::kQ8_0:
      return QuantizeQ8_0(x, n, static_cast<BlockQ8_0*>(out));
    case TensorType::kQ4_0:
      return QuantizeQ4_0(x, n, static_cast<BlockQ4_0*>(out));
    case TensorType::kQ4_1:
      return QuantizeQ4_1(x, n, static_cast<BlockQ4_1*>(out));
    default:
      CHECK(false) << "QuantizeRow: unsupported type " << Traits(type).name;
  }
}

}  // namespace llmasos::cpu
