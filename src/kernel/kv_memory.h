// KvMemory: the paged KV memory of one model instance (ARCHITECTURE.md, "Kernel").
//
// The KV cache of every process lives in one pool of fixed-size blocks (default 16 tokens).
// A sequence (one per process, or one per sample of an n > 1 request) owns a block table:
// position p of the sequence is row p % block_tokens of block table[p / block_tokens]. Paging
// removes external fragmentation: any free block serves any sequence.
//
// On top of the pool:
//   - reference counts and copy-on-write: Fork() shares every block of a sequence; the first
//     write into a shared block (Append into a shared partial last block, PrepareWrite) copies
//     it first, so no sequence ever sees another's writes;
//   - a prefix cache: a full block can be registered under a hash chained over (parent block's
//     hash, the block's token ids, the tenant salt); MatchPrefix() attaches the cached blocks
//     of the longest cached prefix of a new sequence. Unreferenced cached blocks stay resident
//     and are evicted in least-recently-used order, only when no free block is left. Tenants
//     with different salts never share a block; tenants configured to share pass one salt;
//   - swap space in host memory or in a file: SwapOut() copies a sequence's blocks out and
//     releases them, SwapIn() brings them back, bit for bit;
//   - dropping for sliding-window models: DropBefore() releases the leading blocks no layer
//     will read again (every layer of the pool attends within a window: all of a model's, or
//     one sliding layer group's, KvMemoryModel), leaving kDroppedBlock in their
//     block-table entries so that position p stays at table[p / block_tokens]. A dropped block
//     that was registered stays in the prefix cache (evictable once unreferenced): its K/V are
//     what its tokens produced whatever the window, and a later prompt reaches it, and the
//     blocks after it, only through a hash chain over every token from position 0, so a prefix
//     is never matched across a hole that has left the cache.
//
// Block storage layout (one allocation, 64-byte aligned):
//   pool  [num_blocks][num_layers][K plane, V plane]
//   plane [block_tokens] rows of kv_dim values in the plane's type, cpu::KvRowBytes each
//         (K/V element types are chosen independently; drivers/cpu/kv_type.h says how each
//         type lays out its plane: F32 and F16 keys are stored transposed)
// Why block-major: a block is one contiguous range, so a copy-on-write copy, a swap-out and a
// swap-in are each one memcpy; within a block, the K (or V) rows of one layer are the same
// [token][kv_dim] rows as the single-sequence cache in model/arch, so paged attention runs the
// same per-row kernel over each block of a block table in turn. A kv_dim row of F32 with
// kv_dim = 192 (SmolLM2-135M) is 768 bytes: the 16 rows of a block-layer are 12 KiB, read
// sequentially; in F16 6 KiB, in Q8_0 3.2 KiB.
//
// Invariants (checked by CheckInvariants(); the property test calls it after every operation):
//   - every block is in exactly one state: kFree (on the free list), kUsed (ref_count > 0) or
//     kCached (ref_count == 0, registered in the prefix cache, on the LRU list);
//     num_free + num_used + num_cached == num_blocks;
//   - ref_count of a block == the number of resident block-table entries naming it;
//   - a block registered in the prefix cache is full and its contents are those its token ids
//     produced; a block in the cache map maps back to its hash;
//   - a sequence's last block may be partial; every other block of its table is full;
//   - a sequence's dropped entries are the leading num_dropped of its table, all full, and
//     name no block (kDroppedBlock); while swapped out it holds one swap slot per other entry.
//
// Thread safety: a KvMemory is owned by one engine thread (the step loop of its model
// instance). It has no locks; callers on other threads go through the engine's queue.
#ifndef LLMASOS_KERNEL_KV_MEMORY_H_
#define LLMASOS_KERNEL_KV_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "drivers/cpu/kv_type.h"
#include "util/status.h"

