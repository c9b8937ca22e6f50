#include "model/tokenizer/spm_tokenizer.h"

#include <algorithm>

#include "util/utf8.h"
#include "model/tokenizer/vocab_util.h"

namespace llmasos::tokenizer {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

// One symbol: bytes [offset, offset + length) of the escaped text; dead when length == 0.
struct Symbol {
  uint32_t offset;
  uint32_t length;
  int32_t prev;
  int32_t next;
};

struct Candidate {
  float score;
  int32_t left;
  uint32_t length;  // combined length when pushed; a mismatch later means stale
  TokenId id;
  // Highest score first, leftmost among equal scores.
  bool operator<(const Candidate& o) const {
    return score != o.score ? score < o.score : left > o.left;
  }
};

class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(Vocab vocab)
      : Tokenizer(std::move(vocab)),
        specials_(vocab_),
        // Only these can be produced by merging plain text; control, unknown and byte tokens
        // are never spelled out by the input.
        mergeable_(vocab_.tokens, [this](TokenId id) {
          const TokenType type = vocab_.types[static_cast<size_t>(id)];
          return type == TokenType::kNormal || type == TokenType::kUndefined ||
                 type == TokenType::kUserDefined || type == TokenType::kUnused;
        }) {}

  Status Init() {
    if (vocab_.scores.empty()) {
      return InvalidArgumentError(
          "tokenizer.ggml.scores is missing; a 'llama' (SentencePiece) tokenizer needs scores");
    }
    byte_token_.fill(kNoToken);
    for (size_t i = 0; i < vocab_.tokens.size(); ++i) {
      if (vocab_.types[i] != TokenType::kByte) continue;
      if (auto b = ByteTokenValue(vocab_.tokens[i]); b && byte_token_[*b] == kNoToken) {
        byte_token_[*b] = static_cast<TokenId>(i);
      }
    }
    BuildPieces();
    return OkStatus();
  }

  std::vector<TokenId> Encode(std::string_view text, bool add_special,
                              bool parse_special) const override {
    // The space prefix marks the start of the text, as SentencePiece does for a sentence;
    // text after a special token continues it and gets none.
    return EncodeFramed(vocab_, specials_, text, add_special, parse_special,
                        [&](std::string_view raw, bool first, std::vector<TokenId>* out) {
                          EncodeRaw(raw, /*space_prefix=*/vocab_.add_space_prefix && first, out);
                        });
  }

 private:
  void EncodeRaw(std::string_view raw, bool space_prefix, std::vector<TokenId>* out) const {
    std::string text;
    text.reserve(raw.size() + 3);
    if (space_prefix) text.append(kSpace);
    for (char c : raw) {
      if (c == ' ') {
        text.append(kSpace);
      } else {
        text.push_back(c);
      }
    }
    // One symbol per character (text is well-formed UTF-8).
    std::vector<Symbol> symbols;
    for (size_t pos = 0; pos < text.size();) {
      size_t len = ScanUtf8(std::string_view(text).substr(pos)).length;
      auto n = static_cast<int32_t>(symbols.size());
      symbols.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(len), n - 1, n + 1});
      pos += len;
    }
    if (symbols.empty()) return;
    symbols.back().next = -1;

    std::vector<Candidate> heap;
    auto consider = [&](int32_t left) {
      if (left < 0) return;
      int32_t right = symbols[left].next;
      if (right < 0) return;
      uint32_t length = symbols[left].length + symbols[right].length;
      const TokenId id = mergeable_.Find(std::string_view(text).substr(symbols[left].offset, length));
      if (id == kNoToken) return;
      heap.push_back({vocab_.scores[id], left, length, id});
      std::push_heap(heap.begin(), heap.end());
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      Candidate c = heap.back();
      heap.pop_back();
      Symbol& left = symbols[c.left];
      // Stale if either side changed since the candidate was pushed: merges only grow
      // symbols, so an unchanged combined length means both are unchanged.
      if (left.length == 0 || left.next < 0 ||
          left.length + symbols[left.next].length != c.length) {
        continue;
      }
      Symbol& right = symbols[left.next];
      left.length = c.length;
      right.length = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = c.left;
      consider(left.prev);
      consider(c.left);
    }
    for (int32_t i = 0; i >= 0; i = symbols[i].next) {
      std::string_view piece = std::string_view(text).substr(symbols[i].offset, symbols[i].length);
      if (const TokenId id = mergeable_.Find(piece); id != kNoToken) {
        out->push_back(id);
        continue;
      }
      // Byte fallback: every byte needs its <0xXX> token, else the character becomes unk.
      bool all_bytes = std::all_of(piece.begin(), piece.end(),
                                   [&](char b) { return byte_token_[static_cast<uint8_t>(b)] != kNoToken; });
      if (all_bytes) {
        for (char b : piece) out->push_back(byte_token_[static_cast<uint8_t>(b)]);
      } else if (vocab_.unk != kNoToken) {
        out->push_back(vocab_.unk);
      }
    }
  }

  void BuildPieces() {
    pieces_.resize(vocab_.tokens.size());
    for (size_t i = 0; i < vocab_.tokens.size(); ++i) {
      const std::string& text = vocab_.tokens[i];
      std::string& piece = pieces_[i];
      switch (vocab_.types[i]) {
        case TokenType::kByte:
          if (auto b = ByteTokenValue(text)) {
            piece.assign(1, static_cast<char>(*b));
          } else {
            piece = text;
          }
          break;
        case TokenType::kNormal:
        case TokenType::kUndefined:
        case TokenType::kUserDefined:
        case TokenType::kUnused:
          for (size_t pos = 0; pos < text.size();) {
            if (std::string_view(text).substr(pos).starts_with(kSpace)) {
              piece.push_back(' ');
              pos += kSpace.size();
            } else {
              piece.push_back(text[pos++]);
            }
          }
          break;
        default:
          piece = text;
          break;
      }
    }
  }

  SpecialTokenSplitter specials_;
  TokenIndex mergeable_;  // over vocab_.tokens
  std::array<TokenId, 256> byte_token_{};
};

}  // namespace

StatusOr<std::unique_ptr<Tokenizer>> NewSpmTokenizer(Vocab vocab) {
  auto tokenizer = std::make_unique<SpmTokenizer>(std::move(vocab));
  RETURN_IF_ERROR(tokenizer->Init());
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

}  // namespace llmasos::tokenizer
