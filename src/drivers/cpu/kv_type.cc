#include "drivers/cpu/kv_type.h"

#include <string>
#include <utility>

namespace llmasos::cpu {

std::string_view KvTypeName(KvType type) {
  switch (type) {
    case KvType::kF32: return "f32";
    case KvType::kF16: return "f16";
    case KvType::kQ8_0: return "q8_0";
  }
  return "?";
}

StatusOr<KvType> ParseKvType(std::string_view name, std::string_view flag) {
  for (KvType t : {KvType::kF32, KvType::kF16, KvType::kQ8_0}) {
    if (name == KvTypeName(t)) return t;
  }
  return InvalidArgumentError(std::string(flag) + ": unknown KV cache type '" + std::string(name) +
                              "' (accepted: " + std::string(kKvTypeNames) + ")");
}

TensorType KvTensorType(KvType type) {
  switch (type) {
    case KvType::kF32: return TensorType::kF32;
    case KvType::kF16: return TensorType::kF16;
    case KvType::kQ8_0: return TensorType::kQ8_0;
  }
  return TensorType::kF32;
}

size_t KvRowBytes(KvType type, size_t n) { return RowBytes(KvTensorType(type), n); }

Status CheckKvTypesFit(KvType k_type, KvType v_type, size_t head_dim) {
  for (auto [type, flag] : {std::pair{k_type, "--cache-type-k"}, std::pair{v_type, "--cache-type-v"}}) {
    if (type == KvType::kQ8_0 && head_dim % BlockQ8_0::kBlockElems != 0) {
      return InvalidArgumentError(std::string(flag) + " q8_0 needs the model's head dimension to be a multiple "
                                  "of 32; this model's is " + std::to_string(head_dim) + " (use f16 or f32)");
    }
  }
  return OkStatus();
}

}  // namespace llmasos::cpu
