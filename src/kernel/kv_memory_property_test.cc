// Randomized property test of KvMemory: seeded random sequences of create / append / fork /
// free / swap-out / swap-in / match-prefix / commit / evict / rewrite / drop (a sliding
// window's release of leading blocks), checked after every
// operation against a shadow model that knows, for every sequence, its tokens and which write
// (a unique stamp) produced the K/V of each of its positions.
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "kernel/kv_memory.h"

namespace llmasos::kernel {
namespace {

constexpr size_t kLayers = 2;
constexpr size_t kKvDim = 4;
constexpr size_t kBlockTokens = 4;
constexpr size_t kBlockBytes = kLayers * 2 * kBlockTokens * kKvDim * sizeof(float);
constexpr TokenId kVocab = 3;  // a small vocabulary makes shared prefixes frequent

// Element (layer, d) of K holds stamp * 16 + layer * 4 + d, V the same + 8: exact in float for
// stamps below 2^20, and every element says which write produced it.
float KValue(uint32_t stamp, size_t layer, size_t d) { return float(stamp) * 16 + layer * 4 + d; }

struct ShadowSeq {
  uint64_t salt = 0;
  std::vector<TokenId> tokens;   // [length]
  std::vector<uint32_t> stamps;  // [length]: the write whose K/V each position holds
  bool swapped = false;
  size_t num_dropped = 0;  // leading blocks released by DropBefore
};

enum Op {
  kCreate, kAppend, kFork, kFree, kSwapOut, kSwapIn, kMatch, kCommit, kEvict, kRewrite,
  kBadInput, kDrop, kNumOps
};
const char* const kOpNames[kNumOps] = {"create", "append", "fork", "free", "swap-out", "swap-in",
                                       "match", "commit", "evict", "rewrite", "bad-input", "drop"};

struct Counters {
  size_t ok[kNumOps] = {};
  size_t exhausted[kNumOps] = {};
  size_t prefix_hit_tokens = 0;
  size_t evicted = 0;
  size_t cow_copies = 0;
};

class Harness {
 public:
  Harness(uint64_t seed, Counters& counters) : rng_(seed), counters_(counters) {
    KvMemoryOptions o;
    o.num_layers = kLayers;
    o.kv_dim = kKvDim;
    o.block_tokens = kBlockTokens;
    const size_t num_blocks = 6 + seed % 24;
    const size_t swap_blocks = seed % 4 == 0 ? 0 : 2 + seed % 20;
    o.budget_bytes = num_blocks * kBlockBytes;
    o.swap_budget_bytes = swap_blocks * kBlockBytes;
    if (seed % 4 == 1) {
      o.swap_file_path = ::testing::TempDir() + "/kv_property_swap_" + std::to_string(seed);
    }
    auto kv = KvMemory::Create(o);
    CHECK(kv.ok()) << kv.status().ToString();
    kv_ = std::move(kv).value();
  }

  // Runs one random operation and checks every invariant; false (with a gtest failure) when
  // something is wrong.
  bool Step(size_t step_idx) {
    const Op op = PickOp();
    DoOp(op);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "after op #" << step_idx << " (" << kOpNames[op] << ")";
      return false;
    }
    CheckAll();
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "invariants broken after op #" << step_idx << " (" << kOpNames[op] << ")";
      return false;
    }
    return true;
  }

  void FreeEverything() {
    while (!seqs_.empty()) {
      ASSERT_TRUE(kv_->Free(seqs_.begin()->first).ok());
      seqs_.erase(seqs_.begin());
    }
    CheckAll();
    KvStats st = kv_->Stats();
    EXPECT_EQ(st.used_blocks, 0u);
    EXPECT_EQ(st.swapped_blocks, 0u);
    EXPECT_EQ(st.free_blocks + st.cached_blocks, st.total_blocks);
    counters_.evicted += st.evicted_blocks;  // by EvictCached and by allocations
    kv_->EvictCached(st.total_blocks);
    EXPECT_EQ(kv_->Stats().free_blocks, st.total_blocks);
    EXPECT_EQ(kv_->Stats().cache_entries, 0u);
  }

