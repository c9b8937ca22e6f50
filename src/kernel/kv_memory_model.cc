#include "kernel/kv_memory_model.h"

#include <algorithm>

namespace llmasos::kernel {

KvMemoryModel::KvMemoryModel(KvMemory* kv, bool share_across_tenants, size_t window_tokens)
    : KvMemoryModel(kv, share_across_tenants, std::vector<size_t>{window_tokens}) {}

KvMemoryModel::KvMemoryModel(KvMemory* kv, bool share_across_tenants, std::vector<size_t> group_windows)
    : kv_(kv), share_across_tenants_(share_across_tenants), group_windows_(std::move(group_windows)) {
  CHECK(kv_ != nullptr);
  CHECK(!group_windows_.empty());
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

uint64_t KvMemoryModel::GroupSalt(uint64_t salt, size_t group) const {
  if (num_groups() == 1) return salt;
  // FNV-1a over the group index's bytes, from the process's salt: the same tokens give other
  // K/V in another group's layers, so groups never share a block.
  uint64_t h = salt ^ 0xcbf29ce484222325ull;
  for (size_t i = 0; i < sizeof(uint64_t); ++i) {
    h ^= (static_cast<uint64_t>(group) >> (8 * i)) & 0xff;
    h *= 1099511628211ull;
  }
  return h;
}

const std::vector<SequenceId>* KvMemoryModel::Find(ProcessId id) const {
  auto it = sequences_.find(id);
  return it == sequences_.end() ? nullptr : &it->second;
}

StatusOr<std::span<const SequenceId>> KvMemoryModel::SequencesOf(ProcessId id) const {
  const std::vector<SequenceId>* seqs = Find(id);
  if (seqs == nullptr) return NotFoundError("process " + std::to_string(id) + " holds no KV");
  return std::span<const SequenceId>(*seqs);
}

StatusOr<SequenceId> KvMemoryModel::SequenceOf(ProcessId id) const {
  ASSIGN_OR_RETURN(std::span<const SequenceId> seqs, SequencesOf(id));
  return seqs[0];
}

KvMemoryModel::Holding KvMemoryModel::HoldingOf(ProcessId id) const {
  Holding h;
  const std::vector<SequenceId>* seqs = Find(id);
  if (seqs == nullptr) return h;
  for (const SequenceId seq : *seqs) {
    const size_t dropped = *kv_->NumDropped(seq);
    if (*kv_->IsSwappedOut(seq)) {
      h.swapped_blocks += PagesForTokens(*kv_->Length(seq)) - dropped;
    } else {
      h.resident_blocks += kv_->BlockTable(seq)->size() - dropped;
    }
  }
  return h;
}

Status KvMemoryModel::CommitTokens(const Process& process, std::span<const TokenId> tokens) {
  const std::vector<SequenceId>* seqs = Find(process.id());
  if (seqs == nullptr) return OkStatus();
  for (const SequenceId seq : *seqs) RETURN_IF_ERROR(kv_->CommitTokens(seq, tokens).status());
  return OkStatus();
}

Status KvMemoryModel::DropOutOfWindow(size_t group, SequenceId seq, size_t next_position) {
  const size_t window = group_windows_[group];
  if (window == 0 || next_position + 1 <= window) return OkStatus();
  return kv_->DropBefore(seq, next_position + 1 - window).status();
}

Status KvMemoryModel::ReleaseOutOfWindow(const Process& process, size_t next_position) {
  const std::vector<SequenceId>* seqs = Find(process.id());
  if (seqs == nullptr) return OkStatus();
  for (size_t g = 0; g < seqs->size(); ++g) RETURN_IF_ERROR(DropOutOfWindow(g, (*seqs)[g], next_position));
  return OkStatus();
}

Status KvMemoryModel::CheckInvariants() const {
  RETURN_IF_ERROR(kv_->CheckInvariants());
  for (const auto& [id, seqs] : sequences_) {
    if (seqs.size() != num_groups()) {
      return InternalError("process " + std::to_string(id) + " holds " + std::to_string(seqs.size()) +
                           " sequences for " + std::to_string(num_groups()) + " layer groups");
    }
    const size_t length = *kv_->Length(seqs[0]);
    const bool swapped = *kv_->IsSwappedOut(seqs[0]);
    for (size_t g = 1; g < seqs.size(); ++g) {
      if (*kv_->Length(seqs[g]) != length || *kv_->IsSwappedOut(seqs[g]) != swapped) {
        return InternalError("process " + std::to_string(id) + ": layer group " + std::to_string(g) +
                             " differs from group 0 in length or swap state");
      }
    }
  }
  return OkStatus();
}

size_t KvMemoryModel::PagesForTokens(size_t num_tokens) const {
  return (num_tokens + kv_->block_tokens() - 1) / kv_->block_tokens();
}

size_t KvMemoryModel::BlocksForTokens(size_t num_tokens) const {
  return num_groups() * PagesForTokens(num_tokens);
}

size_t KvMemoryModel::PeakBlocks(size_t num_tokens, size_t chunk_tokens) const {
  const size_t all = PagesForTokens(num_tokens);
  const size_t bt = kv_->block_tokens();
  size_t peak = 0;
  for (const size_t window : group_windows_) {
    if (window == 0 || num_tokens == 0) {
      peak += all;
      continue;
    }
    // Between steps a group holds the window - 1 positions its next token reads; a step adds
    // at most one chunk. Blocks a run of n positions can touch: CeilDiv(n - 1, bt) + 1.
    const size_t span = window - 1 + std::max<size_t>(1, std::min(chunk_tokens, num_tokens));
    peak += std::min(all, (span - 1 + bt - 1) / bt + 1);
  }
  return peak;
}

size_t KvMemoryModel::PagesToGrow(SequenceId seq, size_t num_tokens) const {
  const size_t length = *kv_->Length(seq);
  const size_t have_blocks = PagesForTokens(length);
  const size_t want_blocks = std::max(PagesForTokens(num_tokens), have_blocks);
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

size_t KvMemoryModel::BlocksToGrow(const Process& process, size_t num_tokens) const {
  const std::vector<SequenceId>* seqs = Find(process.id());
  // No sequence yet: an upper bound (prefix-cache hits only lower it, and a hit block taken
  // from the evictable cache lowers the need and the supply alike).
  if (seqs == nullptr) return BlocksForTokens(num_tokens);
  size_t need = 0;
  for (const SequenceId seq : *seqs) need += PagesToGrow(seq, num_tokens);
  return need;
}

size_t KvMemoryModel::NumBlocksHeld(const Process& process) const {
  const std::vector<SequenceId>* seqs = Find(process.id());
  if (seqs == nullptr) return 0;
  size_t held = 0;
  for (const SequenceId seq : *seqs) {
    if (!*kv_->IsSwappedOut(seq)) held += kv_->EstimatePreemption(seq)->freed_blocks;
  }
  return held;
}

StatusOr<size_t> KvMemoryModel::Grow(const Process& process, size_t num_tokens) {
  size_t num_cached = 0;
  auto it = sequences_.find(process.id());
  if (it == sequences_.end()) {
    const uint64_t salt = SaltOf(process);
    std::vector<SequenceId> seqs;
    for (size_t g = 0; g < num_groups(); ++g) seqs.push_back(kv_->CreateSequence(GroupSalt(salt, g)));
    it = sequences_.emplace(process.id(), std::move(seqs)).first;
    // All tokens but the last: at least one must be computed to get logits. An embedding
    // pools every token's hidden state, so it reuses nothing.
    if (process.kind() != ProcessKind::kEmbed) {
      const std::span<const TokenId> prompt = process.tokens().first(process.num_tokens() - 1);
      // Every group reuses the prefix all of them hold (one lookup in the statistics).
      size_t reuse = SIZE_MAX;
      if (num_groups() > 1) {
        for (size_t g = 0; g < num_groups(); ++g) {
          reuse = std::min(reuse, kv_->CachedPrefixTokens(GroupSalt(salt, g), prompt));
        }
      }
      for (size_t g = 0; g < num_groups(); ++g) {
        ASSIGN_OR_RETURN(num_cached, kv_->MatchPrefix(it->second[g], prompt, reuse, g == 0));
        // The next token computed is the first uncached one: what lies before its window goes.
        RETURN_IF_ERROR(DropOutOfWindow(g, it->second[g], num_cached));
      }
    }
  }
  // The whole need first, so that a short pool changes no group.
  const size_t need = BlocksToGrow(process, num_tokens);
  if (need > kv_->available_blocks()) {
    return ResourceExhaustedError("process " + std::to_string(process.id()) + " needs " + std::to_string(need) +
                                  " KV blocks; " + std::to_string(kv_->available_blocks()) + " of " +
                                  std::to_string(kv_->num_blocks()) + " available");
  }
  for (const SequenceId seq : it->second) {
    ASSIGN_OR_RETURN(const bool swapped, kv_->IsSwappedOut(seq));
    if (swapped) RETURN_IF_ERROR(kv_->SwapIn(seq));
    ASSIGN_OR_RETURN(const size_t length, kv_->Length(seq));
    if (num_tokens > length) RETURN_IF_ERROR(kv_->Append(seq, num_tokens - length));
  }
  return num_cached;
}

void KvMemoryModel::Release(const Process& process) {
  auto it = sequences_.find(process.id());
  if (it == sequences_.end()) return;
  for (const SequenceId seq : it->second) {
    Status st = kv_->Free(seq);
    CHECK(st.ok()) << st.ToString();
  }
  sequences_.erase(it);
}

Status KvMemoryModel::Fork(const Process& parent, const Process& child) {
  const std::vector<SequenceId>* seqs = Find(parent.id());
  if (seqs == nullptr) return FailedPreconditionError("process " + std::to_string(parent.id()) + " holds no KV");
  if (sequences_.contains(child.id())) {
    return FailedPreconditionError("process " + std::to_string(child.id()) + " already holds KV");
  }
  std::vector<SequenceId> forks;
  for (const SequenceId seq : *seqs) {
    StatusOr<SequenceId> fork = kv_->Fork(seq);
    if (!fork.ok()) {
      for (const SequenceId f : forks) CHECK(kv_->Free(f).ok());
      return fork.status();
    }
    forks.push_back(*fork);
  }
  sequences_.emplace(child.id(), std::move(forks));
  return OkStatus();
}

size_t KvMemoryModel::SwapOutBytes(const Process& process) const {
  const std::vector<SequenceId>* seqs = Find(process.id());
  if (seqs == nullptr) return 0;
  size_t bytes = 0;
  for (const SequenceId seq : *seqs) {
    if (!*kv_->IsSwappedOut(seq)) bytes += kv_->EstimatePreemption(seq)->swap_bytes;
  }
  return bytes;
}

size_t KvMemoryModel::NumFreeSwapBytes() const {
  const KvStats st = kv_->Stats();
  return (st.swap_capacity_blocks - st.swapped_blocks) * kv_->block_bytes();
}

Status KvMemoryModel::SwapOut(const Process& process) {
  const std::vector<SequenceId>* seqs = Find(process.id());
  if (seqs == nullptr) return FailedPreconditionError("process " + std::to_string(process.id()) + " holds no KV");
  if (seqs->size() == 1) return kv_->SwapOut((*seqs)[0]);
  // Several groups: all of them go out or none (a failure brings back those already out).
  if (SwapOutBytes(process) > NumFreeSwapBytes()) {
    return ResourceExhaustedError("process " + std::to_string(process.id()) + " needs " +
                                  std::to_string(SwapOutBytes(process)) + " bytes of swap; " +
                                  std::to_string(NumFreeSwapBytes()) + " free");
  }
  for (size_t g = 0; g < seqs->size(); ++g) {
    const Status st = kv_->SwapOut((*seqs)[g]);
    if (st.ok()) continue;
    // The blocks they just gave up are still free or cached, so only a swap-file read can
    // fail here; the scheduler then releases the process (recompute), which frees the rest.
    for (size_t back = 0; back < g; ++back) {
      const Status in = kv_->SwapIn((*seqs)[back]);
      if (!in.ok()) return st.Annotate("and bringing group " + std::to_string(back) + " back: " + in.ToString());
    }
    return st;
  }
  return OkStatus();
}

}  // namespace llmasos::kernel
