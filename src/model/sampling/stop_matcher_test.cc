#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "model/sampling/sampler.h"

namespace llmasos::sampling {
namespace {

// Pushes the pieces in order and returns everything emitted (Flush included when no stop
// matched), plus whether it stopped.
struct Emitted {
  std::string emitted;
  bool stopped = false;
};

Emitted PushAll(std::vector<std::string> stops, const std::vector<std::string>& pieces) {
  StopMatcher m(std::move(stops));
  Emitted r;
  for (const std::string& p : pieces) {
    r.emitted += m.Push(p);
    if (m.stopped()) break;
  }
  r.stopped = m.stopped();
  if (!r.stopped) r.emitted += m.Flush();
  return r;
}

TEST(StopMatcherTest, PassesTextThroughWithoutStops) {
  Emitted r = PushAll({}, {"hello", " world"});
  EXPECT_EQ(r.emitted, "hello world");
  EXPECT_FALSE(r.stopped);
}

TEST(StopMatcherTest, StopsAtAStopInsideOnePush) {
  StopMatcher m({"<|im_end|>"});
  EXPECT_EQ(m.Push("Hi there<|im_end|>trailing"), "Hi there");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.Push("more"), "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcherTest, HoldsBackAPossibleStartAcrossPushes) {
  StopMatcher m({"<|im_end|>"});
  EXPECT_EQ(m.Push("Hi <|im"), "Hi ");  // "<|im" might start the stop string
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.Push("_e"), "");
  EXPECT_EQ(m.Push("nd|>"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, ReleasesHeldTextWhenItTurnsOutNotToBeAStop) {
  StopMatcher m({"<|im_end|>"});
  EXPECT_EQ(m.Push("a <|i"), "a ");
  EXPECT_EQ(m.Push("x"), "<|ix");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcherTest, StopSplitIntoSingleBytes) {
  std::vector<std::string> pieces;
  for (char c : std::string("abc STOP def")) pieces.push_back(std::string(1, c));
  Emitted r = PushAll({"STOP"}, pieces);
  EXPECT_EQ(r.emitted, "abc ");
  EXPECT_TRUE(r.stopped);
}

TEST(StopMatcherTest, OverlappingPrefixesStopAtTheShorter) {
  // "ab" is a prefix of "abc": "ab" completes first, so the text stops there.
  Emitted r = PushAll({"abc", "ab"}, {"xa", "bc"});
  EXPECT_EQ(r.emitted, "x");
  EXPECT_TRUE(r.stopped);
}

TEST(StopMatcherTest, HoldsTheLongestPossiblePrefix) {
  StopMatcher m({"abc", "bcd"});
  EXPECT_EQ(m.Push("zab"), "z");  // "ab" could start "abc"
  EXPECT_EQ(m.Push("c"), "");     // "abc" completes
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcherTest, SelfOverlappingStop) {
  // "aab" inside "aaab": the held "aa" must not hide the match that starts one byte later.
  Emitted r = PushAll({"aab"}, {"xa", "a", "a", "b", "y"});
  EXPECT_EQ(r.emitted, "xa");
  EXPECT_TRUE(r.stopped);
}

TEST(StopMatcherTest, EarliestOfSeveralStopsWins) {
  Emitted r = PushAll({"END", "\n\n"}, {"one\n\ntwo END"});
  EXPECT_EQ(r.emitted, "one");
  Emitted r2 = PushAll({"END", "\n\n"}, {"one END\n\n"});
  EXPECT_EQ(r2.emitted, "one ");
}

TEST(StopMatcherTest, FlushReturnsHeldTextWhenNothingMatched) {
  StopMatcher m({"</s>"});
  EXPECT_EQ(m.Push("done </"), "done ");
  EXPECT_EQ(m.Flush(), "</");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcherTest, UnicodeStopsNeverSplitACharacter) {
  // "é" is C3 A9; "è" is C3 A8: they share the first byte.
  StopMatcher m({"é!"});
  EXPECT_EQ(m.Push("caf"), "caf");
  EXPECT_EQ(m.Push("è"), "è");  // C3 A8 cannot start "é!"
  EXPECT_EQ(m.Push("é"), "");    // could be the start
  EXPECT_EQ(m.Push("é"), "é");   // the first one was not; the second is held
  EXPECT_EQ(m.Push("!"), "");
  EXPECT_TRUE(m.stopped());

  Emitted r = PushAll({"終わり"}, {"日本語", "の終", "わり", "後"});
  EXPECT_EQ(r.emitted, "日本語の");
  EXPECT_TRUE(r.stopped);
}

TEST(StopMatcherTest, EmptyStopStringsAreIgnored) {
  Emitted r = PushAll({"", "x"}, {"abc"});
  EXPECT_EQ(r.emitted, "abc");
  EXPECT_FALSE(r.stopped);
}

}  // namespace
}  // namespace llmasos::sampling