namespace llmasos::kernel {

using TokenId = int32_t;
using BlockId = uint32_t;
using SequenceId = uint64_t;

// The block-table entry of a block released by KvMemory::DropBefore: no block of the pool.
inline constexpr BlockId kDroppedBlock = UINT32_MAX;

// Bytes of one block: num_layers * block_tokens * (K row bytes + V row bytes). The one place
// a KV budget turns into blocks (KvMemory::Create) or blocks into a budget (callers sizing a
// pool for a context). nullopt on overflow. REQUIRES: kv_dim % 32 == 0 for a Q8_0 type.
std::optional<size_t> KvBlockBytes(size_t num_layers, size_t kv_dim, size_t block_tokens,
                                   cpu::KvType k_type, cpu::KvType v_type);

struct KvMemoryOptions {
  // Model shape.
  size_t num_layers = 0;
  size_t kv_dim = 0;  // num_kv_heads * head_dim
  // Element types of the keys and of the values (Q8_0 needs kv_dim % 32 == 0).
  cpu::KvType k_type = cpu::KvType::kF32;
  cpu::KvType v_type = cpu::KvType::kF32;

  size_t block_tokens = 16;
  // Bytes of KV storage; the pool holds floor(budget_bytes / block_bytes) blocks.
  size_t budget_bytes = 0;
  // Bytes of swap space; 0 disables swapping (SwapOut fails with FailedPrecondition).
  size_t swap_budget_bytes = 0;
  // Empty: swap lives in host memory, allocated a block at a time on first use. Otherwise the
  // path of a file that holds it (created or truncated; a regular file is unlinked at once, so
  // it disappears with the process).
  std::string swap_file_path;
};

// Where position p of a sequence lives.
struct KvSlot {
  BlockId block = 0;
  size_t row = 0;  // token row inside the block, < block_tokens
};

enum class BlockState { kFree, kUsed, kCached };

struct KvStats {
  size_t block_tokens = 0;  // tokens per block (the pool's page size)
  size_t block_bytes = 0;   // bytes per block, in the pool's K and V types
  cpu::KvType k_type = cpu::KvType::kF32;
  cpu::KvType v_type = cpu::KvType::kF32;
  size_t total_blocks = 0;
  size_t free_blocks = 0;    // on the free list
  size_t used_blocks = 0;    // referenced by at least one block table
  size_t cached_blocks = 0;  // unreferenced, resident in the prefix cache, evictable
  size_t cache_entries = 0;  // blocks registered in the prefix cache, referenced or not
  size_t swapped_blocks = 0;        // swap slots in use
  size_t swap_capacity_blocks = 0;  // swap slots in all
  size_t num_sequences = 0;         // resident and swapped
  size_t evicted_blocks = 0;        // cached blocks evicted so far
  uint64_t dropped_blocks = 0;      // block-table entries released by DropBefore so far
  // Prefix cache: one lookup per MatchPrefix call; tokens counted in full blocks.
  uint64_t prefix_lookups = 0;
  uint64_t prefix_hits = 0;           // lookups that reused at least one block
  uint64_t prefix_queried_tokens = 0;
  uint64_t prefix_hit_tokens = 0;
  double prefix_hit_rate = 0;  // prefix_hit_tokens / prefix_queried_tokens (0 when none)
  // Tokens held in used blocks (a shared block counts once) / (used_blocks * block_tokens).
  size_t stored_tokens = 0;
  double utilisation = 0;
};

// What preempting a sequence costs, for the scheduler's cost model: swapping moves
// swap_bytes out now and the same back on resume; recomputing runs recompute_tokens of prefill
// on resume. Only blocks the sequence holds alone are freed by either.
struct PreemptionCost {
  size_t num_blocks = 0;        // blocks in the block table, dropped entries aside
  size_t freed_blocks = 0;      // of those, blocks with no other reference
  size_t swap_bytes = 0;        // bytes copied by SwapOut (and again by SwapIn)
  size_t recompute_tokens = 0;  // tokens a recompute would run again
};

// True when moving 2 * swap_bytes at copy_bytes_per_s is faster than prefilling
// recompute_tokens at prefill_tokens_per_s. REQUIRES: both rates > 0.
bool SwapIsCheaper(const PreemptionCost& cost, double copy_bytes_per_s,
                   double prefill_tokens_per_s);

class KvMemory {
 public:
  // InvalidArgument for a zero shape, a zero block size or a budget smaller than one block;
  // ResourceExhausted if the pool cannot be allocated; IoError if the swap file cannot be
  // opened.
  static StatusOr<std::unique_ptr<KvMemory>> Create(const KvMemoryOptions& options);
  ~KvMemory();
  KvMemory(const KvMemory&) = delete;
  KvMemory& operator=(const KvMemory&) = delete;

