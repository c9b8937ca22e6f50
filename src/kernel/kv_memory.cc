#include "kernel/kv_memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "util/checked_math.h"
#include "util/file.h"

namespace llmasos::kernel {
namespace {

constexpr size_t kPoolAlignment = 64;

// splitmix64's finaliser: a bijection whose output bits each depend on every input bit.
uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

std::string SeqName(SequenceId seq) { return "KV sequence " + std::to_string(seq); }

Status DroppedError(const char* op, SequenceId seq, size_t position) {
  return FailedPreconditionError(std::string(op) + ": position " + std::to_string(position) + " of " +
                                 SeqName(seq) + " is in a block dropped out of the attention window");
}

size_t CeilDiv(size_t a, size_t b) { return (a + b - 1) / b; }

}  // namespace

std::optional<size_t> KvBlockBytes(size_t num_layers, size_t kv_dim, size_t block_tokens,
                                   cpu::KvType k_type, cpu::KvType v_type) {
  // KvRowBytes(type, kv_dim), without its overflow: kv_dim / block elements * block bytes.
  auto row_bytes = [kv_dim](cpu::KvType type) {
    const cpu::TensorTypeTraits& t = cpu::Traits(cpu::KvTensorType(type));
    return CheckedMul(kv_dim / t.block_elems, t.block_bytes);
  };
  const std::optional<uint64_t> k_row = row_bytes(k_type), v_row = row_bytes(v_type);
  const std::optional<uint64_t> row = k_row && v_row ? CheckedAdd(*k_row, *v_row) : std::nullopt;
  std::optional<uint64_t> bytes = row ? CheckedMul(num_layers, *row) : std::nullopt;
  if (bytes) bytes = CheckedMul(*bytes, block_tokens);
  if (!bytes || *bytes > SIZE_MAX / 2) return std::nullopt;
  return static_cast<size_t>(*bytes);
}

bool SwapIsCheaper(const PreemptionCost& cost, double copy_bytes_per_s,
                   double prefill_tokens_per_s) {
  CHECK(copy_bytes_per_s > 0 && prefill_tokens_per_s > 0);
  const double swap_s = 2.0 * static_cast<double>(cost.swap_bytes) / copy_bytes_per_s;
  const double recompute_s = static_cast<double>(cost.recompute_tokens) / prefill_tokens_per_s;
  return swap_s < recompute_s;
}

// Swap slots of block_bytes each. Write and Read are whole-slot copies; a failure leaves the
// caller's state unchanged.
class KvMemory::SwapSpace {
 public:
  virtual ~SwapSpace() = default;
  virtual Status Write(uint32_t slot, const std::byte* src) = 0;
  virtual Status Read(uint32_t slot, std::byte* dst) = 0;
};

// Host memory: a slot is allocated on first write and kept for reuse.
class KvMemory::HostSwap final : public SwapSpace {
 public:
  explicit HostSwap(size_t slot_bytes) : slot_bytes_(slot_bytes) {}
  Status Write(uint32_t slot, const std::byte* src) override {
    if (slot >= slots_.size()) slots_.resize(size_t{slot} + 1);
    if (slots_[slot] == nullptr) {
      slots_[slot].reset(new (std::nothrow) std::byte[slot_bytes_]);
      if (slots_[slot] == nullptr) {
        return ResourceExhaustedError("cannot allocate " + std::to_string(slot_bytes_) +
                                      " bytes of host swap space");
      }
    }
    std::memcpy(slots_[slot].get(), src, slot_bytes_);
    return OkStatus();
  }
  Status Read(uint32_t slot, std::byte* dst) override {
    CHECK(slot < slots_.size() && slots_[slot] != nullptr) << "read of unwritten swap slot";
    std::memcpy(dst, slots_[slot].get(), slot_bytes_);
    return OkStatus();
  }

 private:
  const size_t slot_bytes_;
  std::vector<std::unique_ptr<std::byte[]>> slots_;  // [slots][slot_bytes]
};

// A file: slot i is the byte range [i * slot_bytes, (i + 1) * slot_bytes).
class KvMemory::FileSwap final : public SwapSpace {
 public:
  static StatusOr<std::unique_ptr<FileSwap>> Open(const std::string& path, size_t slot_bytes) {
    auto opened = OpenFile(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (!opened.ok()) return opened.status().Annotate("KV swap file");
    UniqueFd fd = std::move(opened).value();
    struct stat st;
    // Unlinked at once (a regular file only: a device stays), so it goes when we do.
    if (::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode)) ::unlink(path.c_str());
    return std::unique_ptr<FileSwap>(new FileSwap(path, std::move(fd), slot_bytes));
  }
  Status Write(uint32_t slot, const std::byte* src) override {
    const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(src), slot_bytes_);
    Status s = PwriteAll(fd_.get(), bytes, Offset(slot), path_);
    return s.ok() ? s : s.Annotate(Where(slot));
  }
  Status Read(uint32_t slot, std::byte* dst) override {
    const std::span<uint8_t> bytes(reinterpret_cast<uint8_t*>(dst), slot_bytes_);
    Status s = PreadExact(fd_.get(), bytes, Offset(slot), path_);
    return s.ok() ? s : s.Annotate(Where(slot));
  }

