#include <gtest/gtest.h>

#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "model/tokenizer/test_vocabs.h"
#include "model/tokenizer/tokenizer.h"

namespace llmasos::tokenizer {
namespace {

using gguf::GgufFile;
using gguf::GgufWriter;

// Writes `vocab` the way converters do, so tests can then break one key at a time.
void WriteVocab(const Vocab& vocab, GgufWriter* w) {
  w->SetString("tokenizer.ggml.model", vocab.model);
  w->SetString("tokenizer.ggml.pre", vocab.pre);
  w->SetStringArray("tokenizer.ggml.tokens", vocab.tokens);
  std::vector<int32_t> types;
  for (TokenType t : vocab.types) types.push_back(static_cast<int32_t>(t));
  w->SetInt32Array("tokenizer.ggml.token_type", types);
  if (!vocab.scores.empty()) w->SetFloat32Array("tokenizer.ggml.scores", vocab.scores);
  if (!vocab.merges.empty()) w->SetStringArray("tokenizer.ggml.merges", vocab.merges);
  if (vocab.bos != kNoToken) w->SetUint32("tokenizer.ggml.bos_token_id", vocab.bos);
  if (vocab.eos != kNoToken) w->SetUint32("tokenizer.ggml.eos_token_id", vocab.eos);
  if (vocab.unk != kNoToken) w->SetUint32("tokenizer.ggml.unknown_token_id", vocab.unk);
  w->SetBool("tokenizer.ggml.add_bos_token", vocab.add_bos);
  w->SetBool("tokenizer.ggml.add_space_prefix", vocab.add_space_prefix);
  w->SetString("tokenizer.chat_template", "{{ messages }}");
}

StatusOr<Vocab> ReadBack(const GgufWriter& w) {
  auto bytes = w.Serialize();
  CHECK(bytes.ok()) << bytes.status().ToString();
  auto file = GgufFile::Parse(*bytes);
  CHECK(file.ok()) << file.status().ToString();
  return VocabFromGguf(**file);
}

void ExpectErrorMentions(const StatusOr<Vocab>& vocab, std::string_view needle) {
  ASSERT_FALSE(vocab.ok());
  EXPECT_NE(vocab.status().message().find(needle), std::string::npos)
      << vocab.status().ToString();
}

TEST(VocabFromGgufTest, ReadsBackWhatWasWritten) {
  Vocab spm = testing::TinySpmVocab();
  GgufWriter w;
  WriteVocab(spm, &w);
  auto vocab = ReadBack(w);
  ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
  EXPECT_EQ(vocab->model, "llama");
  EXPECT_EQ(vocab->tokens, spm.tokens);
  EXPECT_EQ(vocab->types, spm.types);
  EXPECT_EQ(vocab->scores, spm.scores);
  EXPECT_EQ(vocab->bos, 1);
  EXPECT_EQ(vocab->eos, 2);
  EXPECT_EQ(vocab->unk, 0);
  EXPECT_EQ(vocab->pad, kNoToken);
  EXPECT_TRUE(vocab->add_bos);
  EXPECT_TRUE(vocab->add_space_prefix);
  EXPECT_EQ(vocab->chat_template, "{{ messages }}");
  EXPECT_EQ(vocab->eog, (std::vector<TokenId>{2}));
  auto tok = Tokenizer::Create(std::move(vocab).value());
  ASSERT_TRUE(tok.ok());
  EXPECT_EQ((*tok)->Decode((*tok)->Encode("hello world", true, false)), "hello world");
}

TEST(VocabFromGgufTest, BpeVocabGetsMergesAndEndOfGenerationTokens) {
  Vocab bpe = testing::TinyBpeVocab();
  GgufWriter w;
  WriteVocab(bpe, &w);
  auto vocab = ReadBack(w);
  ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
  EXPECT_EQ(vocab->merges, bpe.merges);
  EXPECT_EQ(vocab->pre, "gpt2");
  EXPECT_FALSE(vocab->add_space_prefix);
  // eos (<|end|>) and the control token <|endoftext|>.
  EXPECT_EQ(vocab->eog, (std::vector<TokenId>{0, 1}));
}

TEST(VocabFromGgufTest, DefaultsFollowTheModelFamilyWhenFlagsAreAbsent) {
  Vocab spm = testing::TinySpmVocab();
  GgufWriter w;
  w.SetString("tokenizer.ggml.model", "llama");
  w.SetStringArray("tokenizer.ggml.tokens", spm.tokens);
  w.SetFloat32Array("tokenizer.ggml.scores", spm.scores);
  auto vocab = ReadBack(w);
  ASSERT_TRUE(vocab.ok()) << vocab.status().ToString();
  EXPECT_EQ(vocab->pre, "default");
  EXPECT_TRUE(vocab->add_bos);
  EXPECT_TRUE(vocab->add_space_prefix);
  EXPECT_EQ(vocab->types.size(), spm.tokens.size());  // all normal when token_type is absent
}

TEST(VocabFromGgufTest, RejectsMissingOrMistypedKeysNamingThem) {
  {
    GgufWriter w;
    w.SetStringArray("tokenizer.ggml.tokens", {"a"});
    ExpectErrorMentions(ReadBack(w), "tokenizer.ggml.model");
  }
  {
    GgufWriter w;
    WriteVocab(testing::TinyBpeVocab(), &w);
    w.SetString("tokenizer.ggml.model", "rwkv");
    ExpectErrorMentions(ReadBack(w), "'rwkv'");
  }
  {
    GgufWriter w;
    WriteVocab(testing::TinyBpeVocab(), &w);
    w.SetString("tokenizer.ggml.tokens", "not an array");
    ExpectErrorMentions(ReadBack(w), "tokenizer.ggml.tokens");
  }
  {
    Vocab bpe = testing::TinyBpeVocab();
    GgufWriter w;
    WriteVocab(bpe, &w);
    w.SetStringArray("tokenizer.ggml.merges", {});
    w.SetStringArray("tokenizer.ggml.tokens", bpe.tokens);
    std::vector<std::string> merges = bpe.merges;
    merges.push_back("nosuch token");
    w.SetStringArray("tokenizer.ggml.merges", merges);
    ExpectErrorMentions(ReadBack(w), "tokenizer.ggml.merges[");
  }
}

TEST(VocabFromGgufTest, RejectsInconsistentLengthsAndIds) {
  Vocab bpe = testing::TinyBpeVocab();
  {
    GgufWriter w;
    WriteVocab(bpe, &w);
    w.SetInt32Array("tokenizer.ggml.token_type", std::vector<int32_t>{1, 1});
    ExpectErrorMentions(ReadBack(w), "tokenizer.ggml.token_type has 2 entries");
  }
  {
    GgufWriter w;
    WriteVocab(bpe, &w);
    std::vector<int32_t> types(bpe.tokens.size(), 1);
    types[5] = 9;
    w.SetInt32Array("tokenizer.ggml.token_type", types);
    ExpectErrorMentions(ReadBack(w), "tokenizer.ggml.token_type[5] is 9");
  }
  {
    GgufWriter w;
    WriteVocab(bpe, &w);
    w.SetUint32("tokenizer.ggml.eos_token_id", 1000000);
    ExpectErrorMentions(ReadBack(w), "tokenizer.ggml.eos_token_id is 1000000");
  }
  {
    Vocab spm = testing::TinySpmVocab();
    GgufWriter w;
    WriteVocab(spm, &w);
    w.SetFloat32Array("tokenizer.ggml.scores", std::vector<float>{0.0f});
    ExpectErrorMentions(ReadBack(w), "tokenizer.ggml.scores has 1 entries");
  }
  {
    GgufWriter w;
    WriteVocab(bpe, &w);
    w.SetString("tokenizer.ggml.add_bos_token", "yes");
    ExpectErrorMentions(ReadBack(w), "tokenizer.ggml.add_bos_token");
  }
}

}  // namespace
}  // namespace llmasos::tokenizer
