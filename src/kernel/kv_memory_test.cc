#include "kernel/kv_memory.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <numeric>
#include <vector>

namespace llmasos::kernel {
namespace {

// A tiny shape: 2 layers, kv_dim 4, 4-token blocks. One block = 2 * 2 * 4 * 4 * 4 = 256 bytes.
constexpr size_t kLayers = 2;
constexpr size_t kKvDim = 4;
constexpr size_t kBlockTokens = 4;
constexpr size_t kBlockBytes = kLayers * 2 * kBlockTokens * kKvDim * sizeof(float);

KvMemoryOptions TinyOptions(size_t num_blocks, size_t num_swap_blocks = 0) {
  KvMemoryOptions o;
  o.num_layers = kLayers;
  o.kv_dim = kKvDim;
  o.block_tokens = kBlockTokens;
  o.budget_bytes = num_blocks * kBlockBytes;
  o.swap_budget_bytes = num_swap_blocks * kBlockBytes;
  return o;
}

std::unique_ptr<KvMemory> MakeTiny(size_t num_blocks, size_t num_swap_blocks = 0) {
  auto kv = KvMemory::Create(TinyOptions(num_blocks, num_swap_blocks));
  CHECK(kv.ok()) << kv.status().ToString();
  return std::move(kv).value();
}

// Writes a value identifying (stamp, layer, dim, K or V) into every K/V element of `position`.
void WriteToken(KvMemory& kv, const KvSlot& slot, float stamp) {
  for (size_t l = 0; l < kLayers; ++l) {
    for (size_t d = 0; d < kKvDim; ++d) {
      kv.K(slot.block, l)[slot.row * kKvDim + d] = stamp * 16 + l * 4 + d;
      kv.V(slot.block, l)[slot.row * kKvDim + d] = stamp * 16 + l * 4 + d + 8;
    }
  }
}

bool TokenIs(KvMemory& kv, const KvSlot& slot, float stamp) {
  for (size_t l = 0; l < kLayers; ++l) {
    for (size_t d = 0; d < kKvDim; ++d) {
      if (kv.K(slot.block, l)[slot.row * kKvDim + d] != stamp * 16 + l * 4 + d) return false;
      if (kv.V(slot.block, l)[slot.row * kKvDim + d] != stamp * 16 + l * 4 + d + 8) return false;
    }
  }
  return true;
}

// Appends n tokens to seq and stamps position p with stamp_base + p.
void AppendStamped(KvMemory& kv, SequenceId seq, size_t n, float stamp_base) {
  const size_t start = *kv.Length(seq);
  ASSERT_TRUE(kv.Append(seq, n).ok());
  for (size_t p = start; p < start + n; ++p) WriteToken(kv, *kv.Slot(seq, p), stamp_base + p);
}

std::vector<TokenId> Iota(size_t n, TokenId first = 0) {
  std::vector<TokenId> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

TEST(KvMemoryTest, SizesThePoolFromTheBudget) {
  KvMemoryOptions o = TinyOptions(10);
  o.budget_bytes += kBlockBytes - 1;  // a partial block is not a block
  auto kv = KvMemory::Create(o);
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ((*kv)->num_blocks(), 10u);
  EXPECT_EQ((*kv)->block_bytes(), kBlockBytes);
  KvStats st = (*kv)->Stats();
  EXPECT_EQ(st.total_blocks, 10u);
  EXPECT_EQ(st.free_blocks, 10u);
  EXPECT_EQ(st.used_blocks + st.cached_blocks, 0u);
}

TEST(KvMemoryTest, HalfPrecisionHalvesTheBlock) {
  KvMemoryOptions o = TinyOptions(10);
  o.k_type = o.v_type = cpu::KvType::kF16;
  auto kv = KvMemory::Create(o);
  ASSERT_TRUE(kv.ok());
  EXPECT_EQ((*kv)->block_bytes(), kBlockBytes / 2);
  EXPECT_EQ((*kv)->num_blocks(), 20u);
  // K and V planes of a block-layer are adjacent and do not overlap.
  EXPECT_EQ((*kv)->VHalf(0, 0) - (*kv)->KHalf(0, 0), ptrdiff_t(kBlockTokens * kKvDim));
  EXPECT_EQ((*kv)->KHalf(1, 0) - (*kv)->KHalf(0, 0), ptrdiff_t(kBlockBytes / 2 / 2));
}

// The same budget buys 2x the blocks in F16 and 64/17 = 3.76x in Q8_0 (34 bytes per 32 values
// against 128), keys and values chosen independently; the planes tile the block exactly.
TEST(KvMemoryTest, TheBudgetBuysBlocksAtEachTypesRealSize) {
  using cpu::KvType;
  KvMemoryOptions o;
  o.num_layers = 3;
  o.kv_dim = 64;
  o.block_tokens = 16;
  const size_t f32_block = 3 * 16 * 2 * 64 * 4;
  o.budget_bytes = 1000 * f32_block;
  struct Case {
    KvType k, v;
    size_t block_bytes;
  };
  const size_t q8_row = 2 * 34;
  for (const Case& c : {Case{KvType::kF32, KvType::kF32, f32_block},
                        Case{KvType::kF16, KvType::kF16, f32_block / 2},
                        Case{KvType::kQ8_0, KvType::kQ8_0, 3 * 16 * 2 * q8_row},
                        Case{KvType::kF16, KvType::kQ8_0, 3 * 16 * (128 + q8_row)}}) {
    o.k_type = c.k;
    o.v_type = c.v;
    auto kv = KvMemory::Create(o);
    ASSERT_TRUE(kv.ok()) << kv.status().ToString();
    const std::string what = std::string(cpu::KvTypeName(c.k)) + "/" + std::string(cpu::KvTypeName(c.v));
    EXPECT_EQ((*kv)->block_bytes(), c.block_bytes) << what;
    EXPECT_EQ(KvBlockBytes(3, 64, 16, c.k, c.v), c.block_bytes) << what;
    EXPECT_EQ((*kv)->num_blocks(), o.budget_bytes / c.block_bytes) << what;
    // K then V plane per layer, back to back: the next layer's K starts where V ends.
    const ptrdiff_t k_plane = 16 * ptrdiff_t(cpu::KvRowBytes(c.k, 64));
    const ptrdiff_t v_plane = 16 * ptrdiff_t(cpu::KvRowBytes(c.v, 64));
    EXPECT_EQ((*kv)->VData(0, 1) - (*kv)->KData(0, 1), k_plane) << what;
    EXPECT_EQ((*kv)->KData(0, 2) - (*kv)->VData(0, 1), v_plane) << what;
    EXPECT_EQ((*kv)->KData(1, 0) - (*kv)->VData(0, 2), v_plane) << what;
  }
  o.k_type = o.v_type = KvType::kF32;
  const size_t f32_blocks = (*KvMemory::Create(o))->num_blocks();
  o.k_type = o.v_type = KvType::kF16;
  EXPECT_EQ((*KvMemory::Create(o))->num_blocks(), 2 * f32_blocks);
  o.k_type = o.v_type = KvType::kQ8_0;
  const size_t q8_blocks = (*KvMemory::Create(o))->num_blocks();
  EXPECT_GE(q8_blocks * 100, f32_blocks * 376);  // 3764 of 1000
  // Q8_0 refuses a kv_dim its 32-value blocks do not tile.
  o.kv_dim = 48;
  auto bad = KvMemory::Create(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("multiple of 32"), std::string::npos) << bad.status().ToString();
}

TEST(KvMemoryTest, HalfPrecisionBlocksSurviveCopyOnWriteAndSwapBitForBit) {
  KvMemoryOptions o = TinyOptions(4, 4);
  o.k_type = o.v_type = cpu::KvType::kF16;
  auto created = KvMemory::Create(o);
  ASSERT_TRUE(created.ok());
  KvMemory& kv = **created;
  auto value = [](size_t pos, size_t l, size_t d, size_t kv_idx) {
    return static_cast<uint16_t>(0x3c00 + pos * 64 + l * 16 + d * 2 + kv_idx);
  };
  auto write = [&](SequenceId seq, size_t pos) {
    KvSlot slot = *kv.Slot(seq, pos);
    for (size_t l = 0; l < kLayers; ++l) {
      for (size_t d = 0; d < kKvDim; ++d) {
        kv.KHalf(slot.block, l)[slot.row * kKvDim + d] = value(pos, l, d, 0);
        kv.VHalf(slot.block, l)[slot.row * kKvDim + d] = value(pos, l, d, 1);
      }
    }
  };
  auto holds = [&](SequenceId seq, size_t pos) {
    KvSlot slot = *kv.Slot(seq, pos);
    for (size_t l = 0; l < kLayers; ++l) {
      for (size_t d = 0; d < kKvDim; ++d) {
        if (kv.KHalf(slot.block, l)[slot.row * kKvDim + d] != value(pos, l, d, 0)) return false;
        if (kv.VHalf(slot.block, l)[slot.row * kKvDim + d] != value(pos, l, d, 1)) return false;
      }
    }
    return true;
  };
  SequenceId a = kv.CreateSequence(0);
  ASSERT_TRUE(kv.Append(a, 10).ok());
  for (size_t p = 0; p < 10; ++p) write(a, p);
  SequenceId b = *kv.Fork(a);
  ASSERT_TRUE(kv.Append(b, 1).ok());  // copies the shared partial block
  write(b, 10);
  ASSERT_TRUE(kv.SwapOut(a).ok());
  ASSERT_TRUE(kv.SwapIn(a).ok());
  for (size_t p = 0; p < 10; ++p) {
    EXPECT_TRUE(holds(a, p)) << p;
    EXPECT_TRUE(holds(b, p)) << p;
  }
  EXPECT_TRUE(holds(b, 10));
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvMemoryTest, RejectsBudgetSmallerThanOneBlock) {
  KvMemoryOptions o = TinyOptions(1);
  o.budget_bytes = kBlockBytes - 1;
  auto kv = KvMemory::Create(o);
  ASSERT_FALSE(kv.ok());
  EXPECT_EQ(kv.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(kv.status().message().find("smaller than one block"), std::string::npos);
  EXPECT_NE(kv.status().message().find(std::to_string(kBlockBytes)), std::string::npos);
}

TEST(KvMemoryTest, RejectsZeroShapeAndOverflowingBlock) {
  for (int field = 0; field < 3; ++field) {
    KvMemoryOptions o = TinyOptions(4);
    if (field == 0) o.num_layers = 0;
    if (field == 1) o.kv_dim = 0;
    if (field == 2) o.block_tokens = 0;
    auto kv = KvMemory::Create(o);
    ASSERT_FALSE(kv.ok()) << field;
    EXPECT_EQ(kv.status().code(), StatusCode::kInvalidArgument);
  }
  KvMemoryOptions o = TinyOptions(4);
  o.kv_dim = size_t{1} << 62;
  auto kv = KvMemory::Create(o);
  ASSERT_FALSE(kv.ok());
  EXPECT_NE(kv.status().message().find("overflows"), std::string::npos);
}

TEST(KvMemoryTest, AppendAllocatesBlocksAsTheSequenceGrows) {
  auto kv = MakeTiny(8);
  SequenceId s = kv->CreateSequence(0);
  EXPECT_EQ(*kv->Length(s), 0u);
  ASSERT_TRUE(kv->Append(s, 1).ok());
  EXPECT_EQ(kv->BlockTable(s)->size(), 1u);
  ASSERT_TRUE(kv->Append(s, 3).ok());  // fills the first block exactly
  EXPECT_EQ(kv->BlockTable(s)->size(), 1u);
  ASSERT_TRUE(kv->Append(s, 5).ok());  // 9 tokens: 3 blocks
  EXPECT_EQ(kv->BlockTable(s)->size(), 3u);
  EXPECT_EQ(*kv->Length(s), 9u);
  KvSlot slot = *kv->Slot(s, 6);
  EXPECT_EQ(slot.block, (*kv->BlockTable(s))[1]);
  EXPECT_EQ(slot.row, 2u);
  KvStats st = kv->Stats();
  EXPECT_EQ(st.used_blocks, 3u);
  EXPECT_EQ(st.free_blocks, 5u);
  EXPECT_EQ(st.stored_tokens, 9u);
  EXPECT_DOUBLE_EQ(st.utilisation, 9.0 / 12.0);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, CountsTheBlocksAnAppendNeedsCopyIncluded) {
  auto kv = MakeTiny(8);
  EXPECT_EQ(kv->BlocksForTokens(0), 0u);
  EXPECT_EQ(kv->BlocksForTokens(4), 1u);
  EXPECT_EQ(kv->BlocksForTokens(5), 2u);
  SequenceId a = kv->CreateSequence(0);
  EXPECT_EQ(*kv->BlocksToAppend(a, 0), 0u);
  EXPECT_EQ(*kv->BlocksToAppend(a, 9), 3u);
  ASSERT_TRUE(kv->Append(a, 6).ok());
  EXPECT_EQ(*kv->BlocksToAppend(a, 2), 0u);  // fits in the partial block
  EXPECT_EQ(*kv->BlocksToAppend(a, 3), 1u);
  SequenceId b = *kv->Fork(a);
  EXPECT_EQ(*kv->BlocksToAppend(b, 2), 1u);  // the shared partial block is copied
  EXPECT_EQ(*kv->BlocksToAppend(b, 3), 2u);
  const size_t before = kv->available_blocks();
  ASSERT_TRUE(kv->Append(b, 3).ok());
  EXPECT_EQ(kv->available_blocks(), before - 2);
  EXPECT_EQ(kv->BlocksToAppend(12345, 1).status().code(), StatusCode::kNotFound);
}

TEST(KvMemoryTest, AppendOutOfBlocksFailsAndChangesNothing) {
  auto kv = MakeTiny(2);
  SequenceId s = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(s, 6).ok());
  Status st = kv->Append(s, 3);  // needs a third block
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("available"), std::string::npos);
  EXPECT_EQ(*kv->Length(s), 6u);
  EXPECT_EQ(kv->BlockTable(s)->size(), 2u);
  EXPECT_TRUE(kv->Append(s, 2).ok());  // what still fits does
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, FreeReturnsEveryBlock) {
  auto kv = MakeTiny(4);
  SequenceId a = kv->CreateSequence(0);
  SequenceId b = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(a, 7).ok());
  ASSERT_TRUE(kv->Append(b, 8).ok());
  EXPECT_EQ(kv->available_blocks(), 0u);
  ASSERT_TRUE(kv->Free(a).ok());
  EXPECT_EQ(kv->Stats().free_blocks, 2u);
  ASSERT_TRUE(kv->Free(b).ok());
  EXPECT_EQ(kv->Stats().free_blocks, 4u);
  EXPECT_EQ(kv->Stats().num_sequences, 0u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, UnknownSequenceAndBadPositionAreErrors) {
  auto kv = MakeTiny(4, 4);
  const SequenceId ghost = 12345;
  EXPECT_EQ(kv->Append(ghost, 1).code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->Fork(ghost).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->Free(ghost).code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->Length(ghost).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->BlockTable(ghost).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->Slot(ghost, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->PrepareWrite(ghost, 0).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->MatchPrefix(ghost, Iota(4)).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->CommitTokens(ghost, Iota(4)).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->SwapOut(ghost).code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->SwapIn(ghost).code(), StatusCode::kNotFound);
  EXPECT_EQ(kv->EstimatePreemption(ghost).status().code(), StatusCode::kNotFound);
  EXPECT_NE(kv->Append(ghost, 1).message().find("12345"), std::string::npos);

  SequenceId s = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(s, 3).ok());
  EXPECT_EQ(kv->Slot(s, 3).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(kv->PrepareWrite(s, 3).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(kv->CommitTokens(s, Iota(4)).status().code(), StatusCode::kOutOfRange);
  ASSERT_TRUE(kv->Free(s).ok());
  EXPECT_EQ(kv->Free(s).code(), StatusCode::kNotFound);  // no double free
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, ForkSharesBlocksAndCopiesTheSharedPartialBlockOnAppend) {
  auto kv = MakeTiny(8);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 6, 100);  // one full block, one partial (2 rows)
  SequenceId b = *kv->Fork(a);
  std::vector<BlockId> table_a(kv->BlockTable(a)->begin(), kv->BlockTable(a)->end());
  EXPECT_TRUE(std::equal(table_a.begin(), table_a.end(), kv->BlockTable(b)->begin()));
  EXPECT_EQ(kv->RefCount(table_a[0]), 2u);
  EXPECT_EQ(kv->RefCount(table_a[1]), 2u);
  EXPECT_EQ(kv->Stats().used_blocks, 2u);

  // b writes its 7th token: its partial block is copied, a's stays untouched.
  AppendStamped(*kv, b, 1, 500);
  std::span<const BlockId> table_b = *kv->BlockTable(b);
  EXPECT_EQ(table_b[0], table_a[0]);  // the full block stays shared
  EXPECT_NE(table_b[1], table_a[1]);
  EXPECT_EQ(kv->RefCount(table_a[0]), 2u);
  EXPECT_EQ(kv->RefCount(table_a[1]), 1u);
  // a writes its own 7th token in place (no longer shared).
  AppendStamped(*kv, a, 1, 900);
  EXPECT_EQ((*kv->BlockTable(a))[1], table_a[1]);
  for (size_t p = 0; p < 6; ++p) {
    EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, p), 100 + p)) << p;
    EXPECT_TRUE(TokenIs(*kv, *kv->Slot(b, p), 100 + p)) << p;
  }
  EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, 6), 906));
  EXPECT_TRUE(TokenIs(*kv, *kv->Slot(b, 6), 506));
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, PrepareWriteCopiesASharedFullBlock) {
  auto kv = MakeTiny(8);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 4, 0);
  SequenceId b = *kv->Fork(a);
  KvSlot slot = *kv->PrepareWrite(b, 1);
  WriteToken(*kv, slot, 77);
  EXPECT_NE(slot.block, (*kv->BlockTable(a))[0]);
  EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, 1), 1));
  EXPECT_TRUE(TokenIs(*kv, *kv->Slot(b, 1), 77));
  EXPECT_TRUE(TokenIs(*kv, *kv->Slot(b, 2), 2));  // the rest of the block was copied
  // Not shared any more: a second write goes in place.
  EXPECT_EQ(kv->PrepareWrite(b, 2)->block, slot.block);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, CopyOnWriteWithNoFreeBlockIsResourceExhausted) {
  auto kv = MakeTiny(2);
  SequenceId a = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(a, 6).ok());
  SequenceId b = *kv->Fork(a);
  // b's 7th token goes into the shared partial block: the copy needs a block, none is left.
  EXPECT_EQ(kv->Append(b, 1).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(kv->PrepareWrite(b, 0).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(*kv->Length(b), 6u);
  ASSERT_TRUE(kv->Free(a).ok());
  EXPECT_TRUE(kv->Append(b, 1).ok());  // the last owner writes in place
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, PrefixIsReusedWithinATenantAndNotAcrossTenants) {
  auto kv = MakeTiny(16);
  const std::vector<TokenId> prompt = Iota(10, 7);  // two full blocks and 2 tokens
  SequenceId a = kv->CreateSequence(/*tenant_salt=*/1);
  AppendStamped(*kv, a, prompt.size(), 0);
  EXPECT_EQ(*kv->CommitTokens(a, prompt), 2u);
  EXPECT_EQ(kv->Stats().cache_entries, 2u);

  SequenceId same_tenant = kv->CreateSequence(1);
  EXPECT_EQ(*kv->MatchPrefix(same_tenant, prompt), 8u);
  EXPECT_EQ((*kv->BlockTable(same_tenant))[0], (*kv->BlockTable(a))[0]);
  EXPECT_EQ((*kv->BlockTable(same_tenant))[1], (*kv->BlockTable(a))[1]);
  EXPECT_EQ(kv->RefCount((*kv->BlockTable(a))[0]), 2u);
  for (size_t p = 0; p < 8; ++p) EXPECT_TRUE(TokenIs(*kv, *kv->Slot(same_tenant, p), p));

  SequenceId other_tenant = kv->CreateSequence(2);
  EXPECT_EQ(*kv->MatchPrefix(other_tenant, prompt), 0u);
  EXPECT_EQ(*kv->Length(other_tenant), 0u);

  KvStats st = kv->Stats();
  EXPECT_EQ(st.prefix_lookups, 2u);
  EXPECT_EQ(st.prefix_hits, 1u);
  EXPECT_EQ(st.prefix_queried_tokens, 16u);
  EXPECT_EQ(st.prefix_hit_tokens, 8u);
  EXPECT_DOUBLE_EQ(st.prefix_hit_rate, 0.5);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, PrefixMatchStopsAtTheFirstDifferentBlock) {
  auto kv = MakeTiny(16);
  std::vector<TokenId> prompt = Iota(12);
  SequenceId a = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(a, 12).ok());
  ASSERT_EQ(*kv->CommitTokens(a, prompt), 3u);
  std::vector<TokenId> other = prompt;
  other[5] = 99;  // second block differs; the third is identical but its parent is not
  SequenceId b = kv->CreateSequence(0);
  EXPECT_EQ(*kv->MatchPrefix(b, other), 4u);
  // A prompt that is only a partial block reuses nothing.
  SequenceId c = kv->CreateSequence(0);
  EXPECT_EQ(*kv->MatchPrefix(c, std::span(prompt).first(3)), 0u);
  // MatchPrefix wants an empty sequence.
  EXPECT_EQ(kv->MatchPrefix(a, prompt).status().code(), StatusCode::kFailedPrecondition);
}

