// QuantizeRow: float32 -> a GGUF tensor type's blocks. Rounding follows llama.cpp's reference
// quantizers (the facts of the formats), so files we write load there and vice versa:
//   Q8_0: d = max|x| / 127, q = round(x / d).
//   Q4_0: m = the value with the largest magnitude (sign kept), d = m / -8,
//         q = min(15, trunc(x / d + 8.5)); w = d * (q - 8).
//   Q4_1: d = (max - min) / 15, q = min(15, trunc((x - min) / d + 0.5)); w = d * q + min.
//   Q5_0, Q5_1: as Q4_0 (d = m / -16, +16.5) and Q4_1 (31 steps) with 5-bit q.
//   Q4_K, Q5_K, Q6_K: per sub-block scales (and minimums) fitted by a small search, then
//   quantized to 6 (8 for Q6_K) bits against the super-block's fp16 scales.
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

void QuantizeQ5(const float* x, size_t n, bool with_min, uint8_t* out) {
  const size_t block_bytes = with_min ? sizeof(BlockQ5_1) : sizeof(BlockQ5_0);
  for (size_t b = 0; b < n / kQK; ++b, x += kQK, out += block_bytes) {
    int q[kQK];
    float d, m = 0.0f;
    if (with_min) {
      float min = x[0], max = x[0];
      for (size_t j = 1; j < kQK; ++j) {
        min = std::min(min, x[j]);
        max = std::max(max, x[j]);
      }
      d = (max - min) / 31.0f;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      m = min;
      for (size_t j = 0; j < kQK; ++j) q[j] = std::min(31, static_cast<int>((x[j] - min) * id + 0.5f));
    } else {
      float amax = 0, max = 0;
      for (size_t j = 0; j < kQK; ++j) {
        if (std::fabs(x[j]) > amax) {
          amax = std::fabs(x[j]);
          max = x[j];
        }
      }
      d = max / -16.0f;
      const float id = d != 0 ? 1.0f / d : 0.0f;
      for (size_t j = 0; j < kQK; ++j) q[j] = std::min(31, static_cast<int>(x[j] * id + 16.5f));
    }
    uint32_t qh = 0;
    uint8_t qs[16];
    for (size_t j = 0; j < 16; ++j) {
      qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
      qh |= static_cast<uint32_t>(q[j] >> 4) << j;
      qh |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
    }
    const uint16_t dh = F32ToF16(d), mh = F32ToF16(m);
    std::memcpy(out, &dh, 2);
    if (with_min) std::memcpy(out + 2, &mh, 2);
    std::memcpy(out + (with_min ? 4 : 2), &qh, 4);
    std::memcpy(out + (with_min ? 8 : 6), qs, 16);
  }
}

// Fits x[i] ~= scale * L[i] - m (L in [0, nmax], m >= 0) for one sub-block, minimising the
// weighted squared error: a few candidate grids between min(x, 0) and max(x), each followed by
// the least-squares scale and offset for its integers (the approach of GGML's K-quant
// reference quantizers, which the per-tensor quality of Q4_K and Q5_K files relies on).
void FitScaleMin(const float* x, const float* w, size_t n, int nmax, float* scale, float* m) {
  float lo = std::min(0.0f, *std::min_element(x, x + n));
  const float hi = *std::max_element(x, x + n);
  if (hi <= lo) {
    *scale = 0.0f;
    *m = -lo;
    return;
  }
  auto error = [&](float s, float mn, const int* l) {
    float err = 0;
    for (size_t i = 0; i < n; ++i) {
      const float diff = s * static_cast<float>(l[i]) + mn - x[i];
      err += w[i] * diff * diff;
    }
    return err;
  };
  int l[kSuperBlockElems];
  float best_scale = (hi - lo) / static_cast<float>(nmax), best_min = lo;
  for (size_t i = 0; i < n; ++i) {
    l[i] = std::clamp(static_cast<int>(std::nearbyint((x[i] - lo) / best_scale)), 0, nmax);
  }
  float best_err = error(best_scale, best_min, l);
  for (int step = 0; step <= 20; ++step) {
    const float iscale = (static_cast<float>(nmax) - 1.0f + 0.1f * static_cast<float>(step)) / (hi - lo);
    float sw = 0, sl = 0, sl2 = 0, sx = 0, sxl = 0;
    for (size_t i = 0; i < n; ++i) {
      l[i] = std::clamp(static_cast<int>(std::nearbyint(iscale * (x[i] - lo))), 0, nmax);
      const float li = static_cast<float>(l[i]);
      sw += w[i];
      sl += w[i] * li;
      sl2 += w[i] * li * li;
      sx += w[i] * x[i];
      sxl += w[i] * x[i] * li;
    }
    const float det = sw * sl2 - sl * sl;
    if (det <= 0) continue;
    float s = (sw * sxl - sx * sl) / det;
    float mn = (sl2 * sx - sl * sxl) / det;
    if (mn > 0) {  // the offset must not be positive (m >= 0)
      mn = 0;
      s = sxl / sl2;
    }
    const float err = error(s, mn, l);
    if (err < best_err) {
      best_err = err;
      best_scale = s;
      best_min = mn;
    }
  }
  *scale = best_scale;
  *m = -best_min;
}

