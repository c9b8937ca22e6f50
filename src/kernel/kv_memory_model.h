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
// With a window (a model whose every layer attends within its last window_tokens positions):
// the engine calls ReleaseOutOfWindow after each step, and Grow does after a prefix-cache
// hit, so a process holds only the blocks its next tokens read (KvMemory::DropBefore); its
// need (PeakBlocks) is the window plus one prefill chunk, not its whole context. A process
// preempted by recompute starts over from its tokens (the dropped K/V are gone).
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
  // `kv` must outlive this object. window_tokens: 0, or the window every layer of the model
  // attends within (arch::ModelConfig::AllLayersWindow).
  explicit KvMemoryModel(KvMemory* kv, bool share_across_tenants = false, size_t window_tokens = 0);

  // The KvMemory sequence holding a process's KV (for block tables in the forward pass);
  // NotFound if the process holds none now.
  StatusOr<SequenceId> SequenceOf(ProcessId id) const;
  // The blocks of a process's block table (a block shared with others counts for each;
  // dropped entries do not count): on the device, or swapped out. Both 0 when it holds no KV.
  struct Holding {
    size_t resident_blocks = 0;
    size_t swapped_blocks = 0;
  };
  Holding HoldingOf(ProcessId id) const;
  // The next token of `process` is at next_position (its K/V before it are written): releases
  // its blocks that no later token reads, those wholly before next_position + 1 -
  // window_tokens. Nothing without a window, or for a process that holds no KV. Errors as
  // KvMemory::DropBefore.
  Status ReleaseOutOfWindow(const Process& process, size_t next_position);
  size_t window_tokens() const { return window_tokens_; }

  size_t NumTotalBlocks() const override { return kv_->num_blocks(); }
  size_t NumFreeBlocks() const override { return kv_->available_blocks(); }
  size_t BlocksForTokens(size_t num_tokens) const override;
  size_t PeakBlocks(size_t num_tokens, size_t chunk_tokens) const override;
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
  // DropBefore for a sequence whose next token is at next_position.
  Status DropOutOfWindow(SequenceId seq, size_t next_position);

  KvMemory* kv_;
  bool share_across_tenants_;
  size_t window_tokens_;
  std::unordered_map<ProcessId, SequenceId> sequences_;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_KV_MEMORY_MODEL_H_
