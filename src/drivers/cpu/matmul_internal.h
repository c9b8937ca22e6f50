// Internal to the CPU driver: the pieces MatMul is assembled from, shared by the per-type
// SIMD sources (matmul_*.cc) and tests. Not part of the driver's public contract (ops.h).
#ifndef LLMASOS_DRIVERS_CPU_MATMUL_INTERNAL_H_
#define LLMASOS_DRIVERS_CPU_MATMUL_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "drivers/cpu/ops.h"
#include "drivers/cpu/tensor_type.h"
#include "util/thread_pool.h"

namespace llmasos::cpu {

// Elements per quantization block, for every quantized weight type and for the activations.
inline constexpr size_t kQuantBlockElems = 32;

// Elements that share one activation scale when x multiplies weights of `type`: the weight's
// block length, 32 for the 32-element formats and 256 for the super-block ones (the K-quants,
// IQ4_XS, Q8_K), as llama.cpp pairs Q8_0 and Q8_K activations with them. The per-32 layout
// (d per block of 32) holds either; with 256 a super-block's 8 d are equal, and the K-quant
// kernels (matmul_unpacked.cc) add its 8 integer dot products before one conversion and one
// FMA instead of converting and scaling every 32 elements.
inline size_t ActivationGroupElems(TensorType type) {
  return Traits(type).block_elems == kSuperBlockElems ? kSuperBlockElems : kQuantBlockElems;
}

// Activations of a MatMul call quantized once, as scalar::QuantizeActivations defines
// (x ~= d * qs, d per group of `group` elements repeated for each block of 32 in it;
// s = d * sum(qs) per block of 32). Not owned.
struct QuantizedActivations {
  const int8_t* qs;  // [num_tokens, cols]
  const float* d;    // [num_tokens, num_blocks]
  const float* s;    // [num_blocks, num_tokens]: a token tile's sums for one block are adjacent
  const int32_t* isums;  // [num_tokens, num_blocks]: sum(qs) per block, as integers (null in
                         // the scalar twin, which does not use them)
  const int16_t* half_sums;  // [num_tokens, 2 * num_blocks]: sum(qs) per 16 elements, for Q6_K's
                             // offset (matmul_unpacked.cc); null in the scalar twin
  size_t num_tokens;
  size_t cols;   // num_blocks = cols / 32
  size_t group;  // elements per scale: 32, or 256 (ActivationGroupElems)
};

// SIMD activation quantization, bit-identical to scalar::QuantizeActivations.
// s[b * s_stride] receives block b's sum, isums[b] the integer sum of its qs, half_sums[2b]
// and [2b + 1] those of its two halves of 16.
void QuantizeActivationsSimd(const float* x, size_t n, size_t group, int8_t* qs, float* d,
                             float* s, size_t s_stride, int32_t* isums, int16_t* half_sums);

// The register-tile walk every quantized kernel shares: rows [row_begin, row_end) in tiles of
// kRows, then single rows; per row tile first row_tile(rows_tag, r) (to fill a panel), then
// tokens [0, num_tokens) in tiles of kTokens, then single tokens: tile(rows_tag, tokens_tag, r, t).
// The tags are std::integral_constant<size_t, n>, so the kernels see tile sizes at compile time.
template <size_t kRows, size_t kTokens, class RowTile, class Tile>
inline void ForEachTile(size_t row_begin, size_t row_end, size_t num_tokens, RowTile&& row_tile,
                        Tile&& tile) {
  using One = std::integral_constant<size_t, 1>;
  auto all_tokens = [&](auto rows_tag, size_t r) {
    row_tile(rows_tag, r);
    size_t t = 0;
    for (; t + kTokens <= num_tokens; t += kTokens) {
      tile(rows_tag, std::integral_constant<size_t, kTokens>(), r, t);
    }
    for (; t < num_tokens; ++t) tile(rows_tag, One(), r, t);
  };
  size_t r = row_begin;
  for (; r + kRows <= row_end; r += kRows) all_tokens(std::integral_constant<size_t, kRows>(), r);
  for (; r < row_end; ++r) all_tokens(One(), r);
}
template <size_t kRows, size_t kTokens, class Tile>
inline void ForEachTile(size_t row_begin, size_t row_end, size_t num_tokens, Tile&& tile) {
  ForEachTile<kRows, kTokens>(row_begin, row_end, num_tokens, [](auto, size_t) {}, tile);
}

// The per-type halves of MatMul, each dispatched to the best SIMD target.
//   out: [num_tokens, w.rows]
// The 4- and 5-bit types of 32 elements: Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL.
inline bool IsQ4KernelType(TensorType type) {
  return type == TensorType::kQ4_0 || type == TensorType::kQ4_1 || type == TensorType::kQ5_0 ||
         type == TensorType::kQ5_1 || type == TensorType::kIQ4_NL;
}
// IsQ4KernelType's types.
void MatMulQ4(const MatView& w, const QuantizedActivations& x, float* out, ThreadPool& pool);
void MatMulQ8(const MatView& w, const QuantizedActivations& x, float* out, ThreadPool& pool);
// Every other block-quantized type (the K-quants, IQ4_XS, Q8_K), through
// quant_unpack.h's common form.
void MatMulUnpacked(const MatView& w, const QuantizedActivations& x, float* out,
                    ThreadPool& pool);
void MatMulFloat(const MatView& w, const float* x, size_t num_tokens, float* out,
                 ThreadPool& pool);

// Packed weights (PackedMatrix): a tile is kPackRows rows, one per 32-bit lane of a 512-bit
// vector; its blocks follow one another, each laid out as
//   values, in groups of 4 elements: group g of the block holds, for each row r, that row's
//   elements 4g .. 4g+3 in bytes [64 g + 4 r, 64 g + 4 r + 4):
//     Q8_0:       8 groups of 64 bytes, each q stored as q + 128 (unsigned);
//     Q4_0, Q4_1: 4 vectors of 64 bytes; the low nibbles of vector j are group j, the high
//                 nibbles group j + 4;
//     Q5_0, Q5_1: as Q4, then one vector of fifth bits: bit g of byte 4 r + i is bit 4 of q
//                 for row r, element i of group g;
//     IQ4_NL:     as Q4, the nibbles indices into the grid kIq4NlValues;
//   then d [16] fp16; Q4_1 and Q5_1 then m [16] fp16.
// So one integer dot product (vpdpbusd) advances 16 rows by 4 elements against one token's 4
// activation bytes broadcast, and the block's scales apply to 16 outputs at once.
inline constexpr size_t kPackRows = 16;
// Within a Q5 block or a Q5_K/Q6_K unit: where the high bits start, after the low nibbles.
inline constexpr size_t kKPackHigh = 256;
// Q2_K .. Q6_K and IQ4_XS: the same 16-row tiles, per super-block of 256 elements (8 units of 32),
// each unit's low nibbles laid out as a Q4 block's values above (vector j: group j in the low
// nibbles, group j + 4 in the high ones):
//   Q4_K: the 8 units' low nibbles (unit u at 256 u); sc [unit][row] u8 (one byte per row and
//     unit); m [unit pair][row][2] u8 (a row's minimums of units 2i, 2i + 1 side by side, an
//     int16 pair once widened); d [16] fp16; dmin [16] fp16.
//   Q5_K: as Q4_K, but unit u (at 320 u) is laid out as a Q5 block's values above.
//   Q6_K: per unit, at 416 u: its low nibbles; the two high bits of q + 32, 2 vectors of 64
//     bytes, bits 2s, 2s + 1 of vector k holding group k + 2s (byte 4 r + i: row r, element i of
//     the group); sc [row][2] i8 (sub-blocks 2u, 2u + 1 side by side). Then d [16] fp16.
//   IQ4_XS: the 8 units' grid indices (unit u at 256 u); sc [unit pair][row][2] i8, the
//     signed sub-block scales ls - 32 of units 2i, 2i + 1 side by side; d [16] fp16.
//   Q2_K: per unit, at 160 u: the two low bits of q in 2 vectors laid out as Q6_K's high bits;
//     the file's scale bytes (sc in the low nibble, m in the high one) [row][2] (sub-blocks 2u,
//     2u + 1 side by side). Then d [16] fp16, dmin [16] fp16.
//   Q3_K: per unit, at 224 u: the two low bits as Q2_K's; bit 2 of q + 4 (the file's hmask
//     bit) in one vector laid out as Q5's fifth bits; sc [row][2] i8 (the signed scales s - 32).
//     Then d [16] fp16.
// Each unit's bytes are contiguous, so a tile reads as one ascending stream (with Q6_K's split
// over three regions per super-block, a 215 MB matrix streamed from memory at half the rate).
// The kernels keep each unit's (Q2_K, Q3_K, Q6_K: half-unit's) integer dot products per row
// lane, multiply them by the integer sub-block scale, and convert and scale once per
// super-block.
inline constexpr bool IsPackedSuperBlock(TensorType type) {
  return type == TensorType::kQ2_K || type == TensorType::kQ3_K || type == TensorType::kQ4_K ||
         type == TensorType::kQ5_K || type == TensorType::kQ6_K || type == TensorType::kIQ4_XS;
}
// The super-block types whose scales are per 16 elements, stored per unit after its values.
inline constexpr bool HasHalfUnitScales(TensorType type) {
  return type == TensorType::kQ2_K || type == TensorType::kQ3_K || type == TensorType::kQ6_K;
}
// The types whose packed kernels need AVX512-VNNI: their unsigned values (Q8_0's q + 128, the
// IQ4 grid + 128) reach 255, where AVX-512's pmaddubsw would saturate a pair's sum.
inline constexpr bool PackedKernelNeedsVnni(TensorType type) {
  return type == TensorType::kQ8_0 || type == TensorType::kIQ4_NL || type == TensorType::kIQ4_XS;
}
// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL: bytes of a tile block's values (the scales follow them).
inline constexpr size_t PackValueBytes(TensorType type) {
  if (type == TensorType::kQ8_0) return kPackRows * 32;
  if (type == TensorType::kQ5_0 || type == TensorType::kQ5_1) return kKPackHigh + 64;
  return kPackRows * 16;
}
// Every type with a packed layout.
inline constexpr bool IsPackedType(TensorType type) {
  return type == TensorType::kQ8_0 || type == TensorType::kQ4_0 || type == TensorType::kQ4_1 ||
         type == TensorType::kQ5_0 || type == TensorType::kQ5_1 || type == TensorType::kF16 ||
         type == TensorType::kIQ4_NL || IsPackedSuperBlock(type);
}
// Q2_K, Q3_K and Q6_K: where a unit's scales start within it (after its values).
inline constexpr size_t KPackUnitScales(TensorType type) {
  return type == TensorType::kQ6_K ? kKPackHigh + 128 : type == TensorType::kQ3_K ? 192 : 128;
}
// Where unit u of a super-block starts: u times this.
inline constexpr size_t KPackUnitBytes(TensorType type) {
  return HasHalfUnitScales(type) ? KPackUnitScales(type) + 2 * kPackRows
         : type == TensorType::kQ5_K ? kKPackHigh + 64
                                     : 256;
}
// Q4_K, Q5_K and IQ4_XS: sc (and m) after the units.
inline constexpr size_t KPackScales(TensorType type) { return 8 * KPackUnitBytes(type); }
inline constexpr size_t KPackMins(TensorType type) { return KPackScales(type) + 8 * kPackRows; }
// The super-block types whose weights subtract dmin times a minimum (w = d sc q - dmin m).
inline constexpr bool KPackHasDmin(TensorType type) {
  return type == TensorType::kQ2_K || type == TensorType::kQ4_K || type == TensorType::kQ5_K;
}
// d [16] fp16; the KPackHasDmin types then dmin [16].
inline constexpr size_t KPackD(TensorType type) {
  return HasHalfUnitScales(type)       ? 8 * KPackUnitBytes(type)
         : type == TensorType::kIQ4_XS ? KPackMins(type)
                                       : KPackMins(type) + 8 * kPackRows;
}
// F16 (float activations): element k of the tile's 16 rows as 16 fp16 at [k][16].
// Bytes of one tile's block (for F16: of 32 elements; for the super-block types: of a
// super-block).
size_t PackedBlockBytes(TensorType type);
// Bytes of one tile of 16 rows of `cols` elements.
size_t PackedTileBytes(TensorType type, size_t cols);
// out[t * w.rows + r] for every row and token; false when the chosen target has no packed
// kernel for w's type (the caller then uses the unpacked view).
bool MatMulPacked(const PackedMatrix& w, const QuantizedActivations& x, float* out,
                  ThreadPool& pool);
// Row `row` of a packed matrix in float32, equal to DequantizeRow on the unpacked one.
void DequantizePackedRow(const PackedMatrix& w, size_t row, float* out);
// The same for F16 weights against float activations x: [num_tokens, w.cols].
bool MatMulPackedFloat(const PackedMatrix& w, const float* x, size_t num_tokens, float* out,
                       ThreadPool& pool);

}  // namespace llmasos::cpu

#endif  // LLMASOS_DRIVERS_CPU_MATMUL_INTERNAL_H_
