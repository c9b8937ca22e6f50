#include "model/tokenizer/vocab_util.h"

#include <algorithm>
#include <functional>
#include <string>

namespace llmasos::tokenizer {
namespace {

Status CheckId(const Vocab& vocab, TokenId id, std::string_view key) {
  if (id == kNoToken) return OkStatus();
  if (id < 0 || static_cast<size_t>(id) >= vocab.tokens.size()) {
    return OutOfRangeError(std::string(key) + " is " + std::to_string(id) +
                           ", outside the vocabulary of " + std::to_string(vocab.tokens.size()) +
                           " tokens");
  }
  return OkStatus();
}

std::string Quote(std::string_view s) {
  constexpr size_t kMaxShown = 64;
  std::string out = "'";
  out.append(s.substr(0, kMaxShown));
  if (s.size() > kMaxShown) out.append("...");
  out.append("'");
  return out;
}

}  // namespace

Status ValidateVocab(const Vocab& vocab) {
  RETURN_IF_ERROR(ValidateVocabExceptMerges(vocab));
  if (!vocab.merges.empty()) {
    RETURN_IF_ERROR(ResolveMerges(vocab, TokenIndex(vocab.tokens)).status());
  }
  return OkStatus();
}

Status ValidateVocabExceptMerges(const Vocab& vocab) {
  if (vocab.tokens.empty()) return InvalidArgumentError("tokenizer.ggml.tokens is empty");
  if (vocab.types.size() != vocab.tokens.size()) {
    return InvalidArgumentError("tokenizer.ggml.token_type has " +
                                std::to_string(vocab.types.size()) +
                                " entries but tokenizer.ggml.tokens has " +
                                std::to_string(vocab.tokens.size()));
  }
  if (!vocab.scores.empty() && vocab.scores.size() != vocab.tokens.size()) {
    return InvalidArgumentError("tokenizer.ggml.scores has " + std::to_string(vocab.scores.size()) +
                                " entries but tokenizer.ggml.tokens has " +
                                std::to_string(vocab.tokens.size()));
  }
  for (size_t i = 0; i < vocab.types.size(); ++i) {
    auto t = static_cast<int32_t>(vocab.types[i]);
    if (t < 0 || t > static_cast<int32_t>(TokenType::kByte)) {
      return InvalidArgumentError("tokenizer.ggml.token_type[" + std::to_string(i) + "] is " +
                                  std::to_string(t) + ", not a token type (0..6)");
    }
  }
  RETURN_IF_ERROR(CheckId(vocab, vocab.bos, "tokenizer.ggml.bos_token_id"));
  RETURN_IF_ERROR(CheckId(vocab, vocab.eos, "tokenizer.ggml.eos_token_id"));
  RETURN_IF_ERROR(CheckId(vocab, vocab.eot, "tokenizer.ggml.eot_token_id"));
  RETURN_IF_ERROR(CheckId(vocab, vocab.unk, "tokenizer.ggml.unknown_token_id"));
  RETURN_IF_ERROR(CheckId(vocab, vocab.pad, "tokenizer.ggml.padding_token_id"));
  for (TokenId id : vocab.eog) {
    if (id == kNoToken) return InvalidArgumentError("end-of-generation token list holds -1");
    RETURN_IF_ERROR(CheckId(vocab, id, "end-of-generation token"));
  }
  return OkStatus();
}

StatusOr<std::vector<MergeIds>> ResolveMerges(const Vocab& vocab, const TokenIndex& index) {
  std::vector<MergeIds> out;
  out.reserve(vocab.merges.size());
  std::string joined;
  for (size_t i = 0; i < vocab.merges.size(); ++i) {
    const std::string& merge = vocab.merges[i];
    auto where = [&] { return "tokenizer.ggml.merges[" + std::to_string(i) + "] " + Quote(merge); };
    std::string_view left, right;
    if (!SplitMerge(merge, &left, &right)) {
      return InvalidArgumentError(where() + " is not two tokens separated by a space");
    }
    MergeIds ids{index.Find(left), index.Find(right), kNoToken};
    if (ids.left == kNoToken) {
      return InvalidArgumentError(where() + ": " + Quote(left) + " is not in tokenizer.ggml.tokens");
    }
    if (ids.right == kNoToken) {
      return InvalidArgumentError(where() + ": " + Quote(right) + " is not in tokenizer.ggml.tokens");
    }
    joined.assign(left);
    joined.append(right);
    ids.result = index.Find(joined);
    if (ids.result == kNoToken) {
      return InvalidArgumentError(where() + ": the merged token " + Quote(joined) +
                                  " is not in tokenizer.ggml.tokens");
    }
    out.push_back(ids);
  }
  return out;
}

void FillEndOfGeneration(Vocab* vocab) {
  // Texts that mark the end of a turn or document in the common chat formats.
  static constexpr std::string_view kEndTexts[] = {
      "<|im_end|>", "<|eot_id|>",     "<|endoftext|>", "<end_of_turn>", "<|end|>",
      "<|eom_id|>", "<|end_of_text|>", "<EOT>",        "</s>",          "<|return|>",
  };
  std::vector<TokenId>& eog = vocab->eog;
  eog.clear();
  if (vocab->eos != kNoToken) eog.push_back(vocab->eos);
  if (vocab->eot != kNoToken) eog.push_back(vocab->eot);
  for (size_t i = 0; i < vocab->tokens.size(); ++i) {
    if (vocab->types[i] != TokenType::kControl) continue;
    const std::string& text = vocab->tokens[i];
    if (std::find(std::begin(kEndTexts), std::end(kEndTexts), text) != std::end(kEndTexts)) {
      eog.push_back(static_cast<TokenId>(i));
    }
  }
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
}

bool SplitMerge(std::string_view merge, std::string_view* left, std::string_view* right) {
  size_t space = merge.find(' ', 1);
  if (space == std::string_view::npos) return false;
  *left = merge.substr(0, space);
  *right = merge.substr(space + 1);
  return !right->empty();
}

std::optional<uint8_t> ByteTokenValue(std::string_view text) {
  if (text.size() != 6 || !text.starts_with("<0x") || text[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  int hi = hex(text[3]);
  int lo = hex(text[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

namespace {

// The text's hash: the slot from its low bits, the tag from its high half.
uint64_t TextHash(std::string_view text) { return std::hash<std::string_view>()(text); }

}  // namespace

void TokenIndex::Insert(TokenId id) {
  const std::string& text = (*tokens_)[static_cast<size_t>(id)];
  const uint64_t h = TextHash(text);
  const auto tag = static_cast<uint32_t>(h >> 32);
  const size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    Slot& slot = slots_[i];
    if (slot.id == kNoToken) {
      slot = Slot{tag, id};
      return;
    }
    if (slot.tag == tag && (*tokens_)[static_cast<size_t>(slot.id)] == text) return;  // keeps the first
  }
}

TokenId TokenIndex::Find(std::string_view text) const {
  const uint64_t h = TextHash(text);
  const auto tag = static_cast<uint32_t>(h >> 32);
  const size_t mask = slots_.size() - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& slot = slots_[i];
    if (slot.id == kNoToken) return kNoToken;  // at most half full: an empty slot is near
    if (slot.tag == tag && (*tokens_)[static_cast<size_t>(slot.id)] == text) return slot.id;
  }
}

SpecialTokenSplitter::SpecialTokenSplitter(const Vocab& vocab) : vocab_(vocab) {
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    TokenType type = vocab.types[i];
    if (type != TokenType::kControl && type != TokenType::kUserDefined) continue;
    const std::string& text = vocab.tokens[i];
    if (text.empty()) continue;
    auto first = static_cast<uint8_t>(text[0]);
    all_by_first_byte_[first].push_back(static_cast<TokenId>(i));
    if (type == TokenType::kUserDefined) user_by_first_byte_[first].push_back(static_cast<TokenId>(i));
  }
  for (Table* table : {&all_by_first_byte_, &user_by_first_byte_}) {
    for (auto& ids : *table) {
      std::stable_sort(ids.begin(), ids.end(), [&](TokenId a, TokenId b) {
        return vocab.tokens[a].size() > vocab.tokens[b].size();
      });
    }
  }
}

void SpecialTokenSplitter::Split(std::string_view text, bool control,
                                 std::vector<Fragment>* out) const {
  const Table& table = control ? all_by_first_byte_ : user_by_first_byte_;
  size_t raw_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const auto& candidates = table[static_cast<uint8_t>(text[pos])];
    TokenId found = kNoToken;
    for (TokenId id : candidates) {
      if (text.substr(pos).starts_with(vocab_.tokens[id])) {
        found = id;
        break;
      }
    }
    if (found == kNoToken) {
      ++pos;
      continue;
    }
    if (pos > raw_start) out->push_back({text.substr(raw_start, pos - raw_start), kNoToken});
    out->push_back({std::string_view(), found});
    pos += vocab_.tokens[found].size();
    raw_start = pos;
  }
  if (raw_start < text.size()) out->push_back({text.substr(raw_start), kNoToken});
}

}  // namespace llmasos::tokenizer