 private:
  FileSwap(std::string path, UniqueFd fd, size_t slot_bytes)
      : path_(std::move(path)), fd_(std::move(fd)), slot_bytes_(slot_bytes) {}
  uint64_t Offset(uint32_t slot) const { return uint64_t{slot} * slot_bytes_; }
  static std::string Where(uint32_t slot) { return "KV swap slot " + std::to_string(slot); }

  const std::string path_;
  const UniqueFd fd_;
  const size_t slot_bytes_;
};

void KvMemory::AlignedDelete::operator()(std::byte* p) const {
  ::operator delete[](p, std::align_val_t(kPoolAlignment));
}

StatusOr<std::unique_ptr<KvMemory>> KvMemory::Create(const KvMemoryOptions& options) {
  if (options.num_layers == 0) return InvalidArgumentError("KV memory: num_layers must be > 0");
  if (options.kv_dim == 0) return InvalidArgumentError("KV memory: kv_dim must be > 0");
  if (options.block_tokens == 0) return InvalidArgumentError("KV memory: block_tokens must be > 0");
  for (cpu::KvType t : {options.k_type, options.v_type}) {
    if (t == cpu::KvType::kQ8_0 && options.kv_dim % cpu::BlockQ8_0::kBlockElems != 0) {
      return InvalidArgumentError("KV memory: a q8_0 cache needs kv_dim a multiple of 32, not " +
                                  std::to_string(options.kv_dim));
    }
  }
  const std::optional<size_t> bytes = KvBlockBytes(options.num_layers, options.kv_dim,
                                                   options.block_tokens, options.k_type,
                                                   options.v_type);
  if (!bytes) {
    return InvalidArgumentError("KV memory: a block of " + std::to_string(options.block_tokens) +
                                " tokens x " + std::to_string(options.num_layers) +
                                " layers x kv_dim " + std::to_string(options.kv_dim) +
                                " overflows");
  }
  const size_t block_bytes = *bytes;
  if (options.budget_bytes < block_bytes) {
    return InvalidArgumentError(
        "KV memory: budget of " + std::to_string(options.budget_bytes) +
        " bytes is smaller than one block (" + std::to_string(block_bytes) + " bytes: " +
        std::to_string(options.block_tokens) + " tokens x " + std::to_string(options.num_layers) +
        " layers x 2 x kv_dim " + std::to_string(options.kv_dim) + ")");
  }
  const size_t max_blocks = kNil - 1;  // block ids and list links are uint32
  const size_t num_blocks = std::min(options.budget_bytes / block_bytes, max_blocks);
  const size_t num_swap_slots = std::min(options.swap_budget_bytes / block_bytes, max_blocks);
  std::unique_ptr<SwapSpace> swap;
  if (num_swap_slots > 0 && !options.swap_file_path.empty()) {
    ASSIGN_OR_RETURN(swap, FileSwap::Open(options.swap_file_path, block_bytes));
  } else if (num_swap_slots > 0) {
    swap = std::make_unique<HostSwap>(block_bytes);
  }
  // Uninitialised: pages become resident as blocks are first written.
  auto* pool = static_cast<std::byte*>(::operator new[](
      num_blocks * block_bytes, std::align_val_t(kPoolAlignment), std::nothrow));
  if (pool == nullptr) {
    return ResourceExhaustedError("KV memory: cannot allocate " +
                                  std::to_string(num_blocks * block_bytes) + " bytes for " +
                                  std::to_string(num_blocks) + " blocks");
  }
  return std::unique_ptr<KvMemory>(
      new KvMemory(options, num_blocks, block_bytes, num_swap_slots, pool, std::move(swap)));
}

KvMemory::KvMemory(const KvMemoryOptions& options, size_t num_blocks, size_t block_bytes,
                   size_t num_swap_slots, std::byte* pool, std::unique_ptr<SwapSpace> swap)
    : options_(options),
      num_blocks_(num_blocks),
      block_bytes_(block_bytes),
      pool_(pool),
      meta_(num_blocks),
      block_tokens_(num_blocks * options.block_tokens),
      num_swap_slots_(num_swap_slots),
      swap_(std::move(swap)) {
  for (size_t b = 0; b < num_blocks_; ++b) PushBack(free_, static_cast<BlockId>(b));
}

KvMemory::~KvMemory() = default;

// ---- Lists and reference counts -------------------------------------------------------------

void KvMemory::PushBack(BlockList& list, BlockId block) {
  BlockMeta& m = meta_[block];
  CHECK(m.prev == kNil && m.next == kNil && list.head != block)
      << "block " << block << " is already on a list";
  m.prev = list.tail;
  if (list.tail != kNil) {
    meta_[list.tail].next = block;
  } else {
    list.head = block;
  }
  list.tail = block;
  ++list.size;
}