TEST(KvMemoryTest, APrefixLookupCanBeCappedPeekedAndLeftUncounted) {
  auto kv = MakeTiny(16);
  const std::vector<TokenId> prompt = Iota(13);  // three full blocks and a token
  SequenceId a = kv->CreateSequence(5);
  ASSERT_TRUE(kv->Append(a, prompt.size()).ok());
  ASSERT_EQ(*kv->CommitTokens(a, prompt), 3u);
  // A peek attaches nothing and counts nothing; another salt finds nothing.
  EXPECT_EQ(kv->CachedPrefixTokens(5, prompt), 12u);
  EXPECT_EQ(kv->CachedPrefixTokens(6, prompt), 0u);
  EXPECT_EQ(kv->CachedPrefixTokens(5, std::span(prompt).first(7)), 4u);
  EXPECT_EQ(kv->Stats().prefix_lookups, 0u);
  // A cap of 9 tokens reuses two blocks (whole blocks only); the lookup counts the whole query.
  SequenceId b = kv->CreateSequence(5);
  EXPECT_EQ(*kv->MatchPrefix(b, prompt, 9), 8u);
  EXPECT_EQ(kv->RefCount((*kv->BlockTable(a))[2]), 1u);
  KvStats st = kv->Stats();
  EXPECT_EQ(st.prefix_lookups, 1u);
  EXPECT_EQ(st.prefix_queried_tokens, 12u);
  EXPECT_EQ(st.prefix_hit_tokens, 8u);
  // Uncounted: the statistics stay as they were.
  SequenceId c = kv->CreateSequence(5);
  EXPECT_EQ(*kv->MatchPrefix(c, prompt, SIZE_MAX, false), 12u);
  EXPECT_EQ(kv->Stats().prefix_lookups, 1u);
  EXPECT_EQ(kv->Stats().prefix_hit_tokens, 8u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, FreedPrefixStaysCachedAndIsReused) {
  auto kv = MakeTiny(4);
  const std::vector<TokenId> prompt = Iota(8, 3);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 8, 40);
  ASSERT_EQ(*kv->CommitTokens(a, prompt), 2u);
  ASSERT_TRUE(kv->Free(a).ok());
  KvStats st = kv->Stats();
  EXPECT_EQ(st.cached_blocks, 2u);
  EXPECT_EQ(st.free_blocks, 2u);
  EXPECT_EQ(st.used_blocks, 0u);
  SequenceId b = kv->CreateSequence(0);
  EXPECT_EQ(*kv->MatchPrefix(b, prompt), 8u);
  for (size_t p = 0; p < 8; ++p) EXPECT_TRUE(TokenIs(*kv, *kv->Slot(b, p), 40 + p));
  EXPECT_EQ(kv->Stats().cached_blocks, 0u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, EvictsLeastRecentlyUsedCachedBlockOnlyWhenNoFreeBlockIsLeft) {
  auto kv = MakeTiny(3);
  SequenceId a = kv->CreateSequence(0);
  SequenceId b = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(a, 4).ok());
  ASSERT_TRUE(kv->Append(b, 4).ok());
  ASSERT_EQ(*kv->CommitTokens(a, Iota(4, 0)), 1u);
  ASSERT_EQ(*kv->CommitTokens(b, Iota(4, 100)), 1u);
  ASSERT_TRUE(kv->Free(a).ok());  // a's block released first: least recently used
  ASSERT_TRUE(kv->Free(b).ok());
  EXPECT_EQ(kv->Stats().cached_blocks, 2u);

  SequenceId c = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(c, 4).ok());  // takes the free block, evicts nothing
  EXPECT_EQ(kv->Stats().cached_blocks, 2u);
  EXPECT_EQ(kv->Stats().evicted_blocks, 0u);
  ASSERT_TRUE(kv->Append(c, 1).ok());  // must evict: a's block goes
  EXPECT_EQ(kv->Stats().evicted_blocks, 1u);
  EXPECT_EQ(*kv->MatchPrefix(kv->CreateSequence(0), Iota(4, 0)), 0u);
  EXPECT_EQ(*kv->MatchPrefix(kv->CreateSequence(0), Iota(4, 100)), 4u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, EvictCachedEmptiesTheCacheInLruOrder) {
  auto kv = MakeTiny(4);
  for (TokenId first : {0, 50, 90}) {
    SequenceId s = kv->CreateSequence(0);
    ASSERT_TRUE(kv->Append(s, 4).ok());
    ASSERT_EQ(*kv->CommitTokens(s, Iota(4, first)), 1u);
    ASSERT_TRUE(kv->Free(s).ok());
  }
  EXPECT_EQ(kv->EvictCached(1), 1u);  // the oldest: tokens 0..3
  EXPECT_EQ(*kv->MatchPrefix(kv->CreateSequence(0), Iota(4, 0)), 0u);
  SequenceId holder = kv->CreateSequence(0);
  EXPECT_EQ(*kv->MatchPrefix(holder, Iota(4, 90)), 4u);
  EXPECT_EQ(kv->EvictCached(100), 1u);  // 50..53 only: 90..93 is referenced
  EXPECT_EQ(kv->Stats().cache_entries, 1u);
  EXPECT_EQ(kv->Stats().free_blocks, 3u);
  ASSERT_TRUE(kv->Free(holder).ok());
  EXPECT_EQ(kv->EvictCached(100), 1u);
  EXPECT_EQ(kv->Stats().cache_entries, 0u);
  EXPECT_EQ(kv->Stats().free_blocks, 4u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, ReferencedCachedBlocksAreNeverEvicted) {
  auto kv = MakeTiny(2);
  SequenceId a = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(a, 4).ok());
  ASSERT_EQ(*kv->CommitTokens(a, Iota(4)), 1u);
  EXPECT_EQ(kv->EvictCached(10), 0u);
  SequenceId b = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(b, 4).ok());
  EXPECT_EQ(kv->Append(b, 1).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(kv->Stats().cache_entries, 1u);
}

