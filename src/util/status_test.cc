#include "util/status.h"

#include <gtest/gtest.h>

#include "util/checked_math.h"

namespace llmasos {
namespace {

StatusOr<int> ParsePositive(int x) {
  if (x <= 0) return InvalidArgumentError("x must be positive, got " + std::to_string(x));
  return x;
}

StatusOr<int> Doubled(int x) {
  ASSIGN_OR_RETURN(int v, ParsePositive(x));
  return 2 * v;
}

TEST(StatusTest, ErrorCarriesCodeAndMessage) {
  Status s = DataLossError("tensor 'a' runs past the end");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_EQ(s.ToString(), "DATA_LOSS: tensor 'a' runs past the end");
  EXPECT_EQ(s.Annotate("loading m.gguf").message(), "loading m.gguf: tensor 'a' runs past the end");
}

TEST(StatusTest, AssignOrReturnPropagatesErrorAndValue) {
  EXPECT_EQ(*Doubled(4), 8);
  StatusOr<int> bad = Doubled(-1);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("-1"), std::string::npos);
}

TEST(CheckedMathTest, DetectsOverflow) {
  EXPECT_FALSE(CheckedMul(1ull << 40, 1ull << 40).has_value());
  EXPECT_EQ(*CheckedMul(3, 5), 15u);
  EXPECT_FALSE(CheckedAdd(~0ull, 1).has_value());
  EXPECT_EQ(*CheckedAlignUp(33, 32), 64u);
  EXPECT_EQ(*CheckedAlignUp(64, 32), 64u);
  EXPECT_FALSE(CheckedAlignUp(~0ull - 2, 32).has_value());
}

}  // namespace
}  // namespace llmasos
