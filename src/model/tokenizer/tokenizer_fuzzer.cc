// Fuzzes Encode/Decode/IncrementalDecoder on arbitrary bytes with three tokenizers: SmolLM2's
// byte-level BPE (from tests/data's tokenizer.json, whose path is baked in at build time; its
// absence is fatal unless LLMASOS_ALLOW_MISSING_ORACLES=1), and the tiny generated BPE and
// SentencePiece vocabularies.
//
// Properties checked for every input x:
//  * every id is in range;
//  * Decode(Encode(x)) is x with each ill-formed UTF-8 subpart replaced by U+FFFD and the bytes
//    the vocab cannot spell dropped, with special tokens parsed and rendered or not;
//  * the incremental decoder's output is the U+FFFD-sanitized concatenation of the pieces;
//  * decoding arbitrary (also out-of-range) ids neither crashes nor splits a character.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer/bpe_tokenizer.h"
#include "model/tokenizer/test_vocabs.h"
#include "model/tokenizer/tokenizer.h"
#include "util/utf8.h"
#include "util/logging.h"
#include "util/oracle_inputs.h"

namespace llmasos::tokenizer {
namespace {

struct Subject {
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<bool> droppable;  // [256] bytes with no way to be spelled
};

std::vector<Subject> MakeSubjects() {
  std::vector<Vocab> vocabs;
  if (testing::SmolLm2Available()) {
    auto v = testing::SmolLm2Vocab();
    CHECK(v.ok()) << v.status().ToString();
    vocabs.push_back(std::move(v).value());
  } else {
    CHECK(oracles::AllowMissing())
        << oracles::MissingMessage("SmolLM2 tokenizer.json", testing::SmolLm2TokenizerJsonPath());
  }
  vocabs.push_back(testing::TinyBpeVocab());
  vocabs.push_back(testing::TinySpmVocab());
  std::vector<Subject> subjects;
  for (Vocab& vocab : vocabs) {
    auto tok = Tokenizer::Create(std::move(vocab));
    CHECK(tok.ok()) << tok.status().ToString();
    Subject s{std::move(tok).value(), std::vector<bool>(256, false)};
    // Byte-level BPE drops a byte whose mapped character is not a token (SmolLM2 lacks 21);
    // SentencePiece falls back to <0xXX> tokens, which the tiny vocab has for every byte.
    if (s.tokenizer->vocab().model == "gpt2") {
      for (int b = 0; b < 256; ++b) {
        std::string mapped;
        AppendUtf8(ByteToUnicode()[b], &mapped);
        s.droppable[b] = s.tokenizer->FindToken(mapped) == kNoToken;
      }
    }
    subjects.push_back(std::move(s));
  }
  return subjects;
}

// What Decode(Encode(text)) must give: sanitized text without the bytes the vocab lacks; for
// SentencePiece a typed U+2581 is indistinguishable from the space it stands for.
std::string Expected(const Subject& s, std::string_view text) {
  std::string sanitized = SanitizeUtf8(text);
  std::string out;
  const bool spm = s.tokenizer->vocab().model == "llama";
  for (size_t i = 0; i < sanitized.size(); ++i) {
    if (spm && std::string_view(sanitized).substr(i).starts_with("\xE2\x96\x81")) {
      out.push_back(' ');
      i += 2;
      continue;
    }
    if (!s.droppable[static_cast<uint8_t>(sanitized[i])]) out.push_back(sanitized[i]);
  }
  return out;
}

void CheckIncremental(const Tokenizer& tok, const std::vector<TokenId>& ids, bool render) {
  IncrementalDecoder decoder(tok, render);
  std::string streamed, raw;
  for (TokenId id : ids) {
    streamed += decoder.Push(id);
    raw += tok.TokenToPiece(id, render);
    CHECK(IsValidUtf8(streamed)) << "incremental output split a character";
  }
  streamed += decoder.Flush();
  CHECK(streamed == SanitizeUtf8(raw)) << "incremental decoding differs from the pieces";
}

}  // namespace
}  // namespace llmasos::tokenizer

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace llmasos::tokenizer;
  static const std::vector<Subject>* subjects = new std::vector<Subject>(MakeSubjects());
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const Subject& s : *subjects) {
    const Tokenizer& tok = *s.tokenizer;
    for (bool parse_special : {false, true}) {
      // BOS/EOS are added, not typed: only add them where they are not rendered.
      bool add_special = !parse_special && size > 0 && (data[0] & 1);
      std::vector<TokenId> ids = tok.Encode(text, add_special, parse_special);
      for (TokenId id : ids) {
        CHECK(id >= 0 && static_cast<size_t>(id) < tok.vocab_size()) << "id " << id;
      }
      // Unparsed specials are plain text; parsed ones come back when rendered. Droppable
      // bytes are control characters, never part of a special token's text.
      std::string decoded = tok.Decode(ids, /*render_special=*/parse_special);
      std::string expected = Expected(s, text);
      CHECK(decoded == expected) << "round trip failed (parse_special=" << parse_special
                                 << ", " << tok.vocab().model << ")";
      CheckIncremental(tok, ids, parse_special);
    }
    // Arbitrary ids, out-of-range ones included.
    std::vector<TokenId> ids;
    for (size_t i = 0; i + 4 <= size; i += 4) {
      int32_t v;
      std::memcpy(&v, data + i, 4);
      ids.push_back(v % static_cast<int32_t>(tok.vocab_size() + 8));
    }
    (void)tok.Decode(ids, true);
    CheckIncremental(tok, ids, false);
    CheckIncremental(tok, ids, true);
  }
  return 0;
}
