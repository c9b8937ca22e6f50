// Tensor element types and their storage layout. The numeric ids are GGML's, as stored in
// GGUF files, so a type id read from a file maps here without translation.
//
// Quantized types store rows as a sequence of blocks of kBlockElems elements; a row's
// element count must be a multiple of its type's block size (32, or 256 for the K-quants and
// IQ4_XS, whose "super-blocks" carry sub-block scales). The layouts are GGML's; the formulas
// below are the facts the dequantisers (quant_unpack.h) implement.
#ifndef LLMASOS_DRIVERS_CPU_TENSOR_TYPE_H_
#define LLMASOS_DRIVERS_CPU_TENSOR_TYPE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace llmasos::cpu {

enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kBF16 = 30,
};

// Elements per K-quant super-block.
inline constexpr size_t kSuperBlockElems = 256;

// Q4_0: 32 weights, w = d * (q - 8), q in [0, 15]. qs[j] holds element j in its low nibble
// and element j + 16 in its high nibble.
struct BlockQ4_0 {
  static constexpr size_t kBlockElems = 32;
  uint16_t d;  // fp16 scale
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18);

// Q4_1: 32 weights, w = d * q + m, q in [0, 15]; nibble order as in Q4_0.
struct BlockQ4_1 {
  static constexpr size_t kBlockElems = 32;
  uint16_t d;  // fp16 scale
  uint16_t m;  // fp16 minimum
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_1) == 20);

// Q8_0: 32 weights, w = d * q, q in [-127, 127].
struct BlockQ8_0 {
  static constexpr size_t kBlockElems = 32;
  uint16_t d;  // fp16 scale
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Q5_0: 32 weights, w = d * (q - 16), q in [0, 31]: the low 4 bits as in Q4_0's nibbles,
// bit 4 of element j is bit j of qh (little-endian 32-bit).
struct BlockQ5_0 {
  static constexpr size_t kBlockElems = 32;
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_0) == 22);

// Q5_1: 32 weights, w = d * q + m, q as in Q5_0.
struct BlockQ5_1 {
  static constexpr size_t kBlockElems = 32;
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_1) == 24);

// Q2_K: 256 weights in 16 sub-blocks of 16, w = d * (sc & 15) * q - dmin * (sc >> 4),
// q in [0, 3]. Element e = 128 h + 32 j + l (h < 2, j < 4, l < 32): bits 2j..2j+1 of
// qs[32 h + l], sub-block scales[8 h + 2 j + l / 16].
struct BlockQ2_K {
  static constexpr size_t kBlockElems = kSuperBlockElems;
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84);

// Q3_K: 256 weights in 16 sub-blocks of 16, w = d * (s - 32) * (q - 4), q in [0, 7]. Element
// e = 128 h + 32 j + l: low 2 bits as Q2_K's, bit 2 is bit (4 h + j) of hmask[l]. The 6-bit
// scale s of sub-block i: low 4 bits in scales[i % 8] (low nibble for i < 8, high otherwise),
// high 2 bits at bit 2 (i / 4) of scales[8 + i % 4].
struct BlockQ3_K {
  static constexpr size_t kBlockElems = kSuperBlockElems;
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110);

// Q4_K: 256 weights in 8 sub-blocks of 32, w = d * sc * q - dmin * m, q in [0, 15], sc and m
// 6-bit (packed in `scales`, see quant_unpack.h). Element 64 g + l (l < 32) is the low nibble
// of qs[32 g + l] in sub-block 2 g; element 64 g + 32 + l its high nibble, sub-block 2 g + 1.
struct BlockQ4_K {
  static constexpr size_t kBlockElems = kSuperBlockElems;
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144);

// Q5_K: Q4_K plus a fifth bit: bit 4 of element 64 g + l is bit 2 g of qh[l], of element
// 64 g + 32 + l bit 2 g + 1.
struct BlockQ5_K {
  static constexpr size_t kBlockElems = kSuperBlockElems;
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ5_K) == 176);

// Q6_K: 256 weights in 16 sub-blocks of 16, w = d * scales[i] * (q - 32), q in [0, 63].
// Element 128 h + 32 k + l (k < 4, l < 32): low 4 bits are the low (k < 2) or high (k >= 2)
// nibble of ql[64 h + 32 (k % 2) + l], high 2 bits are bits 2k..2k+1 of qh[32 h + l]; its
// sub-block is 8 h + 2 k + l / 16.
struct BlockQ6_K {
  static constexpr size_t kBlockElems = kSuperBlockElems;
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

// Q8_K: 256 values, x = d * q; bsums[i] = sum of q over elements 16 i .. 16 i + 15. GGML's
// activation format for K-quant dot products; a valid tensor type (dequantised here), though
// no file stores weights in it. This driver keeps one activation layout for every weight type
// (int8 per element, a scale and a sum per 32: scalar::QuantizeActivations), with the scale
// shared by 256 elements for the super-block formats as in Q8_K (ActivationGroupElems).
struct BlockQ8_K {
  static constexpr size_t kBlockElems = kSuperBlockElems;
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};
static_assert(sizeof(BlockQ8_K) == 292);

// IQ4_NL: 32 weights, w = d * kIq4NlValues[q], q in [0, 15], nibbles as in Q4_0.
struct BlockIQ4_NL {
  static constexpr size_t kBlockElems = 32;
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockIQ4_NL) == 18);

// IQ4_XS: 256 weights in 8 sub-blocks of 32, w = d * (ls - 32) * kIq4NlValues[q]; ls is 6-bit,
// low 4 bits in nibble (i % 2) of scales_l[i / 2], high 2 bits at bit 2 i of scales_h.
// Sub-block i's nibbles are qs[16 i .. 16 i + 16), ordered as in IQ4_NL.
struct BlockIQ4_XS {
  static constexpr size_t kBlockElems = kSuperBlockElems;
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
};
static_assert(sizeof(BlockIQ4_XS) == 136);

// The non-linear 4-bit grid of IQ4_NL and IQ4_XS.
inline constexpr int8_t kIq4NlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

struct TensorTypeTraits {
  std::string_view name;  // "Q4_1", as llama.cpp prints it
  size_t block_elems;     // elements per block (1 for float types)
  size_t block_bytes;     // bytes per block
};

// Whether `type` stores blocks of integers with scales (everything but F32, F16, BF16).
bool IsBlockQuantized(TensorType type);

// Traits of a type this build supports, or nullopt for an id it does not (including valid
// GGML ids such as the K-quants that are not implemented yet).
std::optional<TensorTypeTraits> GetTensorTypeTraits(uint32_t type_id);
const TensorTypeTraits& Traits(TensorType type);  // REQUIRES: a supported type

// Bytes of one row of `num_elems` elements. REQUIRES: num_elems % block_elems == 0.
size_t RowBytes(TensorType type, size_t num_elems);

}  // namespace llmasos::cpu

#endif  // LLMASOS_DRIVERS_CPU_TENSOR_TYPE_H_