TEST(KvMemoryTest, DuplicatePrefixIsRegisteredOnceAndReplacesAnEvictedOriginal) {
  auto kv = MakeTiny(4);
  const std::vector<TokenId> prompt = Iota(4, 20);
  SequenceId a = kv->CreateSequence(0);
  SequenceId b = kv->CreateSequence(0);
  AppendStamped(*kv, a, 4, 100);
  AppendStamped(*kv, b, 4, 200);  // the same tokens, computed separately
  EXPECT_EQ(*kv->CommitTokens(a, prompt), 1u);
  EXPECT_EQ(*kv->CommitTokens(b, prompt), 0u);  // a's block already holds this prefix
  EXPECT_EQ(kv->Stats().cache_entries, 1u);
  ASSERT_TRUE(kv->Free(a).ok());
  EXPECT_EQ(kv->EvictCached(1), 1u);  // a's copy leaves the cache
  EXPECT_EQ(*kv->CommitTokens(b, prompt), 1u);  // b's copy takes its place
  SequenceId c = kv->CreateSequence(0);
  EXPECT_EQ(*kv->MatchPrefix(c, prompt), 4u);
  for (size_t p = 0; p < 4; ++p) EXPECT_TRUE(TokenIs(*kv, *kv->Slot(c, p), 200 + p));
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, RewritingACachedBlockUnregistersIt) {
  auto kv = MakeTiny(4);
  SequenceId a = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(a, 4).ok());
  ASSERT_EQ(*kv->CommitTokens(a, Iota(4)), 1u);
  ASSERT_TRUE(kv->PrepareWrite(a, 2).ok());
  EXPECT_EQ(kv->Stats().cache_entries, 0u);
  EXPECT_EQ(*kv->MatchPrefix(kv->CreateSequence(0), Iota(4)), 0u);
  // Committing again registers the rewritten block.
  EXPECT_EQ(*kv->CommitTokens(a, Iota(4)), 1u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, SwapOutAndInRestoresContentsExactly) {
  auto kv = MakeTiny(4, 4);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 7, 10);
  PreemptionCost cost = *kv->EstimatePreemption(a);
  EXPECT_EQ(cost.num_blocks, 2u);
  EXPECT_EQ(cost.freed_blocks, 2u);
  EXPECT_EQ(cost.swap_bytes, 2 * kBlockBytes);
  EXPECT_EQ(cost.recompute_tokens, 7u);

  ASSERT_TRUE(kv->SwapOut(a).ok());
  EXPECT_TRUE(*kv->IsSwappedOut(a));
  KvStats st = kv->Stats();
  EXPECT_EQ(st.swapped_blocks, 2u);
  EXPECT_EQ(st.free_blocks, 4u);
  EXPECT_EQ(kv->Append(a, 1).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(kv->Slot(a, 0).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(kv->SwapOut(a).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(kv->CheckInvariants().ok());

  // Someone else overwrites the freed blocks meanwhile.
  SequenceId b = kv->CreateSequence(0);
  AppendStamped(*kv, b, 16, 1000);
  EXPECT_EQ(kv->SwapIn(a).code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(*kv->IsSwappedOut(a));
  ASSERT_TRUE(kv->Free(b).ok());

  ASSERT_TRUE(kv->SwapIn(a).ok());
  EXPECT_FALSE(*kv->IsSwappedOut(a));
  EXPECT_EQ(kv->SwapIn(a).code(), StatusCode::kFailedPrecondition);
  for (size_t p = 0; p < 7; ++p) EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, p), 10 + p)) << p;
  AppendStamped(*kv, a, 1, 10);  // and it keeps growing
  EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, 7), 17));
  EXPECT_EQ(kv->Stats().swapped_blocks, 0u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, SwapNeedsSwapSpace) {
  auto no_swap = MakeTiny(4);
  SequenceId a = no_swap->CreateSequence(0);
  ASSERT_TRUE(no_swap->Append(a, 1).ok());
  EXPECT_EQ(no_swap->SwapOut(a).code(), StatusCode::kFailedPrecondition);

  auto small_swap = MakeTiny(4, 1);
  SequenceId b = small_swap->CreateSequence(0);
  ASSERT_TRUE(small_swap->Append(b, 5).ok());
  EXPECT_EQ(small_swap->SwapOut(b).code(), StatusCode::kResourceExhausted);
  EXPECT_FALSE(*small_swap->IsSwappedOut(b));
  EXPECT_EQ(small_swap->Stats().used_blocks, 2u);
  EXPECT_TRUE(small_swap->CheckInvariants().ok());
}

