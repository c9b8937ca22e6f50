#include "model/chat/conversation.h"

#include <string>

#include "model/tokenizer/vocab_util.h"

namespace llmasos::chat {

StatusOr<ChatTemplate> ChatTemplateFor(const tokenizer::Tokenizer& tokenizer,
                                             const std::string& name) {
  if (!name.empty()) return ChatTemplate::FromName(name);
  const tokenizer::Vocab& v = tokenizer.vocab();
  const std::string bos_text = v.bos >= 0 ? v.tokens[v.bos] : "";
  const std::string eos_text = v.eos >= 0 ? v.tokens[v.eos] : "";
  return ChatTemplate::FromJinja(v.chat_template, bos_text, eos_text);
}

StatusOr<std::vector<tokenizer::TokenId>> EncodeConversation(
    const tokenizer::Tokenizer& tokenizer, const ChatTemplate& tmpl,
    std::span<const Message> messages, bool add_generation_prompt, std::string_view tools_json) {
  ASSIGN_OR_RETURN(std::vector<RenderedPiece> pieces,
                   tmpl.RenderPieces(messages, add_generation_prompt, tools_json));
  // As the model's own tokenizer does with the whole rendered prompt: split it at special
  // tokens, encode the text between them in one go. But special tokens are looked for only in
  // the template's text: what the user wrote ("<|im_start|>" typed in a message) stays plain
  // text, so a message cannot forge a turn.
  const tokenizer::SpecialTokenSplitter specials(tokenizer.vocab());
  std::vector<tokenizer::TokenId> ids;
  std::string run;  // plain text since the last special token
  auto flush = [&] {
    std::vector<tokenizer::TokenId> part = tokenizer.Encode(run, false, /*parse_special=*/false);
    ids.insert(ids.end(), part.begin(), part.end());
    run.clear();
  };
  std::vector<tokenizer::SpecialTokenSplitter::Fragment> fragments;
  for (const RenderedPiece& piece : pieces) {
    if (piece.is_content) {
      run += piece.text;
      continue;
    }
    fragments.clear();
    specials.Split(piece.text, /*control=*/true, &fragments);
    for (const auto& f : fragments) {
      if (f.id == tokenizer::kNoToken) {
        run += f.text;
        continue;
      }
      if (!run.empty()) flush();
      ids.push_back(f.id);
    }
  }
  if (!run.empty()) flush();
  const tokenizer::Vocab& v = tokenizer.vocab();
  if (v.add_bos && v.bos >= 0 && (ids.empty() || ids.front() != v.bos)) ids.insert(ids.begin(), v.bos);
  return ids;
}

}  // namespace llmasos::chat