 private:
  size_t Uniform(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }

  Op PickOp() {
    // Weighted so that the pool fills, runs out, and drains again.
    static constexpr int kWeights[kNumOps] = {8, 30, 6, 0, 5, 5, 10, 10, 2, 6, 2, 3};
    int weights[kNumOps];
    std::copy(std::begin(kWeights), std::end(kWeights), weights);
    weights[kFree] = 2 + 2 * static_cast<int>(seqs_.size());
    int total = 0;
    for (int w : weights) total += w;
    int r = static_cast<int>(Uniform(total));
    for (int op = 0; op < kNumOps; ++op) {
      if (r < weights[op]) return static_cast<Op>(op);
      r -= weights[op];
    }
    return kAppend;
  }

  // A random live sequence, resident or swapped as asked; 0 if none.
  SequenceId PickSeq(bool want_swapped) {
    std::vector<SequenceId> ids;
    for (const auto& [id, s] : seqs_) {
      if (s.swapped == want_swapped) ids.push_back(id);
    }
    return ids.empty() ? 0 : ids[Uniform(ids.size())];
  }

  void Write(const KvSlot& slot, uint32_t stamp) {
    for (size_t l = 0; l < kLayers; ++l) {
      for (size_t d = 0; d < kKvDim; ++d) {
        kv_->K(slot.block, l)[slot.row * kKvDim + d] = KValue(stamp, l, d);
        kv_->V(slot.block, l)[slot.row * kKvDim + d] = KValue(stamp, l, d) + 8;
      }
    }
  }

  // The stamp a slot holds, or UINT32_MAX if its elements are not one consistent write.
  uint32_t ReadStamp(const KvSlot& slot) {
    const float k0 = kv_->K(slot.block, 0)[slot.row * kKvDim];
    const uint32_t stamp = static_cast<uint32_t>(k0 / 16);
    for (size_t l = 0; l < kLayers; ++l) {
      for (size_t d = 0; d < kKvDim; ++d) {
        if (kv_->K(slot.block, l)[slot.row * kKvDim + d] != KValue(stamp, l, d) ||
            kv_->V(slot.block, l)[slot.row * kKvDim + d] != KValue(stamp, l, d) + 8) {
          return UINT32_MAX;
        }
      }
    }
    return stamp;
  }

  // Creates a sequence of tenant `salt`, matches `prompt` against the prefix cache, checks
  // that every reused block holds what some same-tenant sequence committed for exactly that
  // token prefix, and records the new sequence in the shadow. Returns the tokens reused.
  size_t MatchAndCheck(uint64_t salt, const std::vector<TokenId>& prompt) {
    const SequenceId id = kv_->CreateSequence(salt);
    ShadowSeq& s = seqs_[id];
    s.salt = salt;
    auto reused = kv_->MatchPrefix(id, prompt);
    EXPECT_TRUE(reused.ok()) << reused.status().ToString();
    if (!reused.ok()) return 0;
    EXPECT_EQ(*reused % kBlockTokens, 0u);
    EXPECT_LE(*reused, prompt.size());
    EXPECT_EQ(*kv_->Length(id), *reused);
    for (size_t b = 0; b < *reused / kBlockTokens; ++b) {
      std::vector<uint32_t> stamps;
      for (size_t r = 0; r < kBlockTokens; ++r) {
        const uint32_t stamp = ReadStamp(*kv_->Slot(id, b * kBlockTokens + r));
        EXPECT_NE(stamp, UINT32_MAX) << "reused block row holds a torn write";
        stamps.push_back(stamp);
      }
      const std::vector<TokenId> key(prompt.begin(), prompt.begin() + (b + 1) * kBlockTokens);
      auto it = committed_.find({salt, key});
      if (it == committed_.end()) {
        ADD_FAILURE() << "reused a block never committed for this tenant and prefix";
        return 0;
      }
      EXPECT_EQ(it->second.count(stamps), 1u) << "reused block holds writes other than a committer's";
      s.stamps.insert(s.stamps.end(), stamps.begin(), stamps.end());
    }
    s.tokens.assign(prompt.begin(), prompt.begin() + *reused);
    return *reused;
  }