  // ---- Sequences -------------------------------------------------------------------------
  // A new empty sequence; ids start at 1 and are never reused (0 is never a sequence). Blocks
  // are shared through the prefix cache only between sequences with the same tenant_salt.
  SequenceId CreateSequence(uint64_t tenant_salt);

  // Reserves positions [length, length + num_tokens) and allocates the blocks they need; the
  // caller then writes their K/V through Slot(). A shared partial last block is copied first.
  // ResourceExhausted (nothing changed) when the free list and the evictable cache cannot
  // supply the blocks: the caller may preempt someone and retry.
  Status Append(SequenceId seq, size_t num_tokens);
  // Blocks Append(seq, num_tokens) would take from available_blocks(), copy included: what
  // the scheduler's capacity step reserves. FailedPrecondition while swapped out.
  StatusOr<size_t> BlocksToAppend(SequenceId seq, size_t num_tokens) const;
  // Blocks a new sequence of num_tokens tokens needs, before any prefix-cache reuse.
  size_t BlocksForTokens(size_t num_tokens) const {
    return (num_tokens + options_.block_tokens - 1) / options_.block_tokens;
  }

  // A new sequence sharing every block of seq (copy-on-write); same tenant, length and prefix
  // hashes. Allocates nothing.
  StatusOr<SequenceId> Fork(SequenceId seq);

  // Releases the sequence's blocks (full registered blocks stay in the prefix cache) and its
  // swap slots, and forgets the id.
  Status Free(SequenceId seq);

  // Releases every block of seq whose positions all lie before `position` (clamped to the
  // length), as Free would (registered blocks stay cached), and marks their table entries
  // kDroppedBlock: for models whose every layer attends within a window, the caller passes
  // the first position any later token reads. Returns the number of entries newly dropped.
  // Positions of a dropped block cannot be read or rewritten (Slot, PrepareWrite fail), and
  // the sequence can no longer be fully recomputed from its blocks, only from its tokens.
  // FailedPrecondition while swapped out.
  StatusOr<size_t> DropBefore(SequenceId seq, size_t position);
  // Leading block-table entries dropped so far (0 for a sequence that never dropped).
  StatusOr<size_t> NumDropped(SequenceId seq) const;

  // ---- Block tables and storage ----------------------------------------------------------
  StatusOr<size_t> Length(SequenceId seq) const;
  // The block table; valid until the next call that changes this sequence. Its leading
  // NumDropped(seq) entries are kDroppedBlock. FailedPrecondition while swapped out.
  StatusOr<std::span<const BlockId>> BlockTable(SequenceId seq) const;
  // Where position `position` (< length) lives, for reading. FailedPrecondition for a
  // position of a dropped block.
  StatusOr<KvSlot> Slot(SequenceId seq, size_t position) const;
  // Like Slot, for rewriting a position already written: copies the block first if it is
  // shared (ResourceExhausted if no block is available for the copy), and drops it from the
  // prefix cache, since its contents will no longer be what its tokens produced; this
  // sequence's prefix hashes from that block on are forgotten (CommitTokens redoes them).
  StatusOr<KvSlot> PrepareWrite(SequenceId seq, size_t position);

  // The K or V plane of one layer of one block, laid out as its type says (kv_type.h).
  // REQUIRES: block < num_blocks; layer < num_layers.
  std::byte* KData(BlockId block, size_t layer) { return LayerData(block, layer, 0); }
  std::byte* VData(BlockId block, size_t layer) { return LayerData(block, layer, 1); }
  // The same as [block_tokens * kv_dim] elements, for tests that write them directly.
  // REQUIRES: k_type (v_type) kF32 for K (V), kF16 for KHalf (VHalf).
  float* K(BlockId block, size_t layer);
  float* V(BlockId block, size_t layer);
  uint16_t* KHalf(BlockId block, size_t layer);
  uint16_t* VHalf(BlockId block, size_t layer);