TEST(KvMemoryTest, SwappingOneForkLeavesTheOtherIntact) {
  auto kv = MakeTiny(6, 6);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 6, 0);
  SequenceId b = *kv->Fork(a);
  EXPECT_EQ(kv->EstimatePreemption(b)->freed_blocks, 0u);  // everything is shared
  ASSERT_TRUE(kv->SwapOut(b).ok());
  EXPECT_EQ(kv->Stats().used_blocks, 2u);
  AppendStamped(*kv, a, 1, 300);  // a's partial block is no longer shared: written in place
  ASSERT_TRUE(kv->SwapIn(b).ok());
  for (size_t p = 0; p < 6; ++p) {
    EXPECT_TRUE(TokenIs(*kv, *kv->Slot(b, p), p));
    EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, p), p));
  }
  EXPECT_EQ(*kv->Length(b), 6u);
  EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, 6), 306));
  ASSERT_TRUE(kv->Free(a).ok());
  ASSERT_TRUE(kv->Free(b).ok());
  EXPECT_EQ(kv->Stats().free_blocks, 6u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, FreeingASwappedSequenceReleasesItsSwapSlots) {
  auto kv = MakeTiny(4, 2);
  SequenceId a = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(a, 8).ok());
  ASSERT_TRUE(kv->SwapOut(a).ok());
  ASSERT_TRUE(kv->Free(a).ok());
  EXPECT_EQ(kv->Stats().swapped_blocks, 0u);
  SequenceId b = kv->CreateSequence(0);
  ASSERT_TRUE(kv->Append(b, 8).ok());
  EXPECT_TRUE(kv->SwapOut(b).ok());  // the slots are reusable
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, FileSwapRoundTripsAndLeavesNoFileBehind) {
  KvMemoryOptions o = TinyOptions(4, 4);
  o.swap_file_path = ::testing::TempDir() + "/kv_swap_roundtrip";
  auto created = KvMemory::Create(o);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  KvMemory& kv = **created;
  EXPECT_NE(::access(o.swap_file_path.c_str(), F_OK), 0);  // unlinked at once
  SequenceId a = kv.CreateSequence(0);
  SequenceId b = kv.CreateSequence(0);
  AppendStamped(kv, a, 7, 10);
  AppendStamped(kv, b, 5, 50);
  ASSERT_TRUE(kv.SwapOut(a).ok());
  ASSERT_TRUE(kv.SwapOut(b).ok());
  SequenceId c = kv.CreateSequence(0);
  AppendStamped(kv, c, 16, 900);  // overwrite every block
  ASSERT_TRUE(kv.Free(c).ok());
  ASSERT_TRUE(kv.SwapIn(b).ok());
  ASSERT_TRUE(kv.SwapIn(a).ok());
  for (size_t p = 0; p < 7; ++p) EXPECT_TRUE(TokenIs(kv, *kv.Slot(a, p), 10 + p)) << p;
  for (size_t p = 0; p < 5; ++p) EXPECT_TRUE(TokenIs(kv, *kv.Slot(b, p), 50 + p)) << p;
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvMemoryTest, UnopenableSwapFileIsNotFoundNamingThePath) {
  KvMemoryOptions o = TinyOptions(4, 4);
  o.swap_file_path = ::testing::TempDir() + "/no/such/dir/kv_swap";
  auto kv = KvMemory::Create(o);
  ASSERT_FALSE(kv.ok());
  EXPECT_EQ(kv.status().code(), StatusCode::kNotFound);  // util/file.h's errno rule
  EXPECT_NE(kv.status().message().find(o.swap_file_path), std::string::npos);
}