  size_t BlocksFor(size_t tokens) const { return (tokens + kBlockTokens - 1) / kBlockTokens; }

  void DoOp(Op op) {
    switch (op) {
      case kCreate: {
        const uint64_t salt = 1 + Uniform(2);
        seqs_[kv_->CreateSequence(salt)].salt = salt;
        ++counters_.ok[op];
        return;
      }
      case kAppend: {
        const SequenceId id = PickSeq(false);
        if (id == 0) return;
        ShadowSeq& s = seqs_[id];
        const size_t n = 1 + Uniform(6);
        const size_t len = s.tokens.size();
        // Predict whether the pool can serve it: new blocks, plus a copy of a shared partial
        // last block.
        size_t needed = BlocksFor(len + n) - BlocksFor(len);
        bool copies = false;
        if (len % kBlockTokens != 0) {
          copies = kv_->RefCount(kv_->BlockTable(id)->back()) > 1;
          needed += copies ? 1 : 0;
        }
        EXPECT_EQ(*kv_->BlocksToAppend(id, n), needed);
        const bool fits = needed <= kv_->available_blocks();
        const Status st = kv_->Append(id, n);
        if (!fits) {
          EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.ToString();
          EXPECT_EQ(*kv_->Length(id), len);
          ++counters_.exhausted[op];
          return;
        }
        ASSERT_TRUE(st.ok()) << st.ToString();
        counters_.cow_copies += copies ? 1 : 0;
        for (size_t p = len; p < len + n; ++p) {
          const uint32_t stamp = next_stamp_++;
          Write(*kv_->Slot(id, p), stamp);
          s.tokens.push_back(static_cast<TokenId>(Uniform(kVocab)));
          s.stamps.push_back(stamp);
        }
        ++counters_.ok[op];
        return;
      }
      case kFork: {
        const SequenceId id = PickSeq(false);
        if (id == 0) return;
        auto fork = kv_->Fork(id);
        ASSERT_TRUE(fork.ok()) << fork.status().ToString();
        ASSERT_EQ(seqs_.count(*fork), 0u);
        seqs_[*fork] = seqs_[id];
        ++counters_.ok[op];
        return;
      }
      case kFree: {
        const SequenceId id = PickSeq(Uniform(4) == 0);
        if (id == 0) return;
        ASSERT_TRUE(kv_->Free(id).ok());
        seqs_.erase(id);
        EXPECT_EQ(kv_->Free(id).code(), StatusCode::kNotFound);  // never freed twice
        ++counters_.ok[op];
        return;
      }
      case kSwapOut: {
        const SequenceId id = PickSeq(false);
        if (id == 0) return;
        const KvStats before = kv_->Stats();
        const size_t blocks = BlocksFor(seqs_[id].tokens.size()) - seqs_[id].num_dropped;
        const Status st = kv_->SwapOut(id);
        if (before.swap_capacity_blocks == 0) {
          EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition) << st.ToString();
          return;
        }
        if (blocks > before.swap_capacity_blocks - before.swapped_blocks) {
          EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.ToString();
          ++counters_.exhausted[op];
          return;
        }
        ASSERT_TRUE(st.ok()) << st.ToString();
        seqs_[id].swapped = true;
        EXPECT_EQ(kv_->Stats().swapped_blocks, before.swapped_blocks + blocks);
        ++counters_.ok[op];
        return;
      }
      case kSwapIn: {
        const SequenceId id = PickSeq(true);
        if (id == 0) return;
        const size_t blocks = BlocksFor(seqs_[id].tokens.size()) - seqs_[id].num_dropped;
        const bool fits = blocks <= kv_->available_blocks();
        const Status st = kv_->SwapIn(id);
        if (!fits) {
          EXPECT_EQ(st.code(), StatusCode::kResourceExhausted) << st.ToString();
          EXPECT_TRUE(*kv_->IsSwappedOut(id));
          ++counters_.exhausted[op];
          return;
        }
        ASSERT_TRUE(st.ok()) << st.ToString();
        seqs_[id].swapped = false;
        ++counters_.ok[op];
        return;
      }
      case kMatch: {
        // A new sequence whose prompt often starts like an existing one (of either tenant).
        const uint64_t salt = 1 + Uniform(2);
        std::vector<TokenId> prompt;
        if (!seqs_.empty() && Uniform(10) < 7) {
          auto it = seqs_.begin();
          std::advance(it, Uniform(seqs_.size()));
          prompt.assign(it->second.tokens.begin(),
                        it->second.tokens.begin() + Uniform(it->second.tokens.size() + 1));
        }
        for (size_t extra = Uniform(9); extra > 0; --extra) {
          prompt.push_back(static_cast<TokenId>(Uniform(kVocab)));
        }
        const size_t reused = MatchAndCheck(salt, prompt);
        counters_.prefix_hit_tokens += reused;
        ++counters_.ok[op];
        return;
      }
      case kCommit: {
        const SequenceId id = PickSeq(false);
        if (id == 0) return;
        const ShadowSeq& s = seqs_[id];
        const size_t n = Uniform(3) == 0 ? Uniform(s.tokens.size() + 1) : s.tokens.size();
        auto registered = kv_->CommitTokens(id, std::span(s.tokens).first(n));
        ASSERT_TRUE(registered.ok()) << registered.status().ToString();
        for (size_t b = 0; b < n / kBlockTokens; ++b) {
          std::vector<TokenId> key(s.tokens.begin(), s.tokens.begin() + (b + 1) * kBlockTokens);
          std::vector<uint32_t> stamps(s.stamps.begin() + b * kBlockTokens,
                                       s.stamps.begin() + (b + 1) * kBlockTokens);
          committed_[{s.salt, std::move(key)}].insert(std::move(stamps));
        }
        // Right after a commit, the whole committed prefix is matchable by the same tenant
        // (unless blocks were dropped: those dropped before they were committed never were).
        if (Uniform(2) == 0 && s.num_dropped == 0) {
          const std::vector<TokenId> prompt(s.tokens.begin(), s.tokens.begin() + n);
          const uint64_t salt = s.salt;
          EXPECT_EQ(MatchAndCheck(salt, prompt), n / kBlockTokens * kBlockTokens);
        }
        ++counters_.ok[op];
        return;
      }
      case kEvict: {
        const size_t before = kv_->Stats().cached_blocks;
        const size_t want = Uniform(4);
        const size_t evicted = kv_->EvictCached(want);
        EXPECT_EQ(evicted, std::min(want, before));
        ++counters_.ok[op];
        return;
      }
      case kRewrite: {
        const SequenceId id = PickSeq(false);
        if (id == 0) return;
        ShadowSeq& s = seqs_[id];
        const size_t first = s.num_dropped * kBlockTokens;  // dropped positions cannot be rewritten
        if (s.tokens.size() == first) return;
        const size_t pos = first + Uniform(s.tokens.size() - first);
        const bool shared = kv_->RefCount(kv_->Slot(id, pos)->block) > 1;
        const bool fits = !shared || kv_->available_blocks() > 0;
        auto slot = kv_->PrepareWrite(id, pos);
        if (!fits) {
          EXPECT_EQ(slot.status().code(), StatusCode::kResourceExhausted);
          ++counters_.exhausted[op];
          return;
        }
        ASSERT_TRUE(slot.ok()) << slot.status().ToString();
        EXPECT_EQ(kv_->RefCount(slot->block), 1u);
        counters_.cow_copies += shared ? 1 : 0;
        const uint32_t stamp = next_stamp_++;
        Write(*slot, stamp);
        s.stamps[pos] = stamp;
        ++counters_.ok[op];
        return;
      }
      case kBadInput: {
        const SequenceId ghost = 1'000'000'000 + Uniform(1000);
        EXPECT_EQ(kv_->Append(ghost, 1).code(), StatusCode::kNotFound);
        EXPECT_EQ(kv_->SwapIn(ghost).code(), StatusCode::kNotFound);
        EXPECT_EQ(kv_->Fork(ghost).status().code(), StatusCode::kNotFound);
        const SequenceId id = PickSeq(false);
        if (id != 0) {
          const size_t len = seqs_[id].tokens.size();
          EXPECT_EQ(kv_->Slot(id, len + Uniform(3)).status().code(), StatusCode::kOutOfRange);
          EXPECT_EQ(kv_->PrepareWrite(id, len).status().code(), StatusCode::kOutOfRange);
          std::vector<TokenId> too_many(len + 1, 0);
          EXPECT_EQ(kv_->CommitTokens(id, too_many).status().code(), StatusCode::kOutOfRange);
          if (len > 0) {
            EXPECT_EQ(kv_->MatchPrefix(id, seqs_[id].tokens).status().code(),
                      StatusCode::kFailedPrecondition);
          }
          if (seqs_[id].num_dropped > 0) {
            const size_t pos = Uniform(seqs_[id].num_dropped * kBlockTokens);
            EXPECT_EQ(kv_->Slot(id, pos).status().code(), StatusCode::kFailedPrecondition);
            EXPECT_EQ(kv_->PrepareWrite(id, pos).status().code(), StatusCode::kFailedPrecondition);
          }
        }
        const SequenceId out = PickSeq(true);
        if (out != 0) {
          EXPECT_EQ(kv_->Append(out, 1).code(), StatusCode::kFailedPrecondition);
          EXPECT_EQ(kv_->Fork(out).status().code(), StatusCode::kFailedPrecondition);
          EXPECT_NE(kv_->SwapOut(out).code(), StatusCode::kOk);
          EXPECT_EQ(kv_->DropBefore(out, 1000).status().code(), StatusCode::kFailedPrecondition);
        }
        ++counters_.ok[op];
        return;
      }
      case kDrop: {
        const SequenceId id = PickSeq(false);
        if (id == 0) return;
        ShadowSeq& s = seqs_[id];
        const size_t position = Uniform(s.tokens.size() + 2);  // beyond the length is clamped
        const size_t want = std::max(s.num_dropped, std::min(position, s.tokens.size()) / kBlockTokens);
        auto dropped = kv_->DropBefore(id, position);
        ASSERT_TRUE(dropped.ok()) << dropped.status().ToString();
        EXPECT_EQ(*dropped, want - s.num_dropped);
        s.num_dropped = want;
        EXPECT_EQ(*kv_->NumDropped(id), want);
        ++counters_.ok[op];
        return;
      }
      case kNumOps: break;
    }
  }

  // Every invariant, through the public API, against the shadow model.
  void CheckAll() {
    const Status inv = kv_->CheckInvariants();
    ASSERT_TRUE(inv.ok()) << inv.ToString();
    const KvStats st = kv_->Stats();
    ASSERT_EQ(st.free_blocks + st.used_blocks + st.cached_blocks, st.total_blocks) << "leak";
    ASSERT_EQ(st.num_sequences, seqs_.size());

    std::vector<uint32_t> refs(kv_->num_blocks(), 0);
    std::vector<size_t> rows(kv_->num_blocks(), 0);
    size_t swapped_blocks = 0;
    for (const auto& [id, s] : seqs_) {
      ASSERT_EQ(*kv_->Length(id), s.tokens.size());
      ASSERT_EQ(*kv_->IsSwappedOut(id), s.swapped);
      ASSERT_EQ(*kv_->NumDropped(id), s.num_dropped);
      if (s.swapped) {
        swapped_blocks += BlocksFor(s.tokens.size()) - s.num_dropped;
        continue;
      }
      std::span<const BlockId> table = *kv_->BlockTable(id);
      ASSERT_EQ(table.size(), BlocksFor(s.tokens.size()));
      for (size_t b = 0; b < s.num_dropped; ++b) ASSERT_EQ(table[b], kDroppedBlock);
      for (size_t b = s.num_dropped; b < table.size(); ++b) {
        ++refs[table[b]];
        rows[table[b]] = std::max(rows[table[b]],
                                  std::min(kBlockTokens, s.tokens.size() - b * kBlockTokens));
      }
      // Each sequence reads back exactly its own writes (or those of the writer it shares
      // a prefix with), never another's.
      for (size_t p = s.num_dropped * kBlockTokens; p < s.tokens.size(); ++p) {
        const uint32_t stamp = ReadStamp(*kv_->Slot(id, p));
        ASSERT_EQ(stamp, s.stamps[p]) << "sequence " << id << " position " << p;
      }
    }
    ASSERT_EQ(st.swapped_blocks, swapped_blocks);
    size_t used = 0, stored = 0;
    for (BlockId b = 0; b < kv_->num_blocks(); ++b) {
      ASSERT_EQ(kv_->RefCount(b), refs[b]) << "block " << b;
      ASSERT_EQ(kv_->StateOf(b) == BlockState::kUsed, refs[b] > 0) << "block " << b;
      used += refs[b] > 0 ? 1 : 0;
      stored += rows[b];
    }
    ASSERT_EQ(st.used_blocks, used);
    ASSERT_EQ(st.stored_tokens, stored);
  }

  std::mt19937_64 rng_;
  Counters& counters_;
  std::unique_ptr<KvMemory> kv_;
  std::map<SequenceId, ShadowSeq> seqs_;
  // (tenant salt, tokens through the end of a block) -> the stamps that block held whenever
  // a sequence committed it.
  std::map<std::pair<uint64_t, std::vector<TokenId>>, std::set<std::vector<uint32_t>>> committed_;
  uint32_t next_stamp_ = 1;
};