void KvMemory::Remove(BlockList& list, BlockId block) {
  BlockMeta& m = meta_[block];
  if (m.prev != kNil) {
    meta_[m.prev].next = m.next;
  } else {
    DCHECK(list.head == block);
    list.head = m.next;
  }
  if (m.next != kNil) {
    meta_[m.next].prev = m.prev;
  } else {
    DCHECK(list.tail == block);
    list.tail = m.prev;
  }
  m.prev = m.next = kNil;
  CHECK_GT(list.size, 0u);
  --list.size;
}

BlockId KvMemory::TakeBlock() {
  BlockId block;
  if (free_.size > 0) {
    block = free_.head;
    Remove(free_, block);
  } else {
    CHECK_GT(lru_.size, 0u) << "TakeBlock with no block available";
    block = lru_.head;
    Remove(lru_, block);
    Unregister(block);
    ++evicted_blocks_;
  }
  BlockMeta& m = meta_[block];
  m.state = BlockState::kUsed;
  m.ref_count = 1;
  m.filled = 0;
  ++num_used_;
  return block;
}

void KvMemory::Ref(BlockId block) {
  BlockMeta& m = meta_[block];
  CHECK(m.state != BlockState::kFree) << "Ref of free block " << block;
  if (m.state == BlockState::kCached) {
    Remove(lru_, block);
    m.state = BlockState::kUsed;
    ++num_used_;
  }
  ++m.ref_count;
}

void KvMemory::Unref(BlockId block) {
  BlockMeta& m = meta_[block];
  CHECK(m.state == BlockState::kUsed && m.ref_count > 0) << "block " << block << " freed twice";
  if (--m.ref_count > 0) return;
  --num_used_;
  if (m.registered) {
    m.state = BlockState::kCached;
    PushBack(lru_, block);  // most recently used at the tail
  } else {
    m.state = BlockState::kFree;
    m.filled = 0;
    PushBack(free_, block);
  }
}

void KvMemory::Unregister(BlockId block) {
  BlockMeta& m = meta_[block];
  if (!m.registered) return;
  auto it = cache_.find(m.hash);
  CHECK(it != cache_.end() && it->second == block) << "cache map lost block " << block;
  cache_.erase(it);
  m.registered = false;
  ++cache_removals_;
}

void KvMemory::MakeExclusive(Sequence& s, size_t block_idx) {
  const BlockId old_block = s.blocks[block_idx];
  if (meta_[old_block].ref_count == 1) return;
  const BlockId new_block = TakeBlock();
  std::memcpy(BlockData(new_block), BlockData(old_block), block_bytes_);
  meta_[new_block].filled = meta_[old_block].filled;
  Unref(old_block);
  s.blocks[block_idx] = new_block;
}

// ---- Sequences --------------------------------------------------------------------------------

StatusOr<KvMemory::Sequence*> KvMemory::Find(SequenceId seq, const char* op) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return NotFoundError(std::string(op) + ": unknown " + SeqName(seq));
  return &it->second;
}

StatusOr<const KvMemory::Sequence*> KvMemory::Find(SequenceId seq, const char* op) const {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return NotFoundError(std::string(op) + ": unknown " + SeqName(seq));
  return &it->second;
}

#define RETURN_IF_SWAPPED(s, seq, op)                                                    \
  do {                                                                                   \
    if ((s)->swapped) {                                                                  \
      return FailedPreconditionError(std::string(op) + ": " + SeqName(seq) +            \
                                     " is swapped out; SwapIn first");                  \
    }                                                                                    \
  } while (0)

SequenceId KvMemory::CreateSequence(uint64_t tenant_salt) {
  const SequenceId id = next_sequence_id_++;
  sequences_[id].salt = tenant_salt;
  return id;
}

Status KvMemory::Append(SequenceId seq, size_t num_tokens) {
  ASSIGN_OR_RETURN(Sequence * s, Find(seq, "Append"));
  RETURN_IF_SWAPPED(s, seq, "Append");
  if (num_tokens == 0) return OkStatus();
  const size_t bt = options_.block_tokens;
  const std::optional<uint64_t> new_length = CheckedAdd(s->length, num_tokens);
  if (!new_length || *new_length > size_t{kNil} * bt) {
    return OutOfRangeError("Append: " + SeqName(seq) + " of " + std::to_string(s->length) +
                           " tokens cannot grow by " + std::to_string(num_tokens));
  }
  const size_t offset = s->length % bt;
  const bool copy_last = offset != 0 && meta_[s->blocks.back()].ref_count > 1;
  const size_t new_blocks = CeilDiv(*new_length, bt) - s->blocks.size();
  const size_t needed = new_blocks + (copy_last ? 1 : 0);
  if (needed > available_blocks()) {
    return ResourceExhaustedError("Append: " + SeqName(seq) + " needs " + std::to_string(needed) +
                                  " more KV blocks for " + std::to_string(num_tokens) +
                                  " tokens; " + std::to_string(available_blocks()) + " of " +
                                  std::to_string(num_blocks_) + " available");
  }
  if (copy_last) MakeExclusive(*s, s->blocks.size() - 1);
  size_t remaining = num_tokens;
  if (offset != 0) {
    const size_t rows = std::min(bt - offset, remaining);
    meta_[s->blocks.back()].filled += rows;
    remaining -= rows;
  }
  for (size_t i = 0; i < new_blocks; ++i) {
    const BlockId block = TakeBlock();
    const size_t rows = std::min(bt, remaining);
    meta_[block].filled = rows;
    remaining -= rows;
    s->blocks.push_back(block);
  }
  DCHECK_EQ(remaining, 0u);
  s->length = *new_length;
  return OkStatus();
}

