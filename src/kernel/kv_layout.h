// How the model's batched forward pass (model/arch/batch_forward.h) reaches a KvMemory's
// pool: the pool's [block][layer][K|V][block_tokens][kv_dim] layout as an arch::KvLayout.
#ifndef LLMASOS_KERNEL_KV_LAYOUT_H_
#define LLMASOS_KERNEL_KV_LAYOUT_H_

#include "kernel/kv_memory.h"
#include "model/arch/batch_forward.h"
#include "util/logging.h"

namespace llmasos::kernel {

// REQUIRES: memory.dtype() == kF32 (the forward pass stores float32 K/V).
inline arch::KvLayout KvLayoutOf(KvMemory& memory) {
  CHECK(memory.dtype() == KvDataType::kF32) << "the forward pass needs an F32 KV pool";
  const size_t row_floats = memory.block_tokens() * memory.kv_dim();
  arch::KvLayout layout;
  layout.k_base = memory.K(0, 0);
  layout.v_base = layout.k_base + row_floats;
  layout.layer_stride = 2 * row_floats;
  layout.block_stride = memory.num_layers() * layout.layer_stride;
  layout.block_tokens = memory.block_tokens();
  // The arithmetic above must be the pool's own: check it on the last block and layer.
  const BlockId last = static_cast<BlockId>(memory.num_blocks() - 1);
  const size_t top = memory.num_layers() - 1;
  CHECK(layout.K(last, top) == memory.K(last, top) && layout.V(last, top) == memory.V(last, top))
      << "KvMemory's pool layout is not the one KvLayoutOf assumes";
  return layout;
}

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_KV_LAYOUT_H_