TEST(KvMemoryPropertyTest, RandomOperationsKeepEveryInvariant) {
  constexpr size_t kSeeds = 200;
  constexpr size_t kOpsPerSeed = 2000;
  Counters counters;
  for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
    Harness h(seed, counters);
    for (size_t i = 0; i < kOpsPerSeed; ++i) {
      if (!h.Step(i)) {
        FAIL() << "seed " << seed;
      }
    }
    h.FreeEverything();
    if (::testing::Test::HasFailure()) FAIL() << "seed " << seed << " at the end";
  }
  std::cout << "ops by kind (ok / resource exhausted):";
  for (int op = 0; op < kNumOps; ++op) {
    std::cout << " " << kOpNames[op] << " " << counters.ok[op] << "/" << counters.exhausted[op];
  }
  std::cout << "\nprefix tokens reused " << counters.prefix_hit_tokens << ", blocks evicted "
            << counters.evicted << ", copy-on-write copies " << counters.cow_copies << "\n";
  // The run must have exercised every path it claims to check.
  for (int op : {kAppend, kFork, kSwapOut, kSwapIn, kMatch, kCommit, kRewrite, kDrop}) {
    EXPECT_GT(counters.ok[op], 100u) << kOpNames[op];
  }
  for (int op : {kAppend, kSwapOut, kSwapIn}) EXPECT_GT(counters.exhausted[op], 10u) << kOpNames[op];
  EXPECT_GT(counters.prefix_hit_tokens, 1000u);
  EXPECT_GT(counters.evicted, 100u);
  EXPECT_GT(counters.cow_copies, 100u);
}

}  // namespace
}  // namespace llmasos::kernel