StatusOr<size_t> KvMemory::BlocksToAppend(SequenceId seq, size_t num_tokens) const {
  ASSIGN_OR_RETURN(const Sequence* s, Find(seq, "BlocksToAppend"));
  RETURN_IF_SWAPPED(s, seq, "BlocksToAppend");
  if (num_tokens == 0) return size_t{0};
  const size_t bt = options_.block_tokens;
  const bool copy_last = s->length % bt != 0 && meta_[s->blocks.back()].ref_count > 1;
  return BlocksForTokens(s->length + num_tokens) - s->blocks.size() + (copy_last ? 1 : 0);
}

StatusOr<SequenceId> KvMemory::Fork(SequenceId seq) {
  ASSIGN_OR_RETURN(Sequence * s, Find(seq, "Fork"));
  RETURN_IF_SWAPPED(s, seq, "Fork");
  for (size_t i = s->num_dropped; i < s->blocks.size(); ++i) Ref(s->blocks[i]);
  const SequenceId id = next_sequence_id_++;
  Sequence copy = *s;  // `s` may dangle once the map grows
  sequences_.emplace(id, std::move(copy));
  return id;
}

Status KvMemory::Free(SequenceId seq) {
  ASSIGN_OR_RETURN(Sequence * s, Find(seq, "Free"));
  for (size_t i = s->num_dropped; i < s->blocks.size(); ++i) Unref(s->blocks[i]);
  for (uint32_t slot : s->swap_slots) free_swap_slots_.push_back(slot);
  used_swap_slots_ -= s->swap_slots.size();
  sequences_.erase(seq);
  return OkStatus();
}

StatusOr<size_t> KvMemory::DropBefore(SequenceId seq, size_t position) {
  ASSIGN_OR_RETURN(Sequence * s, Find(seq, "DropBefore"));
  RETURN_IF_SWAPPED(s, seq, "DropBefore");
  // Only whole blocks before `position` go; a partial last block never does (its end lies
  // beyond the length).
  const size_t num_drop = std::min(position, s->length) / options_.block_tokens;
  size_t newly = 0;
  for (; s->num_dropped < num_drop; ++s->num_dropped, ++newly) {
    Unref(s->blocks[s->num_dropped]);
    s->blocks[s->num_dropped] = kDroppedBlock;
  }
  dropped_blocks_ += newly;
  return newly;
}

StatusOr<size_t> KvMemory::NumDropped(SequenceId seq) const {
  ASSIGN_OR_RETURN(const Sequence* s, Find(seq, "NumDropped"));
  return s->num_dropped;
}

StatusOr<size_t> KvMemory::Length(SequenceId seq) const {
  ASSIGN_OR_RETURN(const Sequence* s, Find(seq, "Length"));
  return s->length;
}

StatusOr<std::span<const BlockId>> KvMemory::BlockTable(SequenceId seq) const {
  ASSIGN_OR_RETURN(const Sequence* s, Find(seq, "BlockTable"));
  RETURN_IF_SWAPPED(s, seq, "BlockTable");
  return std::span<const BlockId>(s->blocks);
}

StatusOr<KvSlot> KvMemory::Slot(SequenceId seq, size_t position) const {
  ASSIGN_OR_RETURN(const Sequence* s, Find(seq, "Slot"));
  RETURN_IF_SWAPPED(s, seq, "Slot");
  if (position >= s->length) {
    return OutOfRangeError("Slot: position " + std::to_string(position) + " is beyond the " +
                           std::to_string(s->length) + " tokens of " + SeqName(seq));
  }
  const size_t bt = options_.block_tokens;
  if (position / bt < s->num_dropped) return DroppedError("Slot", seq, position);
  return KvSlot{s->blocks[position / bt], position % bt};
}