TEST(KvMemoryTest, FullSwapDiskFailsSwapOutAndChangesNothing) {
  if (::access("/dev/full", W_OK) != 0) GTEST_SKIP() << "/dev/full is not writable here";
  KvMemoryOptions o = TinyOptions(4, 4);
  o.swap_file_path = "/dev/full";  // every write fails with ENOSPC
  auto created = KvMemory::Create(o);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  KvMemory& kv = **created;
  SequenceId a = kv.CreateSequence(0);
  AppendStamped(kv, a, 6, 3);
  Status st = kv.SwapOut(a);
  EXPECT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("disk full writing '/dev/full'"), std::string::npos) << st.message();
  EXPECT_FALSE(*kv.IsSwappedOut(a));
  EXPECT_EQ(kv.Stats().swapped_blocks, 0u);
  for (size_t p = 0; p < 6; ++p) EXPECT_TRUE(TokenIs(kv, *kv.Slot(a, p), 3 + p));
  EXPECT_TRUE(kv.CheckInvariants().ok());
}

TEST(KvMemoryTest, SwapCostModelPicksTheCheaperSide) {
  PreemptionCost cost;
  cost.swap_bytes = 1'000'000;
  cost.recompute_tokens = 100;
  // Swap: 2 MB at 1 GB/s = 2 ms. Recompute: 100 tokens at 1000 tok/s = 100 ms.
  EXPECT_TRUE(SwapIsCheaper(cost, 1e9, 1000));
  // Recompute: 100 tokens at 1e6 tok/s = 0.1 ms.
  EXPECT_FALSE(SwapIsCheaper(cost, 1e9, 1e6));
}

