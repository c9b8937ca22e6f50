#include "kernel/kv_memory_model.h"

#include <algorithm>

namespace llmasos::kernel {

KvMemoryModel::KvMemoryModel(KvMemory* kv, bool share_across_tenants, size_t window_tokens)
    : kv_(kv), share_across_tenants_(share_across_tenants), window_tokens_(window_tokens) {
  CHECK(kv_ != nullptr);
}

uint64_t KvMemoryModel::SaltOf(const Process& process) const {
  // FNV-1a: stable across runs, so cache behaviour is reproducible.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](std::string_view bytes) {
    for (unsigned char c : bytes) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  if (!share_across_tenants_) mix(process.tenant());
  if (process.adapter() == nullptr) return share_across_tenants_ ? 0 : h;
  mix(std::string_view("\0lora\0", 6));
  mix(process.adapter()->cache_key);
  return h;
}

StatusOr<SequenceId> KvMemoryModel::SequenceOf(ProcessId id) const {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return NotFoundError("process " + std::to_string(id) + " holds no KV");
  return it->second;
}

KvMemoryModel::Holding KvMemoryModel::HoldingOf(ProcessId id) const {
  Holding h;
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return h;
  const size_t dropped = *kv_->NumDropped(it->second);
  if (*kv_->IsSwappedOut(it->second)) {
    h.swapped_blocks = BlocksForTokens(*kv_->Length(it->second)) - dropped;
  } else {
    h.resident_blocks = kv_->BlockTable(it->second)->size() - dropped;
  }
  return h;
}

Status KvMemoryModel::DropOutOfWindow(SequenceId seq, size_t next_position) {
  if (window_tokens_ == 0 || next_position + 1 <= window_tokens_) return OkStatus();
  return kv_->DropBefore(seq, next_position + 1 - window_tokens_).status();
}

Status KvMemoryModel::ReleaseOutOfWindow(const Process& process, size_t next_position) {
  auto it = sequences_.find(process.id());
  if (it == sequences_.end()) return OkStatus();
  return DropOutOfWindow(it->second, next_position);
}

size_t KvMemoryModel::BlocksForTokens(size_t num_tokens) const {
  return (num_tokens + kv_->block_tokens() - 1) / kv_->block_tokens();
}

size_t KvMemoryModel::PeakBlocks(size_t num_tokens, size_t chunk_tokens) const {
  const size_t all = BlocksForTokens(num_tokens);
  if (window_tokens_ == 0 || num_tokens == 0) return all;
  // Between steps a process holds the window - 1 positions its next token reads; a step adds
  // at most one chunk. Blocks a run of n positions can touch: CeilDiv(n - 1, bt) + 1.
  const size_t bt = kv_->block_tokens();
  const size_t span = window_tokens_ - 1 + std::max<size_t>(1, std::min(chunk_tokens, num_tokens));
  return std::min(all, (span - 1 + bt - 1) / bt + 1);
}

size_t KvMemoryModel::BlocksToGrow(const Process& process, size_t num_tokens) const {
  auto it = sequences_.find(process.id());
  // No sequence yet: an upper bound (prefix-cache hits only lower it, and a hit block taken
  // from the evictable cache lowers the need and the supply alike).
  if (it == sequences_.end()) return BlocksForTokens(num_tokens);
  const SequenceId seq = it->second;
  const size_t length = *kv_->Length(seq);
  const size_t have_blocks = BlocksForTokens(length);
  const size_t want_blocks = std::max(BlocksForTokens(num_tokens), have_blocks);
  // Every undropped block comes back in.
  if (*kv_->IsSwappedOut(seq)) return want_blocks - *kv_->NumDropped(seq);
  size_t need = want_blocks - have_blocks;
  if (num_tokens > length && length % kv_->block_tokens() != 0) {
    // Appending into a shared partial last block copies it first.
    auto table = kv_->BlockTable(seq);
    if (table.ok() && !table->empty() && kv_->RefCount(table->back()) > 1) ++need;
  }
  return need;
}

size_t KvMemoryModel::NumBlocksHeld(const Process& process) const {
  auto it = sequences_.find(process.id());
  if (it == sequences_.end() || *kv_->IsSwappedOut(it->second)) return 0;
  return kv_->EstimatePreemption(it->second)->freed_blocks;
}

StatusOr<size_t> KvMemoryModel::Grow(const Process& process, size_t num_tokens) {
  size_t num_cached = 0;
  auto it = sequences_.find(process.id());
  if (it == sequences_.end()) {
    const SequenceId seq = kv_->CreateSequence(SaltOf(process));
    it = sequences_.emplace(process.id(), seq).first;
    // All tokens but the last: at least one must be computed to get logits. An embedding
    // pools every token's hidden state, so it reuses nothing.
    if (process.kind() != ProcessKind::kEmbed) {
      ASSIGN_OR_RETURN(num_cached, kv_->MatchPrefix(seq, process.tokens().first(process.num_tokens() - 1)));
      // The next token computed is the first uncached one: what lies before its window goes.
      RETURN_IF_ERROR(DropOutOfWindow(seq, num_cached));
    }
  }
  const SequenceId seq = it->second;
  ASSIGN_OR_RETURN(const bool swapped, kv_->IsSwappedOut(seq));
  if (swapped) RETURN_IF_ERROR(kv_->SwapIn(seq));
  ASSIGN_OR_RETURN(const size_t length, kv_->Length(seq));
  if (num_tokens > length) RETURN_IF_ERROR(kv_->Append(seq, num_tokens - length));
  return num_cached;
}

void KvMemoryModel::Release(const Process& process) {
  auto it = sequences_.find(process.id());
  if (it == sequences_.end()) return;
  Status st = kv_->Free(it->second);
  CHECK(st.ok()) << st.ToString();
  sequences_.erase(it);
}

Status KvMemoryModel::Fork(const Process& parent, const Process& child) {
  auto it = sequences_.find(parent.id());
  if (it == sequences_.end()) return FailedPreconditionError("process " + std::to_string(parent.id()) + " holds no KV");
  if (sequences_.contains(child.id())) {
    return FailedPreconditionError("process " + std::to_string(child.id()) + " already holds KV");
  }
  ASSIGN_OR_RETURN(const SequenceId seq, kv_->Fork(it->second));
  sequences_.emplace(child.id(), seq);
  return OkStatus();
}

size_t KvMemoryModel::SwapOutBytes(const Process& process) const {
  auto it = sequences_.find(process.id());
  if (it == sequences_.end() || *kv_->IsSwappedOut(it->second)) return 0;
  return kv_->EstimatePreemption(it->second)->swap_bytes;
}

size_t KvMemoryModel::NumFreeSwapBytes() const {
  const KvStats st = kv_->Stats();
  return (st.swap_capacity_blocks - st.swapped_blocks) * kv_->block_bytes();
}

Status KvMemoryModel::SwapOut(const Process& process) {
  auto it = sequences_.find(process.id());
  if (it == sequences_.end()) return FailedPreconditionError("process " + std::to_string(process.id()) + " holds no KV");
  return kv_->SwapOut(it->second);
}

}  // namespace llmasos::kernel