StatusOr<KvSlot> KvMemory::PrepareWrite(SequenceId seq, size_t position) {
  ASSIGN_OR_RETURN(Sequence * s, Find(seq, "PrepareWrite"));
  RETURN_IF_SWAPPED(s, seq, "PrepareWrite");
  if (position >= s->length) {
    return OutOfRangeError("PrepareWrite: position " + std::to_string(position) +
                           " is beyond the " + std::to_string(s->length) + " tokens of " +
                           SeqName(seq) + "; Append first");
  }
  const size_t bt = options_.block_tokens;
  const size_t block_idx = position / bt;
  if (block_idx < s->num_dropped) return DroppedError("PrepareWrite", seq, position);
  if (meta_[s->blocks[block_idx]].ref_count > 1 && available_blocks() == 0) {
    return ResourceExhaustedError("PrepareWrite: no KV block left to copy shared block " +
                                  std::to_string(s->blocks[block_idx]) + " of " + SeqName(seq));
  }
  MakeExclusive(*s, block_idx);
  Unregister(s->blocks[block_idx]);
  if (s->hashes.size() > block_idx) s->hashes.resize(block_idx);
  return KvSlot{s->blocks[block_idx], position % bt};
}

// ---- Storage ----------------------------------------------------------------------------------

std::byte* KvMemory::LayerData(BlockId block, size_t layer, size_t kv) {
  DCHECK_LT(size_t{block}, num_blocks_);
  DCHECK_LT(layer, options_.num_layers);
  const size_t k_plane = options_.block_tokens * cpu::KvRowBytes(options_.k_type, options_.kv_dim);
  const size_t v_plane = options_.block_tokens * cpu::KvRowBytes(options_.v_type, options_.kv_dim);
  return BlockData(block) + layer * (k_plane + v_plane) + (kv == 0 ? 0 : k_plane);
}

float* KvMemory::K(BlockId block, size_t layer) {
  DCHECK(options_.k_type == cpu::KvType::kF32);
  return reinterpret_cast<float*>(LayerData(block, layer, 0));
}
float* KvMemory::V(BlockId block, size_t layer) {
  DCHECK(options_.v_type == cpu::KvType::kF32);
  return reinterpret_cast<float*>(LayerData(block, layer, 1));
}
uint16_t* KvMemory::KHalf(BlockId block, size_t layer) {
  DCHECK(options_.k_type == cpu::KvType::kF16);
  return reinterpret_cast<uint16_t*>(LayerData(block, layer, 0));
}
uint16_t* KvMemory::VHalf(BlockId block, size_t layer) {
  DCHECK(options_.v_type == cpu::KvType::kF16);
  return reinterpret_cast<uint16_t*>(LayerData(block, layer, 1));
}

// ---- Prefix cache -----------------------------------------------------------------------------

uint64_t KvMemory::HashBlock(uint64_t parent_hash, uint64_t salt,
                             std::span<const TokenId> tokens) const {
  uint64_t h = Mix64(parent_hash ^ 0x6a09e667f3bcc909ull);
  h = Mix64(h ^ Mix64(salt + 0x9e3779b97f4a7c15ull));
  for (TokenId t : tokens) h = Mix64(h ^ (static_cast<uint32_t>(t) + 0x9e3779b97f4a7c15ull));
  return h;
}

bool KvMemory::BlockMatches(BlockId block, uint64_t hash, uint64_t parent_hash, uint64_t salt,
                            std::span<const TokenId> tokens) const {
  const BlockMeta& m = meta_[block];
  if (!m.registered || m.hash != hash || m.parent_hash != parent_hash || m.salt != salt) {
    return false;
  }
  const TokenId* stored = &block_tokens_[size_t{block} * options_.block_tokens];
  return std::equal(tokens.begin(), tokens.end(), stored);
}

template <typename OnBlock>
size_t KvMemory::WalkCachedPrefix(uint64_t salt, std::span<const TokenId> tokens, size_t max_blocks,
                                  OnBlock on_block) const {
  const size_t bt = options_.block_tokens;
  const size_t num_full = std::min(tokens.size() / bt, max_blocks);
  uint64_t parent = 0;
  size_t i = 0;
  for (; i < num_full; ++i) {
    const std::span<const TokenId> block_ids = tokens.subspan(i * bt, bt);
    const uint64_t h = HashBlock(parent, salt, block_ids);
    auto it = cache_.find(h);
    if (it == cache_.end() || !BlockMatches(it->second, h, parent, salt, block_ids)) break;
    on_block(it->second, h);
    parent = h;
  }
  return i;
}

size_t KvMemory::CachedPrefixTokens(uint64_t tenant_salt, std::span<const TokenId> tokens) const {
  return WalkCachedPrefix(tenant_salt, tokens, SIZE_MAX, [](BlockId, uint64_t) {}) * options_.block_tokens;
}

StatusOr<size_t> KvMemory::MatchPrefix(SequenceId seq, std::span<const TokenId> tokens,
                                       size_t max_tokens, bool count_lookup) {
  ASSIGN_OR_RETURN(Sequence * s, Find(seq, "MatchPrefix"));
  RETURN_IF_SWAPPED(s, seq, "MatchPrefix");
  if (s->length != 0) {
    return FailedPreconditionError("MatchPrefix: " + SeqName(seq) + " already holds " +
                                   std::to_string(s->length) + " tokens; it needs a new sequence");
  }
  const size_t bt = options_.block_tokens;
  WalkCachedPrefix(s->salt, tokens, max_tokens / bt, [&](BlockId block, uint64_t h) {
    Ref(block);
    s->blocks.push_back(block);
    s->hashes.push_back(h);
  });
  s->length = s->blocks.size() * bt;
  if (count_lookup) {
    ++prefix_lookups_;
    prefix_queried_tokens_ += tokens.size() / bt * bt;
    if (s->length > 0) ++prefix_hits_;
    prefix_hit_tokens_ += s->length;
  }
  return s->length;
}

