// For tests of the batched forward pass: a paged K/V pool in the layout kernel::KvMemory uses,
// [block][layer][K plane, V plane], each plane block_tokens rows in its type, without a
// KvMemory around it. Filled with NaN (as floats; F32 planes are all NaN), so a read of a row
// the pass never wrote shows in the logits. With layer groups a block holds one group's
// layers_per_block layers (KvLayerGroups::layers_per_group; 0: every layer).
#ifndef LLMASOS_MODEL_ARCH_PAGED_POOL_TEST_UTIL_H_
#define LLMASOS_MODEL_ARCH_PAGED_POOL_TEST_UTIL_H_

#include <cmath>
#include <cstddef>
#include <vector>

#include "drivers/cpu/kv_type.h"
#include "model/arch/batch_forward.h"
#include "model/arch/llama_model.h"

namespace llmasos::arch {

struct PagedPool {
  PagedPool(const ModelConfig& c, size_t num_blocks, size_t block_tokens,
            cpu::KvType k_type = cpu::KvType::kF32, cpu::KvType v_type = cpu::KvType::kF32,
            size_t layers_per_block = 0)
      : num_blocks(num_blocks) {
    const size_t layers = layers_per_block == 0 ? c.num_layers : layers_per_block;
    const size_t k_plane = block_tokens * cpu::KvRowBytes(k_type, c.kv_dim());
    const size_t v_plane = block_tokens * cpu::KvRowBytes(v_type, c.kv_dim());
    data.assign((num_blocks * layers * (k_plane + v_plane) + 3) / 4, NAN);
    std::byte* base = reinterpret_cast<std::byte*>(data.data());
    layout.k_type = k_type;
    layout.v_type = v_type;
    layout.k_base = base;
    layout.v_base = base + k_plane;
    layout.layer_stride = k_plane + v_plane;
    layout.block_stride = layers * layout.layer_stride;
    layout.block_tokens = block_tokens;
  }
  size_t num_blocks;
  std::vector<float> data;
  KvLayout layout;
};

}  // namespace llmasos::arch

#endif  // LLMASOS_MODEL_ARCH_PAGED_POOL_TEST_UTIL_H_