// Q4_K (nmax 15) and Q5_K (nmax 31): 8 sub-blocks of 32 with 6-bit scales and minimums.
void QuantizeK4or5(const float* x, size_t n, bool five_bits, uint8_t* out) {
  const int nmax = five_bits ? 31 : 15;
  const size_t block_bytes = five_bits ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K);
  for (size_t sb = 0; sb < n / kSuperBlockElems; ++sb, x += kSuperBlockElems, out += block_bytes) {
    float scales[8], mins[8];
    for (size_t j = 0; j < 8; ++j) {
      const float* xs = x + 32 * j;
      float sum_sq = 0;
      for (size_t i = 0; i < 32; ++i) sum_sq += xs[i] * xs[i];
      const float av = std::sqrt(sum_sq / 32);
      float w[32];
      for (size_t i = 0; i < 32; ++i) w[i] = av + std::fabs(xs[i]);
      FitScaleMin(xs, w, 32, nmax, &scales[j], &mins[j]);
    }
    const float max_scale = *std::max_element(scales, scales + 8);
    const float max_min = *std::max_element(mins, mins + 8);
    const uint16_t dh = F32ToF16(max_scale > 0 ? max_scale / 63 : 0.0f);
    const uint16_t dminh = F32ToF16(max_min > 0 ? max_min / 63 : 0.0f);
    const float d = F16ToF32(dh), dmin = F16ToF32(dminh);
    uint8_t packed[12] = {};
    int ls[8], lm[8];
    for (size_t j = 0; j < 8; ++j) {
      ls[j] = d > 0 ? std::clamp(static_cast<int>(std::nearbyint(scales[j] / d)), 0, 63) : 0;
      lm[j] = dmin > 0 ? std::clamp(static_cast<int>(std::nearbyint(mins[j] / dmin)), 0, 63) : 0;
      if (j < 4) {
        packed[j] = static_cast<uint8_t>(ls[j]);
        packed[j + 4] = static_cast<uint8_t>(lm[j]);
      } else {
        packed[j + 4] = static_cast<uint8_t>((ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4));
        packed[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
        packed[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
      }
    }
    uint8_t qs[128] = {}, qh[32] = {};
    for (size_t j = 0; j < 8; ++j) {
      const float sc = d * static_cast<float>(ls[j]);
      const float mn = dmin * static_cast<float>(lm[j]);
      for (size_t l = 0; l < 32; ++l) {
        const int q = sc > 0 ? std::clamp(static_cast<int>(std::nearbyint((x[32 * j + l] + mn) / sc)), 0, nmax) : 0;
        qs[32 * (j / 2) + l] |= static_cast<uint8_t>((q & 0x0F) << (j % 2 == 0 ? 0 : 4));
        if (five_bits) qh[l] |= static_cast<uint8_t>((q >> 4) << j);
      }
    }
    std::memcpy(out, &dh, 2);
    std::memcpy(out + 2, &dminh, 2);
    std::memcpy(out + 4, packed, 12);
    if (five_bits) {
      std::memcpy(out + 16, qh, 32);
      std::memcpy(out + 48, qs, 128);
    } else {
      std::memcpy(out + 16, qs, 128);
    }
  }
}

// The symmetric scale of one Q6_K sub-block of 16 (x ~= scale * L, L in [-32, 31]): candidate
// grids around max|x| / 32, each with its least-squares scale weighted by x^2; the best kept.
float FitScaleSymmetric(const float* x, size_t n) {
  float amax = 0, max = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0) return 0.0f;
  float best_scale = 0, best_score = -1;
  for (int step = -9; step <= 9; ++step) {
    const float iscale = -(32.0f + 0.1f * static_cast<float>(step)) / max;
    float sxl = 0, sl2 = 0;
    for (size_t i = 0; i < n; ++i) {
      const float l = static_cast<float>(std::clamp(static_cast<int>(std::nearbyint(iscale * x[i])), -32, 31));
      const float w = x[i] * x[i];
      sxl += w * x[i] * l;
      sl2 += w * l * l;
    }
    // The least-squares scale sxl / sl2 leaves error sum(w x^2) - sxl^2 / sl2: maximise the latter.
    if (sl2 > 0 && sxl * sxl / sl2 > best_score) {
      best_score = sxl * sxl / sl2;
      best_scale = sxl / sl2;
    }
  }
  return best_scale;
}

