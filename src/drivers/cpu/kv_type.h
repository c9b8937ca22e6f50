// The element types a KV cache stores (`--cache-type-k`, `--cache-type-v`), chosen for keys
// and values independently. F16 halves the bytes attention reads per cached token against F32;
// Q8_0 (GGUF's Q8_0 blocks: 32 int8 values and one fp16 scale, 34 bytes) takes 8.5 bits a value.
//
// How a [block_tokens] x [kv_dim] plane of one layer's keys or values is laid out:
//   - values: one row per token, RowBytes(type, kv_dim) bytes each, in all three types;
//   - keys in F32 and F16: transposed, element d of token r's key at [d * block_tokens + r],
//     so the scores kernel reads a block's keys as vectors over positions;
//   - keys in Q8_0: one row per token like the values (a Q8_0 block spans 32 elements of one
//     key, so it cannot be transposed); the scores kernel dequantises a key in registers.
// Either way a plane is KvRowBytes(type, kv_dim) * block_tokens bytes.
#ifndef LLMASOS_DRIVERS_CPU_KV_TYPE_H_
#define LLMASOS_DRIVERS_CPU_KV_TYPE_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "drivers/cpu/tensor_type.h"
#include "util/status.h"

namespace llmasos::cpu {

enum class KvType : uint8_t { kF32, kF16, kQ8_0 };

// What the flags accept, in llama.cpp's spelling: "f32, f16, q8_0".
inline constexpr std::string_view kKvTypeNames = "f32, f16, q8_0";

// "f32", "f16" or "q8_0".
std::string_view KvTypeName(KvType type);
// The type named `name` (exactly one of kKvTypeNames); InvalidArgument naming `flag`, the bad
// value and the accepted ones otherwise.
StatusOr<KvType> ParseKvType(std::string_view name, std::string_view flag);
// The tensor type whose rows a KV type's rows are.
TensorType KvTensorType(KvType type);
// Bytes of one row of n values: the one home of the KV element sizes. REQUIRES: n % 32 == 0
// for Q8_0 (see CheckKvTypesFit).
size_t KvRowBytes(KvType type, size_t n);
// InvalidArgument when rows of `head_dim` values cannot be stored as the key or value type
// (Q8_0 needs the head dimension a multiple of 32, so no Q8_0 block straddles two heads),
// naming the flag that chose it (--cache-type-k / --cache-type-v).
Status CheckKvTypesFit(KvType k_type, KvType v_type, size_t head_dim);

}  // namespace llmasos::cpu

#endif  // LLMASOS_DRIVERS_CPU_KV_TYPE_H_