StatusOr<size_t> KvMemory::CommitTokens(SequenceId seq, std::span<const TokenId> tokens) {
  ASSIGN_OR_RETURN(Sequence * s, Find(seq, "CommitTokens"));
  RETURN_IF_SWAPPED(s, seq, "CommitTokens");
  if (tokens.size() > s->length) {
    return OutOfRangeError("CommitTokens: " + std::to_string(tokens.size()) +
                           " token ids for " + SeqName(seq) + " which holds " +
                           std::to_string(s->length));
  }
  const size_t bt = options_.block_tokens;
  const size_t num_full = tokens.size() / bt;
  size_t num_registered = 0;
  // Registers block i under hash h unless the cache already holds that prefix.
  auto try_register = [&](size_t i, uint64_t h) {
    if (i < s->num_dropped) return;  // released: its prefix lives on only if still cached
    const BlockId block = s->blocks[i];
    BlockMeta& m = meta_[block];
    if (m.registered || cache_.count(h) != 0) return;
    DCHECK_EQ(size_t{m.filled}, bt);
    m.registered = true;
    m.hash = h;
    m.parent_hash = i == 0 ? 0 : s->hashes[i - 1];
    m.salt = s->salt;
    const std::span<const TokenId> block_ids = tokens.subspan(i * bt, bt);
    std::copy(block_ids.begin(), block_ids.end(), &block_tokens_[size_t{block} * bt]);
    cache_.emplace(h, block);
    ++num_registered;
  };
  // Blocks hashed at an earlier commit were registered then, or skipped because another block
  // held their prefix. If entries have left the cache since, that other block may be gone:
  // register ours in its place (checking the ids still hash the same).
  if (s->cache_removals_seen != cache_removals_) {
    for (size_t i = 0; i < std::min(s->hashes.size(), num_full); ++i) {
      if (cache_.count(s->hashes[i]) != 0) continue;
      const uint64_t parent = i == 0 ? 0 : s->hashes[i - 1];
      if (HashBlock(parent, s->salt, tokens.subspan(i * bt, bt)) != s->hashes[i]) break;
      try_register(i, s->hashes[i]);
    }
    // Blocks hashed before but beyond `tokens` were not checked: look again next time.
    if (num_full >= s->hashes.size()) s->cache_removals_seen = cache_removals_;
  }
  for (size_t i = s->hashes.size(); i < num_full; ++i) {
    const uint64_t parent = i == 0 ? 0 : s->hashes[i - 1];
    s->hashes.push_back(HashBlock(parent, s->salt, tokens.subspan(i * bt, bt)));
    try_register(i, s->hashes[i]);
  }
  return num_registered;
}

size_t KvMemory::EvictCached(size_t max_blocks) {
  size_t evicted = 0;
  while (evicted < max_blocks && lru_.size > 0) {
    const BlockId block = lru_.head;
    Remove(lru_, block);
    Unregister(block);
    meta_[block].state = BlockState::kFree;
    meta_[block].filled = 0;
    PushBack(free_, block);
    ++evicted;
  }
  evicted_blocks_ += evicted;
  return evicted;
}

// ---- Swap -------------------------------------------------------------------------------------

Status KvMemory::SwapOut(SequenceId seq) {
  ASSIGN_OR_RETURN(Sequence * s, Find(seq, "SwapOut"));
  if (swap_ == nullptr) {
    return FailedPreconditionError("SwapOut: swap space is disabled (swap_budget_bytes < " +
                                   std::to_string(block_bytes_) + ", one block)");
  }
  if (s->swapped) return FailedPreconditionError("SwapOut: " + SeqName(seq) + " is already out");
  const size_t needed = s->blocks.size() - s->num_dropped;
  if (needed > num_swap_slots_ - used_swap_slots_) {
    return ResourceExhaustedError("SwapOut: " + SeqName(seq) + " needs " +
                                  std::to_string(needed) + " swap slots; " +
                                  std::to_string(num_swap_slots_ - used_swap_slots_) + " of " +
                                  std::to_string(num_swap_slots_) + " free");
  }
  std::vector<uint32_t> slots;
  slots.reserve(needed);
  for (size_t i = 0; i < needed; ++i) {
    if (!free_swap_slots_.empty()) {
      slots.push_back(free_swap_slots_.back());
      free_swap_slots_.pop_back();
    } else {
      slots.push_back(static_cast<uint32_t>(touched_swap_slots_++));
    }
  }
  // Copy everything out before releasing anything, so a failed write changes nothing.
  for (size_t i = 0; i < needed; ++i) {
    const Status st = swap_->Write(slots[i], BlockData(s->blocks[s->num_dropped + i]));
    if (!st.ok()) {
      free_swap_slots_.insert(free_swap_slots_.end(), slots.begin(), slots.end());
      return st.Annotate("SwapOut: " + SeqName(seq));
    }
  }
  for (size_t i = s->num_dropped; i < s->blocks.size(); ++i) Unref(s->blocks[i]);
  used_swap_slots_ += needed;
  s->blocks.clear();
  s->swap_slots = std::move(slots);
  s->swapped = true;
  return OkStatus();
}