// ---- Dropping blocks that fell out of a sliding window ----------------------------------------

TEST(KvMemoryTest, DropBeforeReleasesWholeBlocksAndKeepsPositions) {
  auto kv = MakeTiny(4);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 10, 20);  // blocks of 4, 4, 2 tokens
  EXPECT_EQ(*kv->DropBefore(a, 7), 1u);  // positions 0..3 only: 4..7 reach 7
  EXPECT_EQ(*kv->DropBefore(a, 7), 0u);
  std::span<const BlockId> table = *kv->BlockTable(a);
  ASSERT_EQ(table.size(), 3u);
  EXPECT_EQ(table[0], kDroppedBlock);
  EXPECT_EQ(*kv->NumDropped(a), 1u);
  EXPECT_EQ(kv->Slot(a, 3).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(kv->PrepareWrite(a, 0).status().code(), StatusCode::kFailedPrecondition);
  for (size_t p = 4; p < 10; ++p) EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, p), 20 + p)) << p;
  KvStats st = kv->Stats();
  EXPECT_EQ(st.used_blocks, 2u);
  EXPECT_EQ(st.free_blocks, 2u);
  EXPECT_EQ(st.dropped_blocks, 1u);
  EXPECT_EQ(st.stored_tokens, 6u);
  // Beyond the length is clamped to it, and the partial last block stays.
  EXPECT_EQ(*kv->DropBefore(a, 1000), 1u);
  EXPECT_EQ(*kv->NumDropped(a), 2u);
  EXPECT_EQ(kv->Stats().used_blocks, 1u);
  // The sequence grows on at the same positions.
  EXPECT_EQ(*kv->BlocksToAppend(a, 6), 1u);
  AppendStamped(*kv, a, 6, 20);
  for (size_t p = 8; p < 16; ++p) EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, p), 20 + p)) << p;
  EXPECT_EQ(kv->BlockTable(a)->size(), 4u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
  ASSERT_TRUE(kv->Free(a).ok());
  EXPECT_EQ(kv->Stats().free_blocks, 4u);
  EXPECT_EQ(kv->DropBefore(a, 4).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, ADroppedCommittedBlockStaysCachedAndItsPrefixIsReused) {
  auto kv = MakeTiny(6);
  const std::vector<TokenId> prompt = Iota(17, 5);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 12, 30);
  ASSERT_EQ(*kv->CommitTokens(a, std::span(prompt).first(12)), 3u);
  EXPECT_EQ(*kv->DropBefore(a, 9), 2u);
  EXPECT_EQ(kv->Stats().cached_blocks, 2u);  // unreferenced, still matchable
  // The chain goes on past the dropped blocks: block 3 hashes over tokens 0..15.
  AppendStamped(*kv, a, 4, 30);
  ASSERT_EQ(*kv->CommitTokens(a, std::span(prompt).first(16)), 1u);
  SequenceId b = kv->CreateSequence(0);
  EXPECT_EQ(*kv->MatchPrefix(b, prompt), 16u);
  for (size_t p = 0; p < 16; ++p) EXPECT_TRUE(TokenIs(*kv, *kv->Slot(b, p), 30 + p)) << p;
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, APrefixIsNeverMatchedAcrossADroppedBlockThatLeftTheCache) {
  auto kv = MakeTiny(6);
  const std::vector<TokenId> prompt = Iota(17, 5);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 8, 30);
  // Block 0 drops before it is committed: it is never published, so the blocks after it,
  // registered by their chain, are unreachable.
  EXPECT_EQ(*kv->DropBefore(a, 4), 1u);
  AppendStamped(*kv, a, 8, 30);
  ASSERT_EQ(*kv->CommitTokens(a, std::span(prompt).first(16)), 3u);
  SequenceId b = kv->CreateSequence(0);
  EXPECT_EQ(*kv->MatchPrefix(b, prompt), 0u);
  // Published, dropped, then evicted: the same.
  ASSERT_TRUE(kv->Free(a).ok());
  ASSERT_TRUE(kv->Free(b).ok());
  kv->EvictCached(100);
  SequenceId c = kv->CreateSequence(0);
  AppendStamped(*kv, c, 16, 60);
  ASSERT_EQ(*kv->CommitTokens(c, std::span(prompt).first(16)), 4u);
  EXPECT_EQ(*kv->DropBefore(c, 8), 2u);
  EXPECT_EQ(kv->EvictCached(1), 1u);  // block 0, the least recently used
  SequenceId d = kv->CreateSequence(0);
  EXPECT_EQ(*kv->MatchPrefix(d, prompt), 0u);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, SwappingADroppedSequenceMovesOnlyItsUndroppedBlocks) {
  auto kv = MakeTiny(4, 4);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 10, 70);
  EXPECT_EQ(*kv->DropBefore(a, 8), 2u);
  const PreemptionCost cost = *kv->EstimatePreemption(a);
  EXPECT_EQ(cost.num_blocks, 1u);
  EXPECT_EQ(cost.swap_bytes, kBlockBytes);
  EXPECT_EQ(cost.recompute_tokens, 10u);
  ASSERT_TRUE(kv->SwapOut(a).ok());
  EXPECT_EQ(kv->Stats().swapped_blocks, 1u);
  EXPECT_EQ(kv->DropBefore(a, 10).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(kv->CheckInvariants().ok());
  SequenceId b = kv->CreateSequence(0);
  AppendStamped(*kv, b, 8, 500);  // reuses the freed blocks
  ASSERT_TRUE(kv->SwapIn(a).ok());
  EXPECT_EQ(*kv->NumDropped(a), 2u);
  EXPECT_EQ(kv->BlockTable(a)->size(), 3u);
  EXPECT_EQ(kv->Slot(a, 7).status().code(), StatusCode::kFailedPrecondition);
  for (size_t p = 8; p < 10; ++p) EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, p), 70 + p)) << p;
  AppendStamped(*kv, a, 3, 70);
  EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, 12), 82));
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

TEST(KvMemoryTest, AForkOfADroppedSequenceSharesOnlyWhatIsLeft) {
  auto kv = MakeTiny(4);
  SequenceId a = kv->CreateSequence(0);
  AppendStamped(*kv, a, 8, 90);
  EXPECT_EQ(*kv->DropBefore(a, 5), 1u);
  SequenceId b = *kv->Fork(a);
  EXPECT_EQ(*kv->NumDropped(b), 1u);
  const BlockId shared = (*kv->BlockTable(a))[1];
  EXPECT_EQ(kv->RefCount(shared), 2u);
  EXPECT_EQ(*kv->DropBefore(b, 8), 1u);  // b lets go; a still holds it
  EXPECT_EQ(kv->RefCount(shared), 1u);
  EXPECT_TRUE(TokenIs(*kv, *kv->Slot(a, 4), 94));
  ASSERT_TRUE(kv->Free(a).ok());
  EXPECT_EQ(kv->StateOf(shared), BlockState::kFree);
  EXPECT_TRUE(kv->CheckInvariants().ok());
}

}  // namespace
}  // namespace llmasos::kernel
