#include "shell/conversation.h"

#include <algorithm>
#include <string>
#include <string_view>

namespace llmasos::shell {

StatusOr<chat::ChatTemplate> ChatTemplateFor(const tokenizer::Tokenizer& tokenizer,
                                             const std::string& name) {
  if (!name.empty()) return chat::ChatTemplate::FromName(name);
  const tokenizer::Vocab& v = tokenizer.vocab();
  std::string bos_text = v.bos >= 0 ? v.tokens[v.bos] : "";
  return chat::ChatTemplate::FromJinja(v.chat_template, bos_text);
}

namespace {

struct Special {
  std::string_view text;
  tokenizer::TokenId id;
};

// The vocab's control and user-defined tokens, longest text first (so "<|im_start|>" wins over
// a shorter token that is its prefix).
std::vector<Special> SpecialTokens(const tokenizer::Vocab& v) {
  std::vector<Special> out;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if ((v.types[i] == tokenizer::TokenType::kControl ||
         v.types[i] == tokenizer::TokenType::kUserDefined) && !v.tokens[i].empty()) {
      out.push_back({v.tokens[i], static_cast<tokenizer::TokenId>(i)});
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Special& a, const Special& b) { return a.text.size() > b.text.size(); });
  return out;
}

}  // namespace

StatusOr<std::vector<tokenizer::TokenId>> EncodeConversation(
    const tokenizer::Tokenizer& tokenizer, const chat::ChatTemplate& tmpl,
    std::span<const chat::Message> messages, bool add_generation_prompt) {
  ASSIGN_OR_RETURN(std::vector<chat::RenderedPiece> pieces,
                   tmpl.RenderPieces(messages, add_generation_prompt));
  // As the model's own tokenizer does with the whole rendered prompt: split it at special
  // tokens, encode the text between them in one go. But special tokens are looked for only in
  // the template's text: what the user wrote ("<|im_start|>" typed in a message) stays plain
  // text, so a message cannot forge a turn.
  const std::vector<Special> specials = SpecialTokens(tokenizer.vocab());
  std::vector<tokenizer::TokenId> ids;
  std::string run;  // plain text since the last special token
  auto flush = [&] {
    std::vector<tokenizer::TokenId> part = tokenizer.Encode(run, false, /*parse_special=*/false);
    ids.insert(ids.end(), part.begin(), part.end());
    run.clear();
  };
  for (const chat::RenderedPiece& piece : pieces) {
    if (piece.is_content) {
      run += piece.text;
      continue;
    }
    std::string_view text = piece.text;
    size_t pos = 0;
    while (pos < text.size()) {
      const Special* match = nullptr;
      for (const Special& sp : specials) {
        if (text.compare(pos, sp.text.size(), sp.text) == 0) {
          match = &sp;
          break;
        }
      }
      if (match == nullptr) {
        run += text[pos++];
        continue;
      }
      if (!run.empty()) flush();
      ids.push_back(match->id);
      pos += match->text.size();
    }
  }
  if (!run.empty()) flush();
  const tokenizer::Vocab& v = tokenizer.vocab();
  if (v.add_bos && v.bos >= 0 && (ids.empty() || ids.front() != v.bos)) ids.insert(ids.begin(), v.bos);
  return ids;
}

}  // namespace llmasos::shell
