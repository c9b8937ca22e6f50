#include <gtest/gtest.h>

#include <algorithm>
#include <random>
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

// Where the whole text is cut: before the stop that completes first (the longest on a tie);
// npos when no stop occurs.
size_t ReferenceCut(const std::string& text, const std::vector<std::string>& stops) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t longest = 0;
    for (const std::string& s : stops) {
      if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0) {
        longest = std::max(longest, s.size());
      }
    }
    if (longest > 0) return end - longest;
  }
  return std::string::npos;
}

TEST(StopMatcherTest, TheStopThatCompletesFirstWinsHoweverTheTextIsSplit) {
  // "cbbc" starts before "b" but "b" completes first.
  EXPECT_EQ(PushAll({"cbbc", "b"}, {"xcbbc"}).emitted, "xc");
  EXPECT_EQ(PushAll({"cbbc", "b"}, {"x", "c", "b", "b", "c"}).emitted, "xc");
}

// Property: for random text, stops and split points, what the matcher emits equals the text
// up to the reference cut (all of it when no stop occurs), and it stops exactly when a stop
// occurs.
TEST(StopMatcherTest, RandomSplitsAgreeWithSearchingTheWholeText) {
  std::mt19937 rng(1234);
  const std::string alphabet = "abc";
  auto random_string = [&](size_t max_len) {
    std::string s(1 + rng() % max_len, ' ');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    return s;
  };
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> stops;
    for (size_t i = 0, n = 1 + rng() % 3; i < n; ++i) stops.push_back(random_string(4));
    const std::string text = random_string(24);
    const size_t first = ReferenceCut(text, stops);

    std::vector<std::string> pieces;
    for (size_t pos = 0; pos < text.size();) {
      const size_t len = std::min<size_t>(rng() % 5, text.size() - pos);  // empty pieces too
      pieces.push_back(text.substr(pos, len));
      pos += len;
    }
    Emitted r = PushAll(stops, pieces);
    ASSERT_EQ(r.stopped, first != std::string::npos) << "text " << text;
    ASSERT_EQ(r.emitted, text.substr(0, first)) << "text " << text << " stops " << testing::PrintToString(stops) << " pieces " << testing::PrintToString(pieces);
  }
}

}  // namespace
}  // namespace llmasos::sampling
