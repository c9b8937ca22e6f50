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
// Layer groups (a model with global layers beside sliding ones, arch::LayerGroupsOf): the
// KvMemory's blocks are pages of one group's layers, and a process holds one KvMemory sequence
// per group, each with its group's window (0 for a global group): sliding groups drop what
// falls out of their window, global groups keep every position. Every count this class gives
// the scheduler (BlocksForTokens, PeakBlocks, BlocksToGrow, NumBlocksHeld, swap bytes) is in
// pages summed over the groups, so the scheduler is the same for one group or many. Each
// group's sequence has its own prefix-cache salt (the process's salt mixed with the group
// index); a prompt reuses the prefix that every group still holds (the shortest of the
// groups' cached prefixes): a sliding group that dropped a block before registering it ends
// every group's match there. One group with the model's all-layers window is the layout of a
// model without groups, unchanged.
//
// Invariants (CheckInvariants): every process holds one sequence per group or none; its
// groups have one length and are all swapped out or all resident.
//
// Thread safety: none; the engine thread owns it together with the KvMemory and Scheduler.
#ifndef LLMASOS_KERNEL_KV_MEMORY_MODEL_H_
#define LLMASOS_KERNEL_KV_MEMORY_MODEL_H_

#include <span>
#include <unordered_map>
#include <vector>

#include "kernel/kv_memory.h"
#include "kernel/memory_model.h"

namespace llmasos::kernel {

class KvMemoryModel : public MemoryModel {
 public:
  // `kv` must outlive this object. window_tokens: 0, or the window every layer of the model
  // attends within (arch::ModelConfig::AllLayersWindow).
  explicit KvMemoryModel(KvMemory* kv, bool share_across_tenants = false, size_t window_tokens = 0);
  // Layer groups: group_windows[g] is group g's window (0: global). REQUIRES: at least one.
  KvMemoryModel(KvMemory* kv, bool share_across_tenants, std::vector<size_t> group_windows);

  size_t num_groups() const { return group_windows_.size(); }
  // The KvMemory sequences holding a process's KV, one per group (for block tables in the
  // forward pass); valid until the process's next Grow, Fork or Release. NotFound if the
  // process holds none now.
  StatusOr<std::span<const SequenceId>> SequencesOf(ProcessId id) const;
  // Group 0's sequence (the only one of a model without groups).
  StatusOr<SequenceId> SequenceOf(ProcessId id) const;
  // The pages of a process's block tables (a page shared with others counts for each;
  // dropped entries do not count): on the device, or swapped out. Both 0 when it holds no KV.
  struct Holding {
    size_t resident_blocks = 0;
    size_t swapped_blocks = 0;
  };
  Holding HoldingOf(ProcessId id) const;
  // tokens: the ids at positions [0, tokens.size()) of the process, whose K/V are written:
  // registers its full blocks in every group (KvMemory::CommitTokens). Nothing for a process
  // that holds no KV.
  Status CommitTokens(const Process& process, std::span<const TokenId> tokens);
  // The next token of `process` is at next_position (its K/V before it are written): releases
  // its blocks that no later token reads, in each group with a window those wholly before
  // next_position + 1 - window. Nothing without a window, or for a process that holds no KV.
  // Errors as KvMemory::DropBefore.
  Status ReleaseOutOfWindow(const Process& process, size_t next_position);
  // The all-layers window of a model without groups (0 with groups or none).
  size_t window_tokens() const { return num_groups() == 1 ? group_windows_[0] : 0; }
  // Internal error naming the first broken invariant (the header's), after KvMemory's own.
  Status CheckInvariants() const;

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
  // Group g's salt: the process's own for a single group, mixed with g otherwise.
  uint64_t GroupSalt(uint64_t salt, size_t group) const;
  // Blocks of one group's table for num_tokens positions.
  size_t PagesForTokens(size_t num_tokens) const;
  // Pages one group's sequence needs to hold num_tokens resident (BlocksToGrow of one group).
  size_t PagesToGrow(SequenceId seq, size_t num_tokens) const;
  // DropBefore for group g's sequence whose next token is at next_position.
  Status DropOutOfWindow(size_t group, SequenceId seq, size_t next_position);
  // The process's sequences; nullptr if it holds none.
  const std::vector<SequenceId>* Find(ProcessId id) const;

  KvMemory* kv_;
  bool share_across_tenants_;
  std::vector<size_t> group_windows_;  // [num_groups]: 0 for a global group
  std::unordered_map<ProcessId, std::vector<SequenceId>> sequences_;  // [num_groups] each
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_KV_MEMORY_MODEL_H_
