#include "util/utf8.h"

#include <gtest/gtest.h>

namespace llmasos {
namespace {

std::string Fffd(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += kReplacementChar;
  return s;
}

TEST(Utf8Test, ScanClassifiesValidInvalidAndIncompleteSequences) {
  EXPECT_EQ(ScanUtf8("a").kind, Utf8Kind::kValid);
  EXPECT_EQ(ScanUtf8("\xC3\xA9").length, 2u);
  EXPECT_EQ(ScanUtf8("\xF0\x9F\x98\x80").length, 4u);
  EXPECT_EQ(ScanUtf8("\xF0\x9F\x98").kind, Utf8Kind::kIncomplete);
  EXPECT_EQ(ScanUtf8("\xF0\x9F\x98").length, 3u);
  EXPECT_EQ(ScanUtf8("\x80").kind, Utf8Kind::kInvalid);
  EXPECT_EQ(ScanUtf8("\xC0\xAF").length, 1u);            // overlong lead
  EXPECT_EQ(ScanUtf8("\xE0\x80\x80").length, 1u);        // overlong: E0 needs A0..BF next
  EXPECT_EQ(ScanUtf8("\xED\xA0\x80").kind, Utf8Kind::kInvalid);  // surrogate
  EXPECT_EQ(ScanUtf8("\xE2\x82\x41").length, 2u);        // maximal subpart E2 82
}

// Expected strings are what Python's bytes.decode("utf-8", errors="replace") returns.
TEST(Utf8Test, SanitizeReplacesEachMaximalSubpartOnceLikePython) {
  EXPECT_EQ(SanitizeUtf8("\xE2\x82"), Fffd(1));
  EXPECT_EQ(SanitizeUtf8("\xF0\x80\x80"), Fffd(3));
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), Fffd(3));
  EXPECT_EQ(SanitizeUtf8("\xC0\xAF"), Fffd(2));
  EXPECT_EQ(SanitizeUtf8("\xE2\x82" "A"), Fffd(1) + "A");
  EXPECT_EQ(SanitizeUtf8("\xF4\x90\x80\x80"), Fffd(4));
  EXPECT_EQ(SanitizeUtf8("ok \xF0\x9F\x98"), "ok " + Fffd(1));
  EXPECT_EQ(SanitizeUtf8("h\xC3\xA9llo"), "h\xC3\xA9llo");
}

TEST(Utf8Test, ValidityMatchesSanitizeBeingTheIdentity) {
  for (std::string_view s : {"", "abc", "\xE4\xBD\xA0\xE5\xA5\xBD", "\xFF", "a\xC3", "\xF4\x8F\xBF\xBF"}) {
    EXPECT_EQ(IsValidUtf8(s), SanitizeUtf8(s) == s) << s;
  }
}

TEST(Utf8Test, AppendAndDecodeRoundTripEveryLength) {
  for (uint32_t cp : {0x41u, 0xE9u, 0x4F60u, 0x1F600u, 0x10FFFFu}) {
    std::string s;
    AppendUtf8(cp, &s);
    Utf8Step step = ScanUtf8(s);
    ASSERT_EQ(step.kind, Utf8Kind::kValid);
    ASSERT_EQ(step.length, s.size());
    EXPECT_EQ(DecodeUtf8(s, step.length), cp);
  }
}

}  // namespace
}  // namespace llmasos
