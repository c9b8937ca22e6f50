// Chat templates: turns a conversation into the prompt text the model was trained on.
// A model's own template (tokenizer.chat_template, Jinja) is run by the project's Jinja
// interpreter (model/chat/jinja), exactly as Hugging Face transformers renders it; the built-in
// families (FromName) are the fallback for files without one. Either way the rendering comes in
// pieces that say which text is the template's (special tokens allowed) and which came from the
// caller (plain text), so a message cannot forge a turn.
//
// Thread safety: immutable after creation; Render may be called from several threads at once.
#ifndef LLMASOS_MODEL_CHAT_CHAT_TEMPLATE_H_
#define LLMASOS_MODEL_CHAT_CHAT_TEMPLATE_H_

#include <ctime>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace llmasos::chat::jinja {
class Template;
}  // namespace llmasos::chat::jinja

namespace llmasos::chat {

// A call the assistant made to a tool (OpenAI's tool_calls[i].function).
struct ToolCall {
  std::string id;         // "" when the caller gave none
  std::string name;
  std::string arguments;  // JSON text; a JSON object reaches the template as a mapping
};

struct Message {
  std::string role;  // "system", "user", "assistant", "tool" (others passed through where allowed)
  std::string content;
  // The content is JSON null rather than a string (an assistant turn that only calls tools).
  bool null_content = false;
  std::vector<ToolCall> tool_calls = {};  // assistant turns; reaches the template only when not empty
  std::string tool_call_id = {};          // tool results; reaches the template only when not empty
  std::string name = {};                  // tool results: the tool's name; likewise
};

enum class TemplateFamily {
  kChatMl,  // <|im_start|>role\ncontent<|im_end|>\n  (SmolLM2, Qwen2, ...)
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  kLlama2,  // [INST] ... [/INST]
  kZephyr,  // <|user|>\n...</s>
  kGemma,   // <start_of_turn>user\n...<end_of_turn>
};

// Which built-in families transform message content (as their reference templates do, using
// Python's str.strip(): PythonStrip in jinja/python_text.h):
//   llama3: every message's content is stripped.
//   gemma:  every message's content is stripped.
//   llama2: every user/assistant content is stripped; the first user message, when a system
//           message precedes it, is stripped together with the <<SYS>> block in front of it
//           (so its leading whitespace stays, and an all-whitespace user message also loses
//           the "\n\n" after <</SYS>>). The system content itself is not stripped.
//   chatml, zephyr: content is used as is.

// One stretch of a rendering: template text (its special tokens are meant to be parsed as
// such) or message content (caller-supplied text, in which special-token text must stay plain
// text). Roles count as template text; the API layer validates them.
struct RenderedPiece {
  std::string text;
  bool is_content = false;
};

class ChatTemplate {
 public:
  // Parses a model's Jinja template. bos_text and eos_text are the values of the template's
  // bos_token and eos_token. NotFound for an empty template (choose a built-in by name);
  // InvalidArgument naming the line and column for a template the interpreter cannot parse.
  static StatusOr<ChatTemplate> FromJinja(std::string_view jinja, std::string_view bos_text,
                                          std::string_view eos_text = "");
  // A built-in family by name: "chatml", "llama3", "llama2", "zephyr", "gemma", with the family's
  // usual BOS text ("<|begin_of_text|>", "<s>", "<bos>"; none for chatml and zephyr).
  // InvalidArgument otherwise.
  static StatusOr<ChatTemplate> FromName(std::string_view name);

  // True for a model's own template; family() is then meaningless.
  bool is_jinja() const { return jinja_ != nullptr; }
  TemplateFamily family() const { return family_; }
  // The family's name, or "jinja" for a model's own template.
  std::string_view name() const;
  // Renders the conversation; with add_generation_prompt the text ends where the assistant's
  // reply begins. tools_json is a JSON array of tool definitions (OpenAI's `tools`), or empty
  // for none. InvalidArgument for an empty conversation, a role the family cannot hold, tools
  // given to a built-in family, malformed tools or tool-call arguments, or an error the
  // template raises (naming its line and column); ResourceExhausted when a template exceeds the
  // interpreter's limits.
  StatusOr<std::string> Render(std::span<const Message> messages, bool add_generation_prompt,
                               std::string_view tools_json = {}) const;
  // The same rendering split into pieces (never empty, neighbours of different kinds), so a
  // caller can tokenise content without parsing special tokens in it. The texts concatenate to
  // Render's output. Content pieces hold the caller's text (message content, tool definitions
  // and calls) as the template transformed it (trimmed, JSON-encoded, ...).
  StatusOr<std::vector<RenderedPiece>> RenderPieces(std::span<const Message> messages,
                                                    bool add_generation_prompt,
                                                    std::string_view tools_json = {}) const;
  // Strings that end an assistant turn: the family's ("<|im_end|>", "<|eot_id|>", ...), or for a
  // model's own template the known end-of-turn markers it writes (and its eos_token text if it
  // writes eos_token).
  std::vector<std::string> EndOfTurnStrings() const;

  // A copy whose strftime_now() formats `now` (seconds since the epoch) instead of the clock,
  // so a rendering can be reproduced (tests).
  ChatTemplate WithFixedTime(std::time_t now) const {
    ChatTemplate t = *this;
    t.now_ = now;
    return t;
  }

 private:
  StatusOr<std::vector<RenderedPiece>> RenderJinja(std::span<const Message> messages,
                                                   bool add_generation_prompt,
                                                   std::string_view tools_json) const;

  TemplateFamily family_ = TemplateFamily::kChatMl;
  std::string bos_text_;
  std::string eos_text_;
  std::shared_ptr<const jinja::Template> jinja_;  // a model's own template; null for a family
  std::vector<std::string> end_of_turn_;          // for a model's own template
  std::time_t now_ = 0;                           // 0: the clock
};

}  // namespace llmasos::chat

#endif  // LLMASOS_MODEL_CHAT_CHAT_TEMPLATE_H_
