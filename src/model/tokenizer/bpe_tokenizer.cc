#include "model/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <unordered_map>

#include "model/tokenizer/pre_tokenizer.h"
#include "util/utf8.h"
#include "model/tokenizer/vocab_util.h"

namespace llmasos::tokenizer {
namespace {

struct MergeInfo {
  int32_t rank;
  TokenId result;
};

uint64_t PairKey(TokenId left, TokenId right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// One symbol of the word being merged; dead symbols have id == kNoToken.
struct Symbol {
  TokenId id;
  int32_t prev;
  int32_t next;
};

// A candidate merge of symbols[left] with its right neighbour. Stale once either changed.
struct Candidate {
  int32_t rank;
  int32_t left;
  TokenId left_id;
  TokenId right_id;
  // Heap order: "less" means lower priority, i.e. a higher rank, then further right. Lowest
  // rank first, leftmost among equal ranks (as in the reference BPE).
  bool operator<(const Candidate& o) const {
    return rank != o.rank ? rank > o.rank : left > o.left;
  }
};

// Scratch buffers reused across the words of one Encode call.
struct Scratch {
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::vector<std::string_view> pieces;
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(Vocab vocab) : Tokenizer(std::move(vocab)), specials_(vocab_) {}

  Status Init() {
    ASSIGN_OR_RETURN(pre_, PreTokenizer::Create(vocab_.pre));
    const TokenIndex index(vocab_.tokens);
    // Byte tokens: the token whose text is the byte's mapped character. Some vocabs lack a
    // few (SmolLM2 has no token for 0x04, 0xC0, 0xF5..0xFF, ...); those bytes are dropped
    // from the input, as the reference implementation does when the model has no unk token.
    const auto& b2u = ByteToUnicode();
    for (int b = 0; b < 256; ++b) {
      std::string text;
      AppendUtf8(b2u[b], &text);
      byte_token_[b] = index.Find(text);
    }
    ASSIGN_OR_RETURN(const std::vector<MergeIds> merges, ResolveMerges(vocab_, index));
    merges_.reserve(merges.size());
    for (size_t rank = 0; rank < merges.size(); ++rank) {
      const MergeIds& m = merges[rank];
      // A merge that would produce a control token would let plain text turn into a special
      // token; such merges are ignored.
      if (vocab_.types[m.result] == TokenType::kControl) continue;
      merges_.try_emplace(PairKey(m.left, m.right), MergeInfo{static_cast<int32_t>(rank), m.result});
    }
    BuildPieces();
    return OkStatus();
  }

  std::vector<TokenId> Encode(std::string_view text, bool add_special,
                              bool parse_special) const override {
    Scratch scratch;
    return EncodeFramed(vocab_, specials_, text, add_special, parse_special,
                        [&](std::string_view raw, bool /*first*/, std::vector<TokenId>* out) {
                          EncodeRaw(raw, &scratch, out);
                        });
  }

 private:
  void EncodeRaw(std::string_view text, Scratch* scratch, std::vector<TokenId>* out) const {
    scratch->pieces.clear();
    pre_->Split(text, &scratch->pieces);
    for (std::string_view piece : scratch->pieces) EncodeWord(piece, scratch, out);
  }

  void EncodeWord(std::string_view word, Scratch* scratch, std::vector<TokenId>* out) const {
    std::vector<Symbol>& symbols = scratch->symbols;
    symbols.clear();
    for (char c : word) {
      TokenId id = byte_token_[static_cast<uint8_t>(c)];
      if (id == kNoToken) continue;
      auto n = static_cast<int32_t>(symbols.size());
      symbols.push_back({id, n - 1, n + 1});
    }
    if (symbols.empty()) return;
    symbols.back().next = -1;

    // A binary heap over the scratch buffer (std::push_heap/pop_heap keep the max, which
    // Candidate's ordering makes the lowest rank, leftmost).
    std::vector<Candidate>& heap = scratch->heap;
    heap.clear();
    auto consider = [&](int32_t left) {
      if (left < 0) return;
      int32_t right = symbols[left].next;
      if (right < 0) return;
      auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
      if (it == merges_.end()) return;
      heap.push_back({it->second.rank, left, symbols[left].id, symbols[right].id});
      std::push_heap(heap.begin(), heap.end());
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i);

    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end());
      Candidate c = heap.back();
      heap.pop_back();
      Symbol& left = symbols[c.left];
      if (left.id != c.left_id || left.next < 0) continue;
      Symbol& right = symbols[left.next];
      if (right.id != c.right_id) continue;
      left.id = merges_.find(PairKey(c.left_id, c.right_id))->second.result;
      right.id = kNoToken;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = c.left;
      consider(left.prev);
      consider(c.left);
    }
    for (int32_t i = 0; i >= 0; i = symbols[i].next) out->push_back(symbols[i].id);
  }

  void BuildPieces() {
    std::unordered_map<uint32_t, uint8_t> unicode_to_byte;
    const auto& b2u = ByteToUnicode();
    for (int b = 0; b < 256; ++b) unicode_to_byte[b2u[b]] = static_cast<uint8_t>(b);
    pieces_.resize(vocab_.tokens.size());
    for (size_t i = 0; i < vocab_.tokens.size(); ++i) {
      const std::string& text = vocab_.tokens[i];
      switch (vocab_.types[i]) {
        case TokenType::kNormal:
        case TokenType::kUndefined: {
          // Map each character back to its byte; a character outside the table (only in a
          // malformed vocab) stands for itself.
          std::string& piece = pieces_[i];
          size_t pos = 0;
          while (pos < text.size()) {
            Utf8Step step = ScanUtf8(std::string_view(text).substr(pos));
            if (step.kind == Utf8Kind::kValid) {
              auto it = unicode_to_byte.find(DecodeUtf8(std::string_view(text).substr(pos),
                                                        step.length));
              if (it != unicode_to_byte.end()) {
                piece.push_back(static_cast<char>(it->second));
              } else {
                piece.append(text, pos, step.length);
              }
            } else {
              piece.append(text, pos, step.length);
            }
            pos += step.length;
          }
          break;
        }
        case TokenType::kByte: {
          auto byte = ByteTokenValue(text);
          pieces_[i] = byte ? std::string(1, static_cast<char>(*byte)) : text;
          break;
        }
        default:
          pieces_[i] = text;
          break;
      }
    }
  }

  SpecialTokenSplitter specials_;
  std::unique_ptr<PreTokenizer> pre_;
  std::array<TokenId, 256> byte_token_{};
  std::unordered_map<uint64_t, MergeInfo> merges_;  // PairKey(left, right) -> merge
};

}  // namespace

const std::array<uint32_t, 256>& ByteToUnicode() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

StatusOr<std::unique_ptr<Tokenizer>> NewBpeTokenizer(Vocab vocab) {
  auto tokenizer = std::make_unique<BpeTokenizer>(std::move(vocab));
  RETURN_IF_ERROR(tokenizer->Init());
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

}  // namespace llmasos::tokenizer
