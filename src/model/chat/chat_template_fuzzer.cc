// Fuzzes FromJinja (the Jinja interpreter) on arbitrary template text, then Render with fuzzed
// messages, checking the properties every rendering must have; each built-in family renders the
// same messages too.
//
// Input layout: <jinja text> \0 <bos> \0 <flags byte> then messages as <role> \0 <content> \0 ...
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/chat/chat_template.h"
#include "model/chat/jinja/python_text.h"
#include "util/logging.h"

using llmasos::chat::ChatTemplate;
using llmasos::chat::Message;

namespace {

std::string_view NextField(std::string_view* rest) {
  const size_t end = rest->find('\0');
  std::string_view field = rest->substr(0, end);
  *rest = end == std::string_view::npos ? std::string_view() : rest->substr(end + 1);
  return field;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view jinja = NextField(&rest);
  const std::string_view bos = NextField(&rest);
  const std::string_view flags = NextField(&rest);
  const bool add_generation_prompt = !flags.empty() && (flags[0] & 1);
  std::vector<Message> messages;
  while (!rest.empty() && messages.size() < 64) {
    Message m;
    m.role = std::string(NextField(&rest));
    m.content = std::string(NextField(&rest));
    messages.push_back(std::move(m));
  }

  // PythonStrip is idempotent and never grows its input.
  const std::string stripped = llmasos::chat::PythonStrip(jinja);
  CHECK(stripped.size() <= jinja.size());
  CHECK(llmasos::chat::PythonStrip(stripped) == stripped);

  std::vector<ChatTemplate> templates;
  llmasos::StatusOr<ChatTemplate> from_jinja = ChatTemplate::FromJinja(jinja, bos, "</s>");
  if (from_jinja.ok()) {
    templates.push_back(from_jinja->WithFixedTime(1));
  } else {
    CHECK(!from_jinja.status().message().empty());
  }
  static constexpr const char* kFamilies[] = {"chatml", "llama3", "llama2", "zephyr", "gemma"};
  const unsigned family_idx = flags.empty() ? 0u : static_cast<unsigned char>(flags[0]) >> 1;
  templates.push_back(*ChatTemplate::FromName(kFamilies[family_idx % 5]));
  for (const ChatTemplate& t : templates) {
    llmasos::StatusOr<std::string> out = t.Render(messages, add_generation_prompt);
    if (!out.ok()) {
      CHECK(!out.status().message().empty());
      continue;
    }
    CHECK(!messages.empty());
    // The pieces concatenate to the rendering, are never empty and alternate in kind.
    llmasos::StatusOr<std::vector<llmasos::chat::RenderedPiece>> pieces =
        t.RenderPieces(messages, add_generation_prompt);
    CHECK(pieces.ok());
    std::string joined;
    for (size_t i = 0; i < pieces->size(); ++i) {
      CHECK(!(*pieces)[i].text.empty());
      CHECK(i == 0 || (*pieces)[i].is_content != (*pieces)[i - 1].is_content);
      joined += (*pieces)[i].text;
    }
    CHECK(joined == *out);
    // In a built-in family every message's content reaches the rendering (stripped in the
    // trimming families); a model's template decides for itself.
    for (const Message& m : messages) {
      if (t.is_jinja()) break;
      if (m.role == "system" && t.family() == llmasos::chat::TemplateFamily::kLlama2) continue;
      CHECK(out->find(llmasos::chat::PythonStrip(m.content)) != std::string::npos);
    }
  }
  return 0;
}
