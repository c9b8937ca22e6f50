// How the model's batched forward pass (model/arch/batch_forward.h) reaches a KvMemory's
// pool: the pool's [block][layer][K plane, V plane] layout, in the pool's K and V types, as an
// arch::KvLayout.
#ifndef LLMASOS_KERNEL_KV_LAYOUT_H_
#define LLMASOS_KERNEL_KV_LAYOUT_H_

#include "kernel/kv_memory.h"
#include "model/arch/batch_forward.h"
#include "util/logging.h"

namespace llmasos::kernel {

inline arch::KvLayout KvLayoutOf(KvMemory& memory) {
  arch::KvLayout layout;
  layout.k_type = memory.k_type();
  layout.v_type = memory.v_type();
  layout.k_base = memory.KData(0, 0);
  layout.v_base = memory.VData(0, 0);
  layout.block_stride = memory.block_bytes();
  layout.layer_stride = memory.block_bytes() / memory.num_layers();  // a block is its layers
  layout.block_tokens = memory.block_tokens();
  // The arithmetic above must be the pool's own: check it on the last block and layer.
  const BlockId last = static_cast<BlockId>(memory.num_blocks() - 1);
  const size_t top = memory.num_layers() - 1;
  CHECK(layout.K(last, top) == memory.KData(last, top) && layout.V(last, top) == memory.VData(last, top))
      << "KvMemory's pool layout is not the one KvLayoutOf assumes";
  return layout;
}

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_KV_LAYOUT_H_