  // ---- Prefix cache ----------------------------------------------------------------------
  // For a new sequence (length 0): attaches the cached blocks of the longest cached prefix of
  // `tokens` made of full blocks, and returns the number of tokens reused (a multiple of
  // block_tokens, <= tokens.size()). A caller that needs logits of the last prompt token
  // passes the prompt without it, so at least that token is computed.
  // max_tokens caps what is reused (a caller matching several sequences to one length);
  // count_lookup false leaves the lookup out of Stats (the same prompt looked up again).
  StatusOr<size_t> MatchPrefix(SequenceId seq, std::span<const TokenId> tokens,
                               size_t max_tokens = SIZE_MAX, bool count_lookup = true);
  // The tokens MatchPrefix would reuse for `tokens` in a new sequence of tenant_salt, without
  // attaching anything or counting a lookup.
  size_t CachedPrefixTokens(uint64_t tenant_salt, std::span<const TokenId> tokens) const;

  // tokens: the ids at positions [0, tokens.size()) of seq, whose K/V are written
  // (tokens.size() <= length). Registers each full block not yet registered; a block whose
  // prefix is already cached (another sequence computed it) is skipped, and registered later
  // if that other block leaves the cache. Afterwards every full block of `tokens` is
  // matchable. Returns the number of blocks newly registered. Cost: O(new full blocks),
  // O(full blocks) after cache entries were removed.
  StatusOr<size_t> CommitTokens(SequenceId seq, std::span<const TokenId> tokens);

  // Evicts up to max_blocks unreferenced cached blocks, least recently used first, onto the
  // free list. Returns how many it evicted.
  size_t EvictCached(size_t max_blocks);

  // ---- Swap ------------------------------------------------------------------------------
  // Copies every block of seq (dropped entries aside) into swap slots and releases them. FailedPrecondition if
  // swapping is disabled or seq is already out; ResourceExhausted when the swap space is
  // short, IoError when the swap file cannot be written: nothing changed then.
  Status SwapOut(SequenceId seq);
  // Allocates blocks and copies the swapped contents back, exact. ResourceExhausted when the
  // pool cannot supply the blocks, IoError when the swap file cannot be read: the sequence
  // stays swapped out then (cached blocks may have been evicted to make room).
  Status SwapIn(SequenceId seq);
  StatusOr<bool> IsSwappedOut(SequenceId seq) const;
  StatusOr<PreemptionCost> EstimatePreemption(SequenceId seq) const;

  // ---- Introspection ---------------------------------------------------------------------
  // O(num_blocks): for metrics and tests, not for every step.
  KvStats Stats() const;
  size_t num_blocks() const { return num_blocks_; }
  size_t block_tokens() const { return options_.block_tokens; }
  size_t block_bytes() const { return block_bytes_; }
  size_t num_layers() const { return options_.num_layers; }
  size_t kv_dim() const { return options_.kv_dim; }
  cpu::KvType k_type() const { return options_.k_type; }
  cpu::KvType v_type() const { return options_.v_type; }
  // Blocks that an allocation can use now: free plus evictable.
  size_t available_blocks() const { return free_.size + lru_.size; }
  // REQUIRES: block < num_blocks.
  uint32_t RefCount(BlockId block) const;
  BlockState StateOf(BlockId block) const;
  // Walks every list and table; Internal error naming the first broken invariant. O(blocks +
  // table entries): for tests and debug builds.
  Status CheckInvariants() const;

 private:
  static constexpr uint32_t kNil = UINT32_MAX;

  // Per-block metadata, parallel to the pool. prev/next link the block into the free list or
  // the LRU list (whichever its state says), so removal from either is O(1).
  struct BlockMeta {
    uint32_t ref_count = 0;
    uint32_t prev = kNil;
    uint32_t next = kNil;
    uint32_t filled = 0;       // rows written (reserved) so far; a shared block counts once
    BlockState state = BlockState::kFree;
    bool registered = false;   // in cache_
    uint64_t hash = 0;         // valid when registered
    uint64_t parent_hash = 0;  // valid when registered
    uint64_t salt = 0;         // valid when registered
  };
  // An index-linked doubly linked list over BlockMeta::prev/next.
  struct BlockList {
    uint32_t head = kNil;  // least recently inserted
    uint32_t tail = kNil;
    size_t size = 0;
  };