Status KvMemory::SwapIn(SequenceId seq) {
  ASSIGN_OR_RETURN(Sequence * s, Find(seq, "SwapIn"));
  if (!s->swapped) return FailedPreconditionError("SwapIn: " + SeqName(seq) + " is not swapped out");
  const size_t needed = s->swap_slots.size();
  if (needed > available_blocks()) {
    return ResourceExhaustedError("SwapIn: " + SeqName(seq) + " needs " + std::to_string(needed) +
                                  " KV blocks; " + std::to_string(available_blocks()) + " of " +
                                  std::to_string(num_blocks_) + " available");
  }
  const size_t bt = options_.block_tokens;
  std::vector<BlockId> blocks(s->num_dropped, kDroppedBlock);
  blocks.reserve(s->num_dropped + needed);
  for (size_t i = 0; i < needed; ++i) {
    const BlockId block = TakeBlock();
    blocks.push_back(block);
    meta_[block].filled = std::min(bt, s->length - (s->num_dropped + i) * bt);
    const Status st = swap_->Read(s->swap_slots[i], BlockData(block));
    if (!st.ok()) {
      for (size_t j = s->num_dropped; j < blocks.size(); ++j) Unref(blocks[j]);
      return st.Annotate("SwapIn: " + SeqName(seq));
    }
  }
  free_swap_slots_.insert(free_swap_slots_.end(), s->swap_slots.begin(), s->swap_slots.end());
  used_swap_slots_ -= needed;
  s->swap_slots.clear();
  s->blocks = std::move(blocks);
  s->swapped = false;
  // The fresh blocks are not registered. Keep the hashes of the leading blocks whose prefix is
  // still cached; from the first evicted one on, let CommitTokens register this copy again.
  size_t still_cached = 0;
  while (still_cached < s->hashes.size() && cache_.count(s->hashes[still_cached]) != 0) {
    ++still_cached;
  }
  s->hashes.resize(still_cached);
  return OkStatus();
}

StatusOr<bool> KvMemory::IsSwappedOut(SequenceId seq) const {
  ASSIGN_OR_RETURN(const Sequence* s, Find(seq, "IsSwappedOut"));
  return s->swapped;
}

StatusOr<PreemptionCost> KvMemory::EstimatePreemption(SequenceId seq) const {
  ASSIGN_OR_RETURN(const Sequence* s, Find(seq, "EstimatePreemption"));
  RETURN_IF_SWAPPED(s, seq, "EstimatePreemption");
  PreemptionCost cost;
  cost.num_blocks = s->blocks.size() - s->num_dropped;
  for (size_t i = s->num_dropped; i < s->blocks.size(); ++i) {
    cost.freed_blocks += meta_[s->blocks[i]].ref_count == 1 ? 1 : 0;
  }
  cost.swap_bytes = cost.num_blocks * block_bytes_;
  cost.recompute_tokens = s->length;
  return cost;
}

// ---- Introspection ----------------------------------------------------------------------------

uint32_t KvMemory::RefCount(BlockId block) const {
  CHECK_LT(size_t{block}, num_blocks_);
  return meta_[block].ref_count;
}

BlockState KvMemory::StateOf(BlockId block) const {
  CHECK_LT(size_t{block}, num_blocks_);
  return meta_[block].state;
}

KvStats KvMemory::Stats() const {
  KvStats st;
  st.block_tokens = options_.block_tokens;
  st.block_bytes = block_bytes_;
  st.k_type = options_.k_type;
  st.v_type = options_.v_type;
  st.total_blocks = num_blocks_;
  st.free_blocks = free_.size;
  st.used_blocks = num_used_;
  st.cached_blocks = lru_.size;
  st.cache_entries = cache_.size();
  st.swapped_blocks = used_swap_slots_;
  st.swap_capacity_blocks = num_swap_slots_;
  st.num_sequences = sequences_.size();
  st.evicted_blocks = evicted_blocks_;
  st.dropped_blocks = dropped_blocks_;
  st.prefix_lookups = prefix_lookups_;
  st.prefix_hits = prefix_hits_;
  st.prefix_queried_tokens = prefix_queried_tokens_;
  st.prefix_hit_tokens = prefix_hit_tokens_;
  st.prefix_hit_rate = prefix_queried_tokens_ == 0
                           ? 0.0
                           : static_cast<double>(prefix_hit_tokens_) / prefix_queried_tokens_;
  for (const BlockMeta& m : meta_) {
    if (m.state == BlockState::kUsed) st.stored_tokens += m.filled;
  }
  st.utilisation = num_used_ == 0 ? 0.0
                                  : static_cast<double>(st.stored_tokens) /
                                        static_cast<double>(num_used_ * options_.block_tokens);
  return st;
}