void QuantizeQ6_K(const float* x, size_t n, BlockQ6_K* out) {
  for (size_t sb = 0; sb < n / kSuperBlockElems; ++sb, x += kSuperBlockElems) {
    BlockQ6_K& blk = out[sb];
    float scales[16];
    float max_scale = 0, amax = 0;
    for (size_t i = 0; i < 16; ++i) {
      scales[i] = FitScaleSymmetric(x + 16 * i, 16);
      if (std::fabs(scales[i]) > amax) {
        amax = std::fabs(scales[i]);
        max_scale = scales[i];
      }
    }
    std::memset(&blk, 0, sizeof(blk));
    if (amax == 0) continue;
    const float iscale = -128.0f / max_scale;
    blk.d = F32ToF16(1 / iscale);
    const float d = F16ToF32(blk.d);
    for (size_t i = 0; i < 16; ++i) {
      blk.scales[i] = static_cast<int8_t>(std::min(127, static_cast<int>(std::nearbyint(iscale * scales[i]))));
    }
    for (size_t e = 0; e < kSuperBlockElems; ++e) {
      const size_t h = e / 128, k = (e % 128) / 32, l = e % 32;
      const float sc = d * static_cast<float>(blk.scales[e / 16]);
      const int q = (sc != 0 ? std::clamp(static_cast<int>(std::nearbyint(x[e] / sc)), -32, 31) : 0) + 32;
      blk.ql[64 * h + 32 * (k % 2) + l] |= static_cast<uint8_t>((q & 0x0F) << (k < 2 ? 0 : 4));
      blk.qh[32 * h + l] |= static_cast<uint8_t>((q >> 4) << (2 * k));
    }
  }
}

}  // namespace

bool CanQuantizeRow(TensorType type) {
  switch (type) {
    case TensorType::kF32:
    case TensorType::kF16:
    case TensorType::kBF16:
    case TensorType::kQ8_0:
    case TensorType::kQ4_0:
    case TensorType::kQ4_1:
    case TensorType::kQ5_0:
    case TensorType::kQ5_1:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
    case TensorType::kQ6_K:
      return true;
    default:
      return false;
  }
}

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
  CHECK_EQ(n % Traits(type).block_elems, 0u)
      << "QuantizeRow: " << n << " elements is not a whole number of " << Traits(type).name << " blocks";
  switch (type) {
    case TensorType::kQ5_0:
      return QuantizeQ5(x, n, /*with_min=*/false, static_cast<uint8_t*>(out));
    case TensorType::kQ5_1:
      return QuantizeQ5(x, n, /*with_min=*/true, static_cast<uint8_t*>(out));
    case TensorType::kQ4_K:
      return QuantizeK4or5(x, n, /*five_bits=*/false, static_cast<uint8_t*>(out));
    case TensorType::kQ5_K:
      return QuantizeK4or5(x, n, /*five_bits=*/true, static_cast<uint8_t*>(out));
    case TensorType::kQ6_K:
      return QuantizeQ6_K(x, n, static_cast<BlockQ6_K*>(out));
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
