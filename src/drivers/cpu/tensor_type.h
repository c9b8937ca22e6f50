// Tensor element types and their storage layout. The numeric ids are GGML's, as stored in
// GGUF files, so a type id read from a file maps here without translation.
//
// Quantized types store rows as a sequence of blocks of kBlockElems elements; a row's
// element count must be a multiple of its type's block size.
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
  kQ8_0 = 8,
  kBF16 = 30,
};

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

struct TensorTypeTraits {
  std::string_view name;  // "Q4_1", as llama.cpp prints it
  size_t block_elems;     // elements per block (1 for float types)
  size_t block_bytes;     // bytes per block
};

// Traits of a type this build supports, or nullopt for an id it does not (including valid
// GGML ids such as the K-quants that are not implemented yet).
std::optional<TensorTypeTraits> GetTensorTypeTraits(uint32_t type_id);
const TensorTypeTraits& Traits(TensorType type);  // REQUIRES: a supported type

// Bytes of one row of `num_elems` elements. REQUIRES: num_elems % block_elems == 0.
size_t RowBytes(TensorType type, size_t num_elems);

}  // namespace llmasos::cpu

#endif  // LLMASOS_DRIVERS_CPU_TENSOR_TYPE_H_
