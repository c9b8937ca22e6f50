// Internals shared by the tokenizer implementations: vocab validation, end-of-generation
// detection, the token index and merges, the special-token splitter and byte-token names. Not
// part of the public API.
#ifndef LLMASOS_MODEL_TOKENIZER_VOCAB_UTIL_H_
#define LLMASOS_MODEL_TOKENIZER_VOCAB_UTIL_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer/tokenizer.h"
#include "util/utf8.h"
#include "util/status.h"

namespace llmasos::tokenizer {

// Checks the invariants every tokenizer relies on: tokens non-empty, types (and scores, when
// present) as long as tokens, special ids and eog ids in range, every merge "a b" naming
// tokens a, b and ab (ResolveMerges). Messages name the GGUF key the value comes from.
Status ValidateVocab(const Vocab& vocab);
// ValidateVocab without the merges, for Tokenizer::Create: the BPE tokenizer resolves them
// itself (ResolveMerges, the same errors), and SentencePiece has no use for them. Resolving
// 150k merges is a large part of a model's start, so it is done once.
Status ValidateVocabExceptMerges(const Vocab& vocab);

// Fills vocab->eog: eos, eot, and the control tokens that conventionally end a turn
// (<|im_end|>, <|eot_id|>, <|endoftext|>, <end_of_turn>, ...). Sorted, no duplicates.
void FillEndOfGeneration(Vocab* vocab);

// Splits "a b" into its halves at the first space after position 0 (so " " can be a left
// half). Returns false when there is no such space.
bool SplitMerge(std::string_view merge, std::string_view* left, std::string_view* right);

// The byte a "<0xXX>" token stands for, if `text` has that exact form.
std::optional<uint8_t> ByteTokenValue(std::string_view text);

// Text -> id over a vocabulary's tokens, or those `keep` accepts; the first id wins for
// duplicate texts. Open addressing over one flat array of (hash tag, id) slots, at most half
// full, so a lookup reads a slot or two and the token's own text: a vocabulary of 150k-260k
// tokens is built and searched several times faster than with a node-based map, and freed at
// once (these tables are most of the time from exec to a model's first token). Hand-written
// rather than taken from a hash-map library: it keeps no keys, only ids into the vocabulary's
// texts, and none of the project's dependencies offers an open-addressing map.
// The vocabulary's token texts must outlive the index and not change.
class TokenIndex {
 public:
  explicit TokenIndex(const std::vector<std::string>& tokens)
      : TokenIndex(tokens, [](TokenId) { return true; }) {}
  template <typename Keep>
  TokenIndex(const std::vector<std::string>& tokens, Keep keep) : tokens_(&tokens) {
    size_t capacity = 16;
    while (capacity < 2 * tokens.size()) capacity *= 2;
    slots_.assign(capacity, Slot{0, kNoToken});
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (keep(static_cast<TokenId>(i))) Insert(static_cast<TokenId>(i));
    }
  }

  // The id of `text`, or kNoToken.
  TokenId Find(std::string_view text) const;

 private:
  struct Slot {
    uint32_t tag;  // the high half of the text's hash
    TokenId id;    // kNoToken: empty
  };
  void Insert(TokenId id);

  const std::vector<std::string>* tokens_;
  std::vector<Slot> slots_;  // a power of two
};

// A merge "a b" of tokenizer.ggml.merges as ids: a, b and the token ab they make.
struct MergeIds {
  TokenId left;
  TokenId right;
  TokenId result;
};

// Every merge of vocab.merges, in rank order. The error names the first merge that is not two
// tokens of the vocabulary separated by a space, or whose halves joined are not a token.
StatusOr<std::vector<MergeIds>> ResolveMerges(const Vocab& vocab, const TokenIndex& index);

// Finds special tokens (non-empty text) in text: scanning left to right, at each position the
// longest one that starts there wins. User-defined tokens are always looked for (they are
// pieces of ordinary text the vocabulary keeps whole, such as Gemma's runs of spaces and
// newlines: SentencePiece matches them before normalising, llama.cpp and Hugging Face's
// non-special added tokens likewise); control tokens only when `control` is true.
class SpecialTokenSplitter {
 public:
  explicit SpecialTokenSplitter(const Vocab& vocab);

  struct Fragment {
    std::string_view text;    // raw text when id == kNoToken
    TokenId id = kNoToken;    // the special token matched
  };
  // Appends the fragments of `text` in order; raw fragments are never empty.
  void Split(std::string_view text, bool control, std::vector<Fragment>* out) const;

 private:
  using Table = std::array<std::vector<TokenId>, 256>;
  const Vocab& vocab_;
  // By first byte: candidate ids, longest text first; control and user-defined tokens, and
  // user-defined ones alone.
  Table all_by_first_byte_;
  Table user_by_first_byte_;
};

// The frame every tokenizer's Encode shares: BOS (when add_special and the vocab asks for it),
// invalid UTF-8 replaced by U+FFFD, user-defined tokens split out (and control tokens when
// parse_special), EOS.
// Each stretch of plain text goes to encode_text(stretch, first, &out), where `first` is true
// only for a stretch at the very start of the text.
template <typename EncodeText>
std::vector<TokenId> EncodeFramed(const Vocab& vocab, const SpecialTokenSplitter& specials,
                                  std::string_view text, bool add_special, bool parse_special,
                                  EncodeText&& encode_text) {
  std::vector<TokenId> out;
  if (add_special && vocab.add_bos && vocab.bos != kNoToken) out.push_back(vocab.bos);
  std::string sanitized;
  if (!IsValidUtf8(text)) {
    sanitized = SanitizeUtf8(text);
    text = sanitized;
  }
  std::vector<SpecialTokenSplitter::Fragment> fragments;
  specials.Split(text, /*control=*/parse_special, &fragments);
  for (size_t i = 0; i < fragments.size(); ++i) {
    if (fragments[i].id != kNoToken) {
      out.push_back(fragments[i].id);
    } else {
      encode_text(fragments[i].text, i == 0, &out);
    }
  }
  if (add_special && vocab.add_eos && vocab.eos != kNoToken) out.push_back(vocab.eos);
  return out;
}

}  // namespace llmasos::tokenizer

#endif  // LLMASOS_MODEL_TOKENIZER_VOCAB_UTIL_H_
