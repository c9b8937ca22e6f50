#include "util/hash64.h"

#include <vector>

#include <gtest/gtest.h>

namespace llmasos {
namespace {

std::vector<uint8_t> Bytes(size_t n, size_t mod) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i % mod);
  return v;
}

// Expected values from the reference implementation (the `xxhash` Python package, xxh64).
TEST(Hash64Test, MatchesTheReferenceXxh64) {
  EXPECT_EQ(Hash64({}), 0xef46db3751d8e999ull);
  const uint8_t a = 'a';
  EXPECT_EQ(Hash64({&a, 1}), 0xd24ec4f1a98c6e5bull);
  const std::vector<uint8_t> hundred = Bytes(100, 256);
  EXPECT_EQ(Hash64(hundred), 0x6ac1e58032166597ull);
  EXPECT_EQ(Hash64(hundred, 42), 0x819d2b726001d507ull);
  EXPECT_EQ(Hash64(Bytes(1000, 251), 7), 0xd6028c10f9f0fbfbull);
}

TEST(Hash64Test, AnyFlippedBitChangesTheHash) {
  std::vector<uint8_t> v = Bytes(77, 13);
  const uint64_t h = Hash64(v);
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] ^= 0x10;
    EXPECT_NE(Hash64(v), h) << "byte " << i;
    v[i] ^= 0x10;
  }
}

}  // namespace
}  // namespace llmasos
