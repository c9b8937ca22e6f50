// Tokenizers: byte-level BPE (GGUF tokenizer.ggml.model = "gpt2") with the pre-tokenizers
// "smollm", "gpt2", "llama-bpe"/"llama3" and "qwen2"; and SentencePiece-style BPE
// (tokenizer.ggml.model = "llama") with byte fallback.
//
// Control tokens are recognised in the input text only when the caller passes
// parse_special = true; otherwise "<|im_start|>" typed by a user is ordinary text. User-defined
// tokens (pieces the vocabulary keeps whole, such as Gemma's runs of spaces, or Qwen's
// "<tool_call>") are always recognised, as SentencePiece, Hugging Face and llama.cpp do.
//
// Thread safety: a Tokenizer is immutable after Create; Encode/Decode may run concurrently.
// An IncrementalDecoder is per stream and not thread-safe.
#ifndef LLMASOS_MODEL_TOKENIZER_TOKENIZER_H_
#define LLMASOS_MODEL_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/gguf/gguf.h"
#include "util/status.h"

namespace llmasos::tokenizer {

using TokenId = int32_t;
inline constexpr TokenId kNoToken = -1;

// GGUF tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct Vocab {
  std::string model;  // "gpt2" or "llama"
  std::string pre;    // pre-tokenizer name for "gpt2" models; "default" when absent
  std::vector<std::string> tokens;
  std::vector<float> scores;        // may be empty (BPE models ranked by merges)
  std::vector<TokenType> types;     // same length as tokens
  std::vector<std::string> merges;  // "a b" pairs, rank = index
  TokenId bos = kNoToken;
  TokenId eos = kNoToken;
  TokenId eot = kNoToken;
  TokenId unk = kNoToken;
  TokenId pad = kNoToken;
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;
  std::vector<TokenId> eog;  // all end-of-generation tokens (eos, eot, <|im_end|>, ...)
  std::string chat_template; // tokenizer.chat_template, empty when absent
};

// Reads the tokenizer.* metadata. Validates lengths, ids in range, merges that name tokens.
StatusOr<Vocab> VocabFromGguf(const gguf::GgufFile& file);

class Tokenizer {
 public:
  static StatusOr<std::unique_ptr<Tokenizer>> Create(Vocab vocab);
  virtual ~Tokenizer() = default;

  // add_special: prepend BOS (and append EOS) where the vocab asks for it.
  // parse_special: recognise control tokens' text in `text` (user-defined ones always are).
  virtual std::vector<TokenId> Encode(std::string_view text, bool add_special,
                                      bool parse_special) const = 0;
  // The bytes a token stands for (may be part of a UTF-8 character). Control, unknown and
  // unused tokens give their text only when render_special is true, else "".
  std::string TokenToPiece(TokenId id, bool render_special = false) const;
  std::string Decode(std::span<const TokenId> ids, bool render_special = false) const;

  bool IsEog(TokenId id) const;
  size_t vocab_size() const { return vocab_.tokens.size(); }
  const Vocab& vocab() const { return vocab_; }
  // The id of a token with exactly this text, or kNoToken.
  TokenId FindToken(std::string_view text) const;

 protected:
  explicit Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {}
  Vocab vocab_;
  std::vector<std::string> pieces_;  // [num_tokens] the bytes each token stands for; set by Create
};

// Turns a stream of tokens into text without ever splitting a UTF-8 character: bytes of an
// incomplete character are held back until the character completes. Invalid sequences are
// passed through as U+FFFD once it is certain they cannot complete.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer, bool render_special = false)
      : tokenizer_(tokenizer), render_special_(render_special) {}
  // Returns the text that became complete with this token (possibly empty).
  std::string Push(TokenId id);
  // Returns whatever is held back (as U+FFFD for an incomplete character) and resets.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool render_special_;
  std::string pending_;
};

}  // namespace llmasos::tokenizer

#endif  // LLMASOS_MODEL_TOKENIZER_TOKENIZER_H_
