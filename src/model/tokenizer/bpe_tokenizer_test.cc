#include "model/tokenizer/bpe_tokenizer.h"

#include <gtest/gtest.h>

#include <thread>

#include "model/tokenizer/pre_tokenizer.h"
#include "model/tokenizer/test_vocabs.h"
#include "model/tokenizer/tokenizer.h"
#include "util/oracle_inputs.h"

namespace llmasos::tokenizer {
namespace {

using Ids = std::vector<TokenId>;

std::unique_ptr<Tokenizer> Make(Vocab vocab) {
  auto tok = Tokenizer::Create(std::move(vocab));
  CHECK(tok.ok()) << tok.status().ToString();
  return std::move(tok).value();
}

// The SmolLM2 tokenizer, built once from tokenizer.json; null when the file is absent.
const Tokenizer* SmolLm2() {
  static const Tokenizer* tok = []() -> const Tokenizer* {
    if (!testing::SmolLm2Available()) return nullptr;
    auto vocab = testing::SmolLm2Vocab();
    CHECK(vocab.ok()) << vocab.status().ToString();
    return Make(std::move(vocab).value()).release();
  }();
  return tok;
}

// The SmolLM2 cases: a missing tokenizer.json fails them (see util/oracle_inputs.h).
#define REQUIRE_SMOLLM2()                                                                   \
  LLMASOS_REQUIRE_ORACLE_INPUT("SmolLM2 tokenizer.json", testing::SmolLm2TokenizerJsonPath()); \
  const Tokenizer* tok = SmolLm2()

std::vector<std::string> Split(const PreTokenizer& pre, std::string_view text) {
  std::vector<std::string_view> pieces;
  pre.Split(text, &pieces);
  return {pieces.begin(), pieces.end()};
}

using Pieces = std::vector<std::string>;

TEST(ByteToUnicodeTest, IsABijectionThatKeepsPrintableLatin1) {
  const auto& table = ByteToUnicode();
  std::vector<bool> seen(512);
  for (int b = 0; b < 256; ++b) {
    ASSERT_LT(table[b], 512u);
    EXPECT_FALSE(seen[table[b]]) << b;
    seen[table[b]] = true;
  }
  EXPECT_EQ(table['A'], uint32_t{'A'});
  EXPECT_EQ(table[' '], 0x120u);   // "Ġ"
  EXPECT_EQ(table['\n'], 0x10Au);  // "Ċ"
  EXPECT_EQ(table[0xAD], 0x143u);  // soft hyphen is moved too
}

TEST(PreTokenizerTest, Gpt2KeepsLeadingSpaceWithWordsAndLastSpaceOfARun) {
  auto pre = PreTokenizer::Create("gpt2");
  ASSERT_TRUE(pre.ok());
  EXPECT_EQ(Split(**pre, "Hello world's  end"),
            (Pieces{"Hello", " world", "'s", " ", " end"}));
  EXPECT_EQ(Split(**pre, "x = 12345;\n\n"), (Pieces{"x", " =", " 12345", ";", "\n\n"}));
}

TEST(PreTokenizerTest, SmolLmIsolatesEveryDigitBeforeTheGpt2Regex) {
  auto pre = PreTokenizer::Create("smollm");
  ASSERT_TRUE(pre.ok());
  EXPECT_EQ(Split(**pre, "abc 123"), (Pieces{"abc", " ", "1", "2", "3"}));
  // The run of spaces before a digit stays whole: the lookahead ends at the digit's piece.
  EXPECT_EQ(Split(**pre, "x  1"), (Pieces{"x", "  ", "1"}));
}

TEST(PreTokenizerTest, Llama3GroupsDigitsByThreeAndFoldsContractionCase) {
  auto pre = PreTokenizer::Create("llama3");
  ASSERT_TRUE(pre.ok());
  EXPECT_EQ(Split(**pre, "1234567 IT'S"), (Pieces{"123", "456", "7", " IT", "'S"}));
  auto qwen = PreTokenizer::Create("qwen2");
  ASSERT_TRUE(qwen.ok());
  EXPECT_EQ(Split(**qwen, "123"), (Pieces{"1", "2", "3"}));
}

TEST(PreTokenizerTest, WhiteSpaceIsUnicodeWhiteSpaceNotPcreHorizontalSpace) {
  auto pre = PreTokenizer::Create("gpt2");
  ASSERT_TRUE(pre.ok());
  // U+3000 IDEOGRAPHIC SPACE is white space; U+180E MONGOLIAN VOWEL SEPARATOR is not (it is
  // Cf since Unicode 6.3), so it joins the punctuation after it instead of standing alone.
  EXPECT_EQ(Split(**pre, "a\xE3\x80\x80\xE3\x80\x80" "b"),
            (Pieces{"a", "\xE3\x80\x80", "\xE3\x80\x80", "b"}));
  EXPECT_EQ(Split(**pre, "a\xE1\xA0\x8E!"), (Pieces{"a", "\xE1\xA0\x8E!"}));
}

TEST(PreTokenizerTest, UnknownNameIsAnErrorNamingIt) {
  auto pre = PreTokenizer::Create("falcon");
  ASSERT_FALSE(pre.ok());
  EXPECT_NE(pre.status().message().find("'falcon'"), std::string::npos);
  EXPECT_NE(pre.status().message().find("tokenizer.ggml.pre"), std::string::npos);
}

// Expected ids are those of the `tokenizers` package with the same tokenizer.json.
TEST(SmolLm2Test, EncodesLikeTheReferenceTokenizer) {
  REQUIRE_SMOLLM2();
  EXPECT_EQ(tok->Encode("Hello world", false, false), (Ids{19556, 905}));
  EXPECT_EQ(tok->Encode("12345 abc", false, false), (Ids{33, 34, 35, 36, 37, 43239}));
  EXPECT_EQ(tok->Encode("  a  b\n\n\tc", false, false), (Ids{216, 253, 216, 278, 1116, 197, 83}));
  EXPECT_EQ(tok->Encode("h\xC3\xA9llo \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80", false, false),
            (Ids{88, 2756, 31394, 216, 18645, 250, 48392, 138, 40303, 218}));
  EXPECT_EQ(tok->Encode("\x7f", false, false), (Ids{217}));
}

TEST(SmolLm2Test, BytesWithoutATokenAreDroppedLikeTheReference) {
  REQUIRE_SMOLLM2();
  // SmolLM2 has no token for 0x04 (nor 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2,
  // 0xF5..0xFF); with no unk token the reference drops them.
  EXPECT_EQ(tok->Encode("a\x04" "b", false, false), (Ids{81, 82}));
  EXPECT_EQ(tok->Encode("a \x04\x04" "b", false, false), (Ids{81, 216, 82}));
  EXPECT_EQ(tok->Decode(tok->Encode("a\x04" "b", false, false)), "ab");
}

TEST(SmolLm2Test, SpecialTokensAreParsedOnlyWhenAsked) {
  REQUIRE_SMOLLM2();
  const std::string text = "<|im_start|>user\nhi<|im_end|>";
  Ids parsed = tok->Encode(text, false, /*parse_special=*/true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), 1);
  EXPECT_EQ(parsed.back(), 2);
  EXPECT_EQ(tok->Decode(parsed, /*render_special=*/true), text);
  EXPECT_EQ(tok->Decode(parsed), "user\nhi");

