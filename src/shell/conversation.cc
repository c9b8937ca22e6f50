#include "shell/conversation.h"

#include <string>

namespace llmasos::shell {
namespace {

// Marks where a message's content goes in the rendered text. \x01 never occurs in templates,
// and content containing it is refused below, so the split is unambiguous.
constexpr char kMark = '\x01';

std::string Placeholder(size_t idx) { return std::string(1, kMark) + std::to_string(idx) + kMark; }

}  // namespace

StatusOr<chat::ChatTemplate> ChatTemplateFor(const tokenizer::Tokenizer& tokenizer,
                                             const std::string& name) {
  if (!name.empty()) return chat::ChatTemplate::FromName(name);
  const tokenizer::Vocab& v = tokenizer.vocab();
  std::string bos_text = v.bos >= 0 ? v.tokens[v.bos] : "";
  return chat::ChatTemplate::FromJinja(v.chat_template, bos_text);
}

StatusOr<std::vector<tokenizer::TokenId>> EncodeConversation(
    const tokenizer::Tokenizer& tokenizer, const chat::ChatTemplate& tmpl,
    std::span<const chat::Message> messages, bool add_generation_prompt) {
  std::vector<chat::Message> marked(messages.begin(), messages.end());
  for (size_t i = 0; i < marked.size(); ++i) {
    if (marked[i].content.find(kMark) != std::string::npos) {
      return InvalidArgumentError("message " + std::to_string(i) +
                                  " contains the control character U+0001");
    }
    marked[i].content = Placeholder(i);
  }
  ASSIGN_OR_RETURN(std::string rendered, tmpl.Render(marked, add_generation_prompt));
  std::vector<tokenizer::TokenId> ids;
  auto append = [&](std::string_view text, bool parse_special) {
    std::vector<tokenizer::TokenId> part = tokenizer.Encode(text, false, parse_special);
    ids.insert(ids.end(), part.begin(), part.end());
  };
  size_t pos = 0;
  while (pos < rendered.size()) {
    size_t open = rendered.find(kMark, pos);
    if (open == std::string::npos) {
      append(std::string_view(rendered).substr(pos), true);
      break;
    }
    size_t close = rendered.find(kMark, open + 1);
    if (close == std::string::npos) return InternalError("chat template split a placeholder");
    append(std::string_view(rendered).substr(pos, open - pos), true);
    size_t idx = std::stoul(rendered.substr(open + 1, close - open - 1));
    if (idx >= messages.size()) return InternalError("chat template produced a bad placeholder");
    // Templates that trim content (Llama-3) would have trimmed the placeholder, not the text.
    std::string_view content = messages[idx].content;
    if (tmpl.family() == chat::TemplateFamily::kLlama3) {
      size_t b = content.find_first_not_of(" \t\n\r");
      size_t e = content.find_last_not_of(" \t\n\r");
      content = b == std::string_view::npos ? std::string_view() : content.substr(b, e - b + 1);
    }
    append(content, false);
    pos = close + 1;
  }
  const tokenizer::Vocab& v = tokenizer.vocab();
  if (v.add_bos && v.bos >= 0 && (ids.empty() || ids.front() != v.bos)) ids.insert(ids.begin(), v.bos);
  return ids;
}

}  // namespace llmasos::shell
