#include "model/tokenizer/hf_vocab.h"

#include <gtest/gtest.h>

namespace llmasos::tokenizer {
namespace {

// A minimal byte-level tokenizer.json: tokens "a", "b", "ab" and one merge.
std::string Json(std::string vocab = R"({"a": 0, "b": 1, "ab": 2})",
                 std::string merges = R"(["a b"])",
                 std::string pre = R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})",
                 std::string added = R"([{"id": 3, "content": "<|end|>", "special": true}])") {
  return R"({"added_tokens": )" + added + R"(, "pre_tokenizer": )" + pre +
         R"(, "model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": )" + merges + "}}";
}

void ExpectError(const std::string& json, std::string_view needle) {
  auto vocab = VocabFromHfTokenizerJson(json);
  ASSERT_FALSE(vocab.ok());
  EXPECT_NE(vocab.status().message().find(needle), std::string::npos) << vocab.status().ToString();
}

TEST(HfVocabTest, BuildsTokensTypesMergesAndEndOfGeneration) {
  auto vocab = VocabFromHfTokenizerJson(Json());
  ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
  EXPECT_EQ(vocab->model, "gpt2");
  EXPECT_EQ(vocab->pre, "gpt2");
  EXPECT_EQ(vocab->tokens, (std::vector<std::string>{"a", "b", "ab", "<|end|>"}));
  EXPECT_EQ(vocab->types[3], TokenType::kControl);
  EXPECT_EQ(vocab->types[0], TokenType::kNormal);
  EXPECT_EQ(vocab->merges, (std::vector<std::string>{"a b"}));
  EXPECT_EQ(vocab->eog, (std::vector<TokenId>{3}));
  // Pair-form merges, as newer files write them.
  auto pairs = VocabFromHfTokenizerJson(Json(R"({"a": 0, "b": 1, "ab": 2})", R"([["a", "b"]])"));
  ASSERT_TRUE(pairs.ok()) << pairs.status().ToString();
  EXPECT_EQ(pairs->merges, vocab->merges);
}

TEST(HfVocabTest, RejectsMalformedFilesNamingTheField) {
  ExpectError("{not json", "not valid JSON");
  ExpectError(R"({"model": 3})", "'model'");
  ExpectError(Json(R"({"a": 0, "b": 7, "ab": 2})"), "has id 7");
  ExpectError(Json(R"({"a": 0, "b": 1, "ab": "x"})"), "model.vocab['ab']");
  ExpectError(Json(R"({"a": 0, "b": 1, "ab": 2})", R"([1])"), "model.merges[0]");
  ExpectError(Json(R"({"a": 0, "b": 1, "ab": 2})", R"(["a c"])"), "tokenizer.ggml.merges[0]");
  ExpectError(Json(R"({"a": 0, "b": 1, "ab": 2})", R"(["a b"])", R"({"type": "Whitespace"})"),
              "pre_tokenizer");
  ExpectError(Json(R"({"a": 0, "b": 1, "ab": 2})", R"(["a b"])",
                   R"({"type": "Sequence", "pretokenizers": [1, 2]})"),
              "pre_tokenizer");
}

}  // namespace
}  // namespace llmasos::tokenizer
