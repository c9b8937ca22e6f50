// Internals shared by the tokenizer implementations: vocab validation, end-of-generation
// detection, the special-token splitter and byte-token names. Not part of the public API.
#ifndef LLMASOS_MODEL_TOKENIZER_VOCAB_UTIL_H_
#define LLMASOS_MODEL_TOKENIZER_VOCAB_UTIL_H_

#include <array>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tokenizer/tokenizer.h"
#include "util/status.h"

namespace llmasos::tokenizer {

// Checks the invariants every tokenizer relies on: tokens non-empty, types (and scores, when
// present) as long as tokens, special ids and eog ids in range, every merge "a b" naming
// tokens a, b and ab. Messages name the GGUF key the value comes from.
Status ValidateVocab(const Vocab& vocab);

// Fills vocab->eog: eos, eot, and the control tokens that conventionally end a turn
// (<|im_end|>, <|eot_id|>, <|endoftext|>, <end_of_turn>, ...). Sorted, no duplicates.
void FillEndOfGeneration(Vocab* vocab);

// Splits "a b" into its halves at the first space after position 0 (so " " can be a left
// half). Returns false when there is no such space.
bool SplitMerge(std::string_view merge, std::string_view* left, std::string_view* right);

// The byte a "<0xXX>" token stands for, if `text` has that exact form.
std::optional<uint8_t> ByteTokenValue(std::string_view text);

// Text -> id for every token; the first id wins for duplicate texts. Views into vocab.tokens.
std::unordered_map<std::string_view, TokenId> BuildTokenIndex(const Vocab& vocab);

// Finds special tokens (control and user-defined, non-empty text) in text: scanning left to
// right, at each position the longest special token that starts there wins.
class SpecialTokenSplitter {
 public:
  explicit SpecialTokenSplitter(const Vocab& vocab);

  struct Fragment {
    std::string_view text;    // raw text when id == kNoToken
    TokenId id = kNoToken;    // the special token matched
  };
  // Appends the fragments of `text` in order; raw fragments are never empty.
  void Split(std::string_view text, std::vector<Fragment>* out) const;

 private:
  const Vocab& vocab_;
  // By first byte: candidate ids, longest text first.
  std::array<std::vector<TokenId>, 256> by_first_byte_;
};

}  // namespace llmasos::tokenizer

#endif  // LLMASOS_MODEL_TOKENIZER_VOCAB_UTIL_H_
