#include "model/tokenizer/test_vocabs.h"

#include <filesystem>

#include "model/tokenizer/bpe_tokenizer.h"
#include "model/tokenizer/hf_vocab.h"
#include "util/utf8.h"
#include "model/tokenizer/vocab_util.h"

namespace llmasos::tokenizer::testing {

std::string SmolLm2TokenizerJsonPath() { return LLMASOS_TOKENIZER_JSON; }

bool SmolLm2Available() { return std::filesystem::exists(SmolLm2TokenizerJsonPath()); }

StatusOr<Vocab> SmolLm2Vocab() {
  ASSIGN_OR_RETURN(Vocab vocab, VocabFromHfTokenizerJsonFile(SmolLm2TokenizerJsonPath()));
  vocab.bos = 1;
  vocab.eos = 2;
  vocab.unk = 0;
  vocab.pad = 2;
  vocab.add_bos = false;
  FillEndOfGeneration(&vocab);
  return vocab;
}

Vocab TinySpmVocab() {
  Vocab v;
  v.model = "llama";
  v.pre = "default";
  auto add = [&](std::string text, TokenType type, float score) {
    v.tokens.push_back(std::move(text));
    v.types.push_back(type);
    v.scores.push_back(score);
  };
  add("<unk>", TokenType::kUnknown, 0);
  add("<s>", TokenType::kControl, 0);
  add("</s>", TokenType::kControl, 0);
  for (int b = 0; b < 256; ++b) {
    char name[8];
    snprintf(name, sizeof(name), "<0x%02X>", b);
    add(name, TokenType::kByte, 0);
  }
  // Single characters score lowest; longer pieces score higher so they win merges.
  for (const char* c : {"\xE2\x96\x81", "h", "e", "l", "o", "w", "r", "d", "a", "b"}) {
    add(c, TokenType::kNormal, -10);
  }
  add("ll", TokenType::kNormal, -3);
  add("he", TokenType::kNormal, -4);
  add("llo", TokenType::kNormal, -2);
  add("hello", TokenType::kNormal, -1);
  add("\xE2\x96\x81hello", TokenType::kNormal, -0.5f);
  add("or", TokenType::kNormal, -3);
  add("\xE2\x96\x81w", TokenType::kNormal, -3.5f);
  add("ld", TokenType::kNormal, -3.2f);
  add("\xE2\x96\x81wor", TokenType::kNormal, -2.5f);
  add("\xE2\x96\x81world", TokenType::kNormal, -0.7f);
  add("\xE2\x96\x81\xE2\x96\x81", TokenType::kNormal, -5);
  add("<tool>", TokenType::kUserDefined, 0);
  v.bos = 1;
  v.eos = 2;
  v.unk = 0;
  v.add_bos = true;
  v.add_space_prefix = true;
  FillEndOfGeneration(&v);
  return v;
}

Vocab TinyBpeVocab() {
  Vocab v;
  v.model = "gpt2";
  v.pre = "gpt2";
  auto add = [&](std::string text, TokenType type) {
    v.tokens.push_back(std::move(text));
    v.types.push_back(type);
  };
  add("<|endoftext|>", TokenType::kControl);
  add("<|end|>", TokenType::kControl);
  add("<tool>", TokenType::kUserDefined);
  const auto& b2u = ByteToUnicode();
  for (int b = 0; b < 256; ++b) {
    std::string text;
    AppendUtf8(b2u[b], &text);
    add(text, TokenType::kNormal);
  }
  auto merge = [&](const std::string& left, const std::string& right) {
    v.merges.push_back(left + " " + right);
    add(left + right, TokenType::kNormal);
  };
  const std::string g = "\xC4\xA0";  // "Ġ", the mapped space
  merge(g, "t");
  merge("h", "e");
  merge(g + "t", "he");
  merge("l", "l");
  v.merges.push_back("h e");  // a duplicate pair: its later rank is never used
  merge("he", "ll");
  merge("hell", "o");
  merge(g, "hello");
  v.eos = 1;
  FillEndOfGeneration(&v);
  return v;
}

}  // namespace llmasos::tokenizer::testing