  struct Sequence {
    uint64_t salt = 0;
    size_t length = 0;                // tokens reserved
    std::vector<BlockId> blocks;      // resident block table; empty while swapped out
    size_t num_dropped = 0;           // leading entries released by DropBefore
    std::vector<uint64_t> hashes;     // prefix hashes of blocks [0, hashes.size())
    uint64_t cache_removals_seen = 0;  // cache_removals_ at the last CommitTokens
    bool swapped = false;
    std::vector<uint32_t> swap_slots;  // one per undropped entry while swapped out
  };

  class SwapSpace;
  class HostSwap;
  class FileSwap;

  KvMemory(const KvMemoryOptions& options, size_t num_blocks, size_t block_bytes,
           size_t num_swap_slots, std::byte* pool, std::unique_ptr<SwapSpace> swap);

  StatusOr<Sequence*> Find(SequenceId seq, const char* op);
  StatusOr<const Sequence*> Find(SequenceId seq, const char* op) const;

  std::byte* BlockData(BlockId block) { return pool_.get() + size_t{block} * block_bytes_; }
  std::byte* LayerData(BlockId block, size_t layer, size_t kv);

  void PushBack(BlockList& list, BlockId block);
  void Remove(BlockList& list, BlockId block);
  // Pops a free block, else evicts the least recently used cached block. REQUIRES:
  // available_blocks() > 0.
  BlockId TakeBlock();
  void Ref(BlockId block);
  void Unref(BlockId block);
  void Unregister(BlockId block);
  // Makes block_idx of seq exclusively owned, copying it if shared. REQUIRES: one block
  // available when it is shared.
  void MakeExclusive(Sequence& s, size_t block_idx);
  // Walks the cached blocks of the longest cached prefix of `tokens` (at most max_blocks),
  // calling on_block(block, hash) for each in order; returns how many.
  template <typename OnBlock>
  size_t WalkCachedPrefix(uint64_t salt, std::span<const TokenId> tokens, size_t max_blocks,
                          OnBlock on_block) const;
  uint64_t HashBlock(uint64_t parent_hash, uint64_t salt, std::span<const TokenId> tokens) const;
  bool BlockMatches(BlockId block, uint64_t hash, uint64_t parent_hash, uint64_t salt,
                    std::span<const TokenId> tokens) const;

  const KvMemoryOptions options_;
  const size_t num_blocks_;
  const size_t block_bytes_;
  struct AlignedDelete {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte[], AlignedDelete> pool_;  // [num_blocks, block_bytes]

  std::vector<BlockMeta> meta_;       // [num_blocks]
  std::vector<TokenId> block_tokens_;  // [num_blocks, block_tokens]: ids of registered blocks
  BlockList free_;
  BlockList lru_;  // unreferenced cached blocks, least recently used at head
  size_t num_used_ = 0;

  std::unordered_map<uint64_t, BlockId> cache_;  // prefix hash -> registered block
  std::unordered_map<SequenceId, Sequence> sequences_;
  SequenceId next_sequence_id_ = 1;

  // Swap: num_swap_slots slots of block_bytes. Slots [0, touched_swap_slots_) have been used
  // at least once; of those, free_swap_slots_ are free now.
  const size_t num_swap_slots_;
  std::unique_ptr<SwapSpace> swap_;  // null when swapping is disabled
  std::vector<uint32_t> free_swap_slots_;
  size_t touched_swap_slots_ = 0;
  size_t used_swap_slots_ = 0;

  size_t evicted_blocks_ = 0;
  uint64_t dropped_blocks_ = 0;
  uint64_t cache_removals_ = 0;  // entries removed from cache_ (eviction or rewrite), ever
  uint64_t prefix_lookups_ = 0;
  uint64_t prefix_hits_ = 0;
  uint64_t prefix_queried_tokens_ = 0;
  uint64_t prefix_hit_tokens_ = 0;
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_KV_MEMORY_H_