  Ids plain = tok->Encode(text, false, /*parse_special=*/false);
  for (TokenId id : plain) {
    EXPECT_NE(tok->vocab().types[id], TokenType::kControl) << "id " << id;
  }
  EXPECT_GT(plain.size(), parsed.size());
  EXPECT_EQ(tok->Decode(plain), text);
}

TEST(SmolLm2Test, ControlTokensRenderOnlyWithRenderSpecial) {
  REQUIRE_SMOLLM2();
  EXPECT_EQ(tok->TokenToPiece(2), "");
  EXPECT_EQ(tok->TokenToPiece(2, true), "<|im_end|>");
  EXPECT_EQ(tok->TokenToPiece(905), " world");
  EXPECT_EQ(tok->TokenToPiece(-1), "");
  EXPECT_EQ(tok->TokenToPiece(static_cast<TokenId>(tok->vocab_size())), "");
}

TEST(SmolLm2Test, EndOfGenerationAndFindToken) {
  REQUIRE_SMOLLM2();
  EXPECT_TRUE(tok->IsEog(2));   // <|im_end|>, the eos
  EXPECT_TRUE(tok->IsEog(0));   // <|endoftext|>
  EXPECT_FALSE(tok->IsEog(1));  // <|im_start|>
  EXPECT_FALSE(tok->IsEog(905));
  EXPECT_FALSE(tok->IsEog(kNoToken));
  EXPECT_EQ(tok->FindToken("<|im_end|>"), 2);
  EXPECT_EQ(tok->FindToken("\xC4\xA0world"), 905);
  EXPECT_EQ(tok->FindToken("no such token"), kNoToken);
}

TEST(SmolLm2Test, AddSpecialFollowsTheVocabFlags) {
  REQUIRE_SMOLLM2();
  EXPECT_EQ(tok->Encode("hi", true, false), tok->Encode("hi", false, false));
  auto vocab = testing::SmolLm2Vocab();
  ASSERT_TRUE(vocab.ok());
  vocab->add_bos = true;
  vocab->add_eos = true;
  auto with = Make(std::move(vocab).value());
  Ids ids = with->Encode("hi", true, false);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
}

TEST(SmolLm2Test, InvalidUtf8IsEncodedAsItsReplacementText) {
  REQUIRE_SMOLLM2();
  EXPECT_EQ(tok->Encode("a\xFF" "b \xE2\x82", false, false),
            tok->Encode("a\xEF\xBF\xBD" "b \xEF\xBF\xBD", false, false));
  EXPECT_EQ(tok->Decode(tok->Encode("x\xC0\xAF", false, false)),
            "x\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(SmolLm2Test, DecodeInvertsEncodeOnValidText) {
  REQUIRE_SMOLLM2();
  for (std::string_view text :
       {"", " ", "   leading and trailing   ", "def f(x):\n\treturn x ** 2  # square\n",
        "Zürich, São Paulo, Kraków", "日本語のテキスト、中文文本", "\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB ok",
        "3.14159 + 2,718 = 5.85", "\r\n\r\n\n  \t\t x", "<|im_start|> typed"}) {
    EXPECT_EQ(tok->Decode(tok->Encode(text, false, false)), text);
  }
}

TEST(SmolLm2Test, IncrementalDecoderHoldsSplitCharactersBack) {
  REQUIRE_SMOLLM2();
  // " 😀" is ["ĠðŁĺ", "Ģ"]: the first token ends inside the emoji's four bytes.
  IncrementalDecoder emoji(*tok);
  EXPECT_EQ(emoji.Push(40303), " ");
  EXPECT_EQ(emoji.Push(218), "\xF0\x9F\x98\x80");
  EXPECT_EQ(emoji.Flush(), "");
  // "你" is ["ä½", "ł"].
  IncrementalDecoder cjk(*tok);
  EXPECT_EQ(cjk.Push(18645), "");
  EXPECT_EQ(cjk.Push(250), "\xE4\xBD\xA0");
  // An incomplete character at the end is flushed as one U+FFFD.
  IncrementalDecoder cut(*tok);
  EXPECT_EQ(cut.Push(40303), " ");
  EXPECT_EQ(cut.Flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(cut.Push(905), " world");
}

TEST(SmolLm2Test, IncrementalDecoderReplacesInvalidBytesOnceCertain) {
  REQUIRE_SMOLLM2();
  TokenId lead = tok->FindToken("\xC3\xA4");  // "ä" in the byte map stands for byte 0xE4
  TokenId cont = tok->FindToken("\xC5\x82");  // "ł" stands for byte 0xA0
  TokenId letter = tok->FindToken("a");
  ASSERT_NE(lead, kNoToken);
  ASSERT_NE(cont, kNoToken);
  IncrementalDecoder d(*tok);
  EXPECT_EQ(d.Push(cont), "\xEF\xBF\xBD");   // a lone continuation byte can never complete
  EXPECT_EQ(d.Push(lead), "");               // 0xE4 may still start a character
  EXPECT_EQ(d.Push(letter), "\xEF\xBF\xBD" "a");
}

TEST(SmolLm2Test, IncrementalDecodingEqualsDecodeOfTheWholeSequence) {
  REQUIRE_SMOLLM2();
  const std::string text =
      "Ünïcödé \xF0\x9F\x8E\x89\xF0\x9F\x8E\x89 \xE6\xBC\xA2\xE5\xAD\x97 <|im_end|> 42\n";
  Ids ids = tok->Encode(text, false, true);
  for (bool render : {false, true}) {
    IncrementalDecoder d(*tok, render);
    std::string streamed;
    for (TokenId id : ids) streamed += d.Push(id);
    streamed += d.Flush();
    EXPECT_EQ(streamed, tok->Decode(ids, render));
  }
}

TEST(SmolLm2Test, ConcurrentEncodesAgreeWithASequentialOne) {
  REQUIRE_SMOLLM2();
  const std::vector<std::string> texts = {
      "<|im_start|>user\nCount 1 2 3<|im_end|>", "  spaced\tout\n\n", "\xF0\x9F\x98\x80 smile",
      "def g():\n    return 42\n"};
  std::vector<Ids> expected;
  for (const auto& t : texts) expected.push_back(tok->Encode(t, false, true));
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 200; ++round) {
        size_t i = (round + w) % texts.size();
        if (tok->Encode(texts[i], false, true) != expected[i]) ++failures[w];
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

TEST(TinyBpeTest, MergesApplyByRankLowestFirst) {
  auto tok = Make(testing::TinyBpeVocab());
  const Vocab& v = tok->vocab();
  auto id = [&](std::string_view text) { return tok->FindToken(text); };
  EXPECT_EQ(tok->Encode(" the hello", false, false), (Ids{id("\xC4\xA0the"), id("\xC4\xA0hello")}));
  EXPECT_EQ(tok->Encode("hehe", false, false), (Ids{id("he"), id("he")}));
  // "hel" merges h+e (rank 1) first, so "el" never forms: [he, l].
  EXPECT_EQ(tok->Encode("hel", false, false), (Ids{id("he"), id("l")}));
  EXPECT_EQ(tok->Decode(tok->Encode("hello there", false, false)), "hello there");
  EXPECT_EQ(v.eog, (Ids{0, 1}));
}

TEST(TinyBpeTest, LongestSpecialTokenWins) {
  Vocab vocab = testing::TinyBpeVocab();
  vocab.tokens.push_back("<|end|><|end|>");
  vocab.types.push_back(TokenType::kControl);
  auto tok = Make(std::move(vocab));
  TokenId twice = static_cast<TokenId>(tok->vocab_size() - 1);
  EXPECT_EQ(tok->Encode("<|end|><|end|><|end|>", false, true), (Ids{twice, 1}));
  // Control tokens are matched only with parse_special; user-defined ones always (pieces of
  // text the vocabulary keeps whole), and always rendered.
  EXPECT_NE(tok->Encode("<|end|>", false, false), (Ids{1}));
  EXPECT_EQ(tok->Encode("<tool>", false, true), (Ids{2}));
  EXPECT_EQ(tok->Encode("a<tool>", false, false)[1], 2);
  EXPECT_EQ(tok->TokenToPiece(2), "<tool>");
}

TEST(TokenizerCreateTest, RejectsInconsistentVocabsNamingTheKey) {
  Vocab bad_types = testing::TinyBpeVocab();
  bad_types.types.pop_back();
  auto r1 = Tokenizer::Create(bad_types);
  ASSERT_FALSE(r1.ok());
  EXPECT_NE(r1.status().message().find("tokenizer.ggml.token_type"), std::string::npos);

  Vocab bad_merge = testing::TinyBpeVocab();
  bad_merge.merges.push_back("zz q");
  auto r2 = Tokenizer::Create(bad_merge);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("tokenizer.ggml.merges["), std::string::npos);
  EXPECT_NE(r2.status().message().find("'zz'"), std::string::npos);

  Vocab bad_eos = testing::TinyBpeVocab();
  bad_eos.eos = 100000;
  auto r3 = Tokenizer::Create(bad_eos);
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.status().message().find("tokenizer.ggml.eos_token_id"), std::string::npos);

  Vocab bad_model = testing::TinyBpeVocab();
  bad_model.model = "rwkv";
  auto r4 = Tokenizer::Create(bad_model);
  ASSERT_FALSE(r4.ok());
  EXPECT_EQ(r4.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(r4.status().message().find("'rwkv'"), std::string::npos);
}

}  // namespace
}  // namespace llmasos::tokenizer
