#include "drivers/cpu/tensor_type.h"

#include <array>

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
    case TensorType::kQ5_0: return TensorTypeTraits{"Q5_0", BlockQ5_0::kBlockElems, sizeof(BlockQ5_0)};
    case TensorType::kQ5_1: return TensorTypeTraits{"Q5_1", BlockQ5_1::kBlockElems, sizeof(BlockQ5_1)};
    case TensorType::kQ2_K: return TensorTypeTraits{"Q2_K", BlockQ2_K::kBlockElems, sizeof(BlockQ2_K)};
    case TensorType::kQ3_K: return TensorTypeTraits{"Q3_K", BlockQ3_K::kBlockElems, sizeof(BlockQ3_K)};
    case TensorType::kQ4_K: return TensorTypeTraits{"Q4_K", BlockQ4_K::kBlockElems, sizeof(BlockQ4_K)};
    case TensorType::kQ5_K: return TensorTypeTraits{"Q5_K", BlockQ5_K::kBlockElems, sizeof(BlockQ5_K)};
    case TensorType::kQ6_K: return TensorTypeTraits{"Q6_K", BlockQ6_K::kBlockElems, sizeof(BlockQ6_K)};
    case TensorType::kQ8_K: return TensorTypeTraits{"Q8_K", BlockQ8_K::kBlockElems, sizeof(BlockQ8_K)};
    case TensorType::kIQ4_NL: return TensorTypeTraits{"IQ4_NL", BlockIQ4_NL::kBlockElems, sizeof(BlockIQ4_NL)};
    case TensorType::kIQ4_XS: return TensorTypeTraits{"IQ4_XS", BlockIQ4_XS::kBlockElems, sizeof(BlockIQ4_XS)};
  }
  return std::nullopt;
}

bool IsBlockQuantized(TensorType type) {
  return type != TensorType::kF32 && type != TensorType::kF16 && type != TensorType::kBF16;
}

const TensorTypeTraits& Traits(TensorType type) {
  // Every GGML id up to BF16's, those this build does not support left empty.
  static const auto* const kTable = [] {
    auto* table = new std::array<std::optional<TensorTypeTraits>, 31>;
    for (uint32_t id = 0; id < table->size(); ++id) (*table)[id] = GetTensorTypeTraits(id);
    return table;
  }();
  const auto id = static_cast<uint32_t>(type);
  CHECK(id < kTable->size() && (*kTable)[id].has_value()) << "unsupported tensor type id " << id;
  return *(*kTable)[id];
}

size_t RowBytes(TensorType type, size_t num_elems) {
  const TensorTypeTraits& t = Traits(type);
  CHECK_EQ(num_elems % t.block_elems, 0u) << "row of " << num_elems << " elements of " << t.name;
  return num_elems / t.block_elems * t.block_bytes;
}

}  // namespace llmasos::cpu
