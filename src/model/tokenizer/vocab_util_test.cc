#include "model/tokenizer/vocab_util.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace llmasos::tokenizer {
namespace {

TEST(TokenIndexTest, FindsEveryTokenAndTheFirstOfADuplicateText) {
  const std::vector<std::string> tokens = {"a", "b", "ab", "", "a", "\xC4\xA0the", "b"};
  const TokenIndex index(tokens);
  EXPECT_EQ(index.Find("a"), 0);
  EXPECT_EQ(index.Find("b"), 1);
  EXPECT_EQ(index.Find("ab"), 2);
  EXPECT_EQ(index.Find(""), 3);
  EXPECT_EQ(index.Find("\xC4\xA0the"), 5);
  EXPECT_EQ(index.Find("abc"), kNoToken);
  EXPECT_EQ(index.Find("A"), kNoToken);
  EXPECT_EQ(index.Find("ba"), kNoToken);
}

TEST(TokenIndexTest, KeepsOnlyTheTokensItIsAskedTo) {
  const std::vector<std::string> tokens = {"x", "y", "x", "z"};
  const TokenIndex index(tokens, [](TokenId id) { return id != 0 && id != 3; });
  EXPECT_EQ(index.Find("x"), 2);  // 0 is left out, so the duplicate at 2 is the one
  EXPECT_EQ(index.Find("y"), 1);
  EXPECT_EQ(index.Find("z"), kNoToken);
}

// Large enough that many texts share a slot's neighbourhood and probing wraps around the
// table: every one is found with its own id, and near-misses are not.
TEST(TokenIndexTest, FindsEachOfManyRandomTexts) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> len(1, 12), chr('a', 'h');
  std::vector<std::string> tokens;
  for (int i = 0; i < 50000; ++i) {
    std::string t;
    for (int n = len(rng); n > 0; --n) t.push_back(static_cast<char>(chr(rng)));
    tokens.push_back(t);
  }
  const TokenIndex index(tokens);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const TokenId found = index.Find(tokens[i]);
    ASSERT_NE(found, kNoToken) << tokens[i];
    ASSERT_EQ(tokens[static_cast<size_t>(found)], tokens[i]);
    ASSERT_LE(found, static_cast<TokenId>(i));  // the first of equal texts
    ASSERT_EQ(index.Find(tokens[i] + "z"), kNoToken);  // 'z' is outside the alphabet
  }
}

Vocab MergeVocab(std::vector<std::string> merges) {
  Vocab v;
  v.model = "gpt2";
  v.tokens = {"h", "e", "l", "he", "ll", "hell"};
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  v.merges = std::move(merges);
  return v;
}

TEST(ResolveMergesTest, GivesTheIdsOfBothHalvesAndTheirJoinInRankOrder) {
  const Vocab v = MergeVocab({"h e", "l l", "he ll"});
  auto merges = ResolveMerges(v, TokenIndex(v.tokens));
  ASSERT_TRUE(merges.ok()) << merges.status().ToString();
  ASSERT_EQ(merges->size(), 3u);
  EXPECT_EQ((*merges)[0].left, 0);
  EXPECT_EQ((*merges)[0].right, 1);
  EXPECT_EQ((*merges)[0].result, 3);
  EXPECT_EQ((*merges)[1].result, 4);
  EXPECT_EQ((*merges)[2].left, 3);
  EXPECT_EQ((*merges)[2].right, 4);
  EXPECT_EQ((*merges)[2].result, 5);
}

TEST(ResolveMergesTest, NamesTheFirstBadMergeAndWhatIsWrong) {
  struct Case {
    std::vector<std::string> merges;
    std::string expected;
  };
  const Case cases[] = {
      {{"h e", "hel"}, "tokenizer.ggml.merges[1] 'hel' is not two tokens separated by a space"},
      {{"h e", "q e"}, "tokenizer.ggml.merges[1] 'q e': 'q' is not in tokenizer.ggml.tokens"},
      {{"h q"}, "tokenizer.ggml.merges[0] 'h q': 'q' is not in tokenizer.ggml.tokens"},
      {{"e h"}, "tokenizer.ggml.merges[0] 'e h': the merged token 'eh' is not in tokenizer.ggml.tokens"},
  };
  for (const Case& c : cases) {
    const Vocab v = MergeVocab(c.merges);
    auto merges = ResolveMerges(v, TokenIndex(v.tokens));
    ASSERT_FALSE(merges.ok()) << c.expected;
    EXPECT_EQ(merges.status().message(), c.expected);
    // ValidateVocab reports the same; the check without merges passes.
    EXPECT_EQ(ValidateVocab(v).message(), c.expected);
    EXPECT_TRUE(ValidateVocabExceptMerges(v).ok());
  }
}

}  // namespace
}  // namespace llmasos::tokenizer
