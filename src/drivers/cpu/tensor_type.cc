#include "drivers/cpu/tensor_type.h"

#include "util/logging.h"

namespace llmasos::cpu {

std::optional<TensorTypeTraits> GetTensorTypeTraits(uint32_t type_id) {
  switch (static_cast<TensorType>(type_id)) {
    case TensorType::kF32: return TensorTypeTraits{"F32", 1, 4};
    case TensorType::kF16: return TensorTypeTraits{"F16", 1, 2};
    case TensorType::kBF16: return TensorTypeTraits{"BF16", 1, 2};
    case TensorType::kQ4_0: return TensorTypeTraits{"Q4_0", BlockQ4_0::kBlockElems, sizeof(BlockQ4_0)};
    case TensorType::kQ4_1: return TensorTypeTraits{"Q4_1", BlockQ4_1::kBlockElems, sizeof(BlockQ4_1)};
    case TensorType::kQ8_0: return TensorTypeTraits{"Q8_0", BlockQ8_0::kBlockElems, sizeof(BlockQ8_0)};
  }
  return std::nullopt;
}

const TensorTypeTraits& Traits(TensorType type) {
  static const TensorTypeTraits kF32 = *GetTensorTypeTraits(0);
  static const TensorTypeTraits kF16 = *GetTensorTypeTraits(1);
  static const TensorTypeTraits kQ4_0 = *GetTensorTypeTraits(2);
  static const TensorTypeTraits kQ4_1 = *GetTensorTypeTraits(3);
  static const TensorTypeTraits kQ8_0 = *GetTensorTypeTraits(8);
  static const TensorTypeTraits kBF16 = *GetTensorTypeTraits(30);
  switch (type) {
    case TensorType::kF32: return kF32;
    case TensorType::kF16: return kF16;
    case TensorType::kQ4_0: return kQ4_0;
    case TensorType::kQ4_1: return kQ4_1;
    case TensorType::kQ8_0: return kQ8_0;
    case TensorType::kBF16: return kBF16;
  }
  CHECK(false) << "unsupported tensor type id " << static_cast<uint32_t>(type);
  return kF32;
}

size_t RowBytes(TensorType type, size_t num_elems) {
  const TensorTypeTraits& t = Traits(type);
  CHECK_EQ(num_elems % t.block_elems, 0u) << "row of " << num_elems << " elements of " << t.name;
  return num_elems / t.block_elems * t.block_bytes;
}

}  // namespace llmasos::cpu
