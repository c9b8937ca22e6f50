#include "model/tokenizer/spm_tokenizer.h"

#include <gtest/gtest.h>

#include "model/tokenizer/test_vocabs.h"
#include "model/tokenizer/tokenizer.h"

namespace llmasos::tokenizer {
namespace {

using Ids = std::vector<TokenId>;

std::unique_ptr<Tokenizer> Make(Vocab vocab) {
  auto tok = Tokenizer::Create(std::move(vocab));
  CHECK(tok.ok()) << tok.status().ToString();
  return std::move(tok).value();
}

class SpmTest : public ::testing::Test {
 protected:
  TokenId Id(std::string_view text) const {
    TokenId id = tok_->FindToken(text);
    CHECK(id != kNoToken) << text;
    return id;
  }
  TokenId Byte(int b) const {
    char name[8];
    snprintf(name, sizeof(name), "<0x%02X>", b);
    return Id(name);
  }
  std::unique_ptr<Tokenizer> tok_ = Make(testing::TinySpmVocab());
};

TEST_F(SpmTest, AddsBosAndTheSpacePrefixAndMergesByScore) {
  EXPECT_EQ(tok_->Encode("hello world", true, false),
            (Ids{1, Id("\xE2\x96\x81hello"), Id("\xE2\x96\x81world")}));
  EXPECT_EQ(tok_->Encode("hello", false, false), (Ids{Id("\xE2\x96\x81hello")}));
}

TEST_F(SpmTest, HigherScoreMergesFirst) {
  // "▁wor" + "ld" only meet because "or" (-3) and "ld" (-3.2) merge before "▁w" (-3.5).
  EXPECT_EQ(tok_->Encode("world", false, false), (Ids{Id("\xE2\x96\x81world")}));
  // Without the space prefix there is no "▁w": w + or + ld stay apart.
  Vocab no_prefix = testing::TinySpmVocab();
  no_prefix.add_space_prefix = false;
  auto tok = Make(std::move(no_prefix));
  EXPECT_EQ(tok->Encode("world", false, false), (Ids{Id("w"), Id("or"), Id("ld")}));
}

TEST_F(SpmTest, CharactersWithoutTokensFallBackToBytes) {
  // 'i' is not a piece: <0x69>. The emoji is four byte tokens.
  EXPECT_EQ(tok_->Encode("hi", false, false), (Ids{Id("\xE2\x96\x81"), Id("h"), Byte(0x69)}));
  EXPECT_EQ(tok_->Encode("\xF0\x9F\x98\x80", false, false),
            (Ids{Id("\xE2\x96\x81"), Byte(0xF0), Byte(0x9F), Byte(0x98), Byte(0x80)}));
}

TEST_F(SpmTest, CharactersFallBackToUnkWhenByteTokensAreMissing) {
  Vocab vocab = testing::TinySpmVocab();
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    if (vocab.types[i] == TokenType::kByte) {
      vocab.types[i] = TokenType::kUnused;
      vocab.tokens[i] = "<unused" + std::to_string(i) + ">";
    }
  }
  auto tok = Make(std::move(vocab));
  EXPECT_EQ(tok->Encode("hi", false, false), (Ids{Id("\xE2\x96\x81"), Id("h"), 0}));
}

TEST_F(SpmTest, DecodeDropsOnlyTheAddedSpacePrefix) {
  for (std::string_view text : {"hello world", " hello", "  two spaces", "hi \xF0\x9F\x98\x80!", ""}) {
    EXPECT_EQ(tok_->Decode(tok_->Encode(text, true, false)), text);
  }
  // " hello" keeps its own space: [▁, ▁hello] decodes to "  hello" minus the prefix.
  EXPECT_EQ(tok_->Encode(" hello", false, false),
            (Ids{Id("\xE2\x96\x81"), Id("\xE2\x96\x81hello")}));
  // Pieces themselves keep the space: streaming continues a prompt, so it is meaningful.
  EXPECT_EQ(tok_->TokenToPiece(Id("\xE2\x96\x81world")), " world");
  EXPECT_EQ(tok_->TokenToPiece(Byte(0x41)), "A");
}

TEST_F(SpmTest, SpecialTokensOnlyWhenParsedAndRenderedOnlyWhenAsked) {
  Ids parsed = tok_->Encode("<s>hello", false, true);
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(parsed[0], 1);
  // Text after a special token gets no space prefix.
  EXPECT_EQ(parsed, (Ids{1, Id("hello")}));
  Ids plain = tok_->Encode("<s>hello", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(tok_->Decode(plain), "<s>hello");
  EXPECT_EQ(tok_->TokenToPiece(1), "");
  EXPECT_EQ(tok_->TokenToPiece(1, true), "<s>");
  EXPECT_TRUE(tok_->IsEog(2));
  EXPECT_FALSE(tok_->IsEog(1));
}

TEST_F(SpmTest, UserDefinedWhitespaceRunsStayWholeWithoutParseSpecial) {
  // As Gemma 3 stores them: literal spaces (llama.cpp's converter turns the SentencePiece
  // model's "▁▁▁▁" into "    "), matched before spaces become "▁", longest first.
  Vocab vocab = testing::TinySpmVocab();
  vocab.add_space_prefix = false;
  for (const char* text : {"  ", "    ", "\n", "\n\n"}) {
    vocab.tokens.push_back(text);
    vocab.types.push_back(TokenType::kUserDefined);
    vocab.scores.push_back(0);
  }
  auto tok = Make(std::move(vocab));
  auto id = [&](std::string_view text) { return tok->FindToken(text); };
  EXPECT_EQ(tok->Encode("     hello\n\n\nhello", true, false),
            (Ids{1, id("    "), id("\xE2\x96\x81hello"), id("\n\n"), id("\n"), id("hello")}));
  EXPECT_EQ(tok->Encode("hello  <tool>", false, false),
            (Ids{id("hello"), id("  "), id("<tool>")}));
  EXPECT_EQ(tok->Decode(tok->Encode("a    b\n\n c", false, false)), "a    b\n\n c");
}

TEST_F(SpmTest, InvalidUtf8BecomesReplacementCharacters) {
  // U+FFFD has no piece, so it falls back to its three bytes EF BF BD.
  Ids ids = tok_->Encode("a\xFF", false, false);
  EXPECT_EQ(ids, (Ids{Id("\xE2\x96\x81"), Id("a"), Byte(0xEF), Byte(0xBF), Byte(0xBD)}));
  EXPECT_EQ(tok_->Decode(ids), "a\xEF\xBF\xBD");
}

TEST_F(SpmTest, IncrementalDecoderJoinsByteTokensIntoCharacters) {
  IncrementalDecoder d(*tok_);
  EXPECT_EQ(d.Push(Byte(0xF0)), "");
  EXPECT_EQ(d.Push(Byte(0x9F)), "");
  EXPECT_EQ(d.Push(Byte(0x98)), "");
  EXPECT_EQ(d.Push(Byte(0x80)), "\xF0\x9F\x98\x80");
  EXPECT_EQ(d.Push(Byte(0xF0)), "");
  EXPECT_EQ(d.Push(Id("h")), "\xEF\xBF\xBD" "h");
}

TEST(SpmCreateTest, NeedsScores) {
  Vocab vocab = testing::TinySpmVocab();
  vocab.scores.clear();
  auto tok = Tokenizer::Create(std::move(vocab));
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find("tokenizer.ggml.scores"), std::string::npos);
}

}  // namespace
}  // namespace llmasos::tokenizer
