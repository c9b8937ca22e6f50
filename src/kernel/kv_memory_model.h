// KvMemoryModel: the scheduler's MemoryModel backed by the real paged KvMemory.
//
// Each process gets one KvMemory sequence on its first Grow (and a fresh one after a Release,
// e.g. a recompute preemption). That first Grow looks the process's tokens, all but the last,
// up in the prefix cache, so a shared system prompt is not computed again; the engine makes
// blocks findable by calling KvMemory::CommitTokens after it writes their K/V.
//
// Tenants never share prefix-cache blocks unless constructed with share_across_tenants: the
// sequence's salt is a hash of the tenant name. Processes with different LoRA adapters (or one
// with and one without) never share them either: the adapter's cache_key is hashed into the
// salt too, since the same tokens give other K/V under another adapter.
//
// Thread safety: none; the engine thread owns it together with the KvMemory and Scheduler.
#ifndef LLMASOS_KERNEL_KV_MEMORY_MODEL_H_
#define LLMASOS_KERNEL_KV_MEMORY_MODEL_H_

#include <unordered_map>

#include "kernel/kv_memory.h"
#include "kernel/memory_model.h"

namespace llmasos::kernel {

class KvMemoryModel : public MemoryModel {
 public:
  // `kv` must outlive this object.
  explicit KvMemoryModel(KvMemory* kv, bool share_across_tenants = false);

  // The KvMemory sequence holding a process's KV (for block tables in the forward pass);
  // NotFound if the process holds none now.
  StatusOr<SequenceId> SequenceOf(ProcessId id) const;
  // The blocks of a process's block table (a block shared with others counts for each): on
  // the device, or swapped out. Both 0 when it holds no KV.
  struct Holding {
    size_t resident_blocks = 0;
    size_t swapped_blocks = 0;
  };
  Holding HoldingOf(ProcessId id) const;

  size_t NumTotalBlocks() const override { return kv_->num_blocks(); }
  size_t NumFreeBlocks() const override { return kv_->available_blocks(); }
  size_t BlocksForTokens(size_t num_tokens) const override;
  size_t BlocksToGrow(const Process& process, size_t num_tokens) const override;
  size_t NumBlocksHeld(const Process& process) const override;
  StatusOr<size_t> Grow(const Process& process, size_t num_tokens) override;
  void Release(const Process& process) override;
  size_t SwapOutBytes(const Process& process) const override;
  size_t NumFreeSwapBytes() const override;
  Status SwapOut(const Process& process) override;
  Status Fork(const Process& parent, const Process& child) override;

 private:
  uint64_t SaltOf(const Process& process) const;

  KvMemory* kv_;
  bool share_across_tenants_;
  std::unordered_map<ProcessId, SequenceId> sequences_;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_KV_MEMORY_MODEL_H_