Status KvMemory::CheckInvariants() const {
  auto fail = [](const std::string& what) { return InternalError("KV invariant: " + what); };
  const size_t bt = options_.block_tokens;

  // Lists: well linked, acyclic, every member in the list's state.
  auto walk = [&](const BlockList& list, BlockState state, const char* name) -> Status {
    size_t count = 0;
    uint32_t prev = kNil;
    for (uint32_t b = list.head; b != kNil; b = meta_[b].next) {
      if (++count > num_blocks_) return fail(std::string(name) + " list has a cycle");
      if (meta_[b].prev != prev) return fail(std::string(name) + " list: bad prev link");
      if (meta_[b].state != state) {
        return fail("block " + std::to_string(b) + " on the " + name + " list in another state");
      }
      prev = b;
    }
    if (prev != list.tail) return fail(std::string(name) + " list: bad tail");
    if (count != list.size) return fail(std::string(name) + " list: size mismatch");
    return OkStatus();
  };
  RETURN_IF_ERROR(walk(free_, BlockState::kFree, "free"));
  RETURN_IF_ERROR(walk(lru_, BlockState::kCached, "LRU"));

  // Reference counts equal block-table references.
  std::vector<uint32_t> refs(num_blocks_, 0);
  size_t swap_in_use = 0;
  for (const auto& [id, s] : sequences_) {
    const size_t expected_blocks = CeilDiv(s.length, bt);
    if (s.num_dropped > s.length / bt) return fail(SeqName(id) + ": a dropped block is not full");
    if (s.swapped) {
      if (!s.blocks.empty()) return fail(SeqName(id) + " is swapped out but holds blocks");
      if (s.swap_slots.size() != expected_blocks - s.num_dropped) {
        return fail(SeqName(id) + ": swap slot count");
      }
      swap_in_use += s.swap_slots.size();
      continue;
    }
    if (!s.swap_slots.empty()) return fail(SeqName(id) + " is resident but holds swap slots");
    if (s.blocks.size() != expected_blocks) return fail(SeqName(id) + ": block count");
    if (s.hashes.size() > s.length / bt) return fail(SeqName(id) + ": hash of a partial block");
    for (size_t i = 0; i < s.blocks.size(); ++i) {
      const BlockId b = s.blocks[i];
      if ((b == kDroppedBlock) != (i < s.num_dropped)) {
        return fail(SeqName(id) + ": table entry " + std::to_string(i) + " dropped out of place");
      }
      if (i < s.num_dropped) continue;
      if (b >= num_blocks_) return fail(SeqName(id) + ": block id out of range");
      ++refs[b];
      const size_t rows = std::min(bt, s.length - i * bt);
      if (meta_[b].filled != rows) {
        return fail(SeqName(id) + ": block " + std::to_string(b) + " fill " +
                    std::to_string(meta_[b].filled) + " != " + std::to_string(rows));
      }
    }
  }
  if (swap_in_use != used_swap_slots_) return fail("swap slots in use miscounted");
  if (free_swap_slots_.size() + used_swap_slots_ != touched_swap_slots_) {
    return fail("swap slots leaked");
  }
  size_t used = 0, registered = 0;
  for (size_t b = 0; b < num_blocks_; ++b) {
    const BlockMeta& m = meta_[b];
    if (m.ref_count != refs[b]) {
      return fail("block " + std::to_string(b) + " ref_count " + std::to_string(m.ref_count) +
                  " but " + std::to_string(refs[b]) + " table references");
    }
    if ((m.state == BlockState::kUsed) != (m.ref_count > 0)) {
      return fail("block " + std::to_string(b) + " state disagrees with its ref_count");
    }
    if (m.state == BlockState::kCached && !m.registered) {
      return fail("cached block " + std::to_string(b) + " is not registered");
    }
    if (m.state == BlockState::kFree && m.registered) {
      return fail("free block " + std::to_string(b) + " is still registered");
    }
    used += m.state == BlockState::kUsed ? 1 : 0;
    if (m.registered) {
      ++registered;
      if (m.filled != bt) return fail("registered block " + std::to_string(b) + " is not full");
      auto it = cache_.find(m.hash);
      if (it == cache_.end() || it->second != b) {
        return fail("registered block " + std::to_string(b) + " missing from the cache map");
      }
    }
  }
  if (used != num_used_) return fail("used block count");
  if (registered != cache_.size()) return fail("cache map holds unregistered blocks");
  if (free_.size + lru_.size + num_used_ != num_blocks_) return fail("blocks leaked");
  return OkStatus();
}

}  // namespace llmasos::kernel
