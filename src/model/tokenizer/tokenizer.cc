#include "model/tokenizer/tokenizer.h"

#include <algorithm>

#include "model/tokenizer/bpe_tokenizer.h"
#include "model/tokenizer/spm_tokenizer.h"
#include "util/utf8.h"
#include "model/tokenizer/vocab_util.h"

namespace llmasos::tokenizer {

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(Vocab vocab) {
  RETURN_IF_ERROR(ValidateVocabExceptMerges(vocab));
  if (vocab.eog.empty()) FillEndOfGeneration(&vocab);
  if (vocab.model == "gpt2") return NewBpeTokenizer(std::move(vocab));
  if (vocab.model == "llama") return NewSpmTokenizer(std::move(vocab));
  return UnimplementedError("tokenizer.ggml.model '" + vocab.model +
                            "' is not supported (supported: gpt2, llama)");
}

std::string Tokenizer::TokenToPiece(TokenId id, bool render_special) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces_.size()) return "";
  const TokenType type = vocab_.types[id];
  if (!render_special && (type == TokenType::kControl || type == TokenType::kUnknown ||
                          type == TokenType::kUnused)) {
    return "";
  }
  return pieces_[id];
}

std::string Tokenizer::Decode(std::span<const TokenId> ids, bool render_special) const {
  std::string out;
  bool first_text = true;
  for (TokenId id : ids) {
    std::string piece = TokenToPiece(id, render_special);
    if (piece.empty()) continue;
    // SentencePiece's space prefix was added by Encode, not typed: drop it again so that
    // Decode(Encode(x)) == x.
    if (first_text && vocab_.model == "llama" && vocab_.add_space_prefix && piece[0] == ' ' &&
        vocab_.types[id] != TokenType::kControl && vocab_.types[id] != TokenType::kByte) {
      piece.erase(0, 1);
    }
    first_text = false;
    out += piece;
  }
  return out;
}

bool Tokenizer::IsEog(TokenId id) const {
  return id != kNoToken && std::find(vocab_.eog.begin(), vocab_.eog.end(), id) != vocab_.eog.end();
}

TokenId Tokenizer::FindToken(std::string_view text) const {
  // A linear scan: this is for setup-time lookups (template tokens, stop tokens), not for
  // per-token work, and it keeps the Tokenizer free of a second index of the vocabulary.
  auto it = std::find(vocab_.tokens.begin(), vocab_.tokens.end(), text);
  return it == vocab_.tokens.end() ? kNoToken : static_cast<TokenId>(it - vocab_.tokens.begin());
}

std::string IncrementalDecoder::Push(TokenId id) {
  pending_ += tokenizer_.TokenToPiece(id, render_special_);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    Utf8Step step = ScanUtf8(std::string_view(pending_).substr(pos));
    if (step.kind == Utf8Kind::kIncomplete) break;  // may still complete with the next token
    if (step.kind == Utf8Kind::kValid) {
      out.append(pending_, pos, step.length);
    } else {
      out.append(kReplacementChar);
    }
    pos += step.length;
  }
  pending_.erase(0, pos);
  return out;
}

std::string IncrementalDecoder::Flush() {
  // Whatever is held is a proper prefix of one character: a single maximal subpart.
  std::string out = pending_.empty() ? "" : std::string(kReplacementChar);
  pending_.clear();
  return out;
}

}  // namespace llmasos::tokenizer
