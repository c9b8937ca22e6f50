// Chat templates: turns a conversation into the prompt text the model was trained on.
// The model's own Jinja template (tokenizer.chat_template) is recognised by its markers and
// rendered by a native renderer for that family; a template it cannot render gives
// kUnimplemented naming what it did not recognise, never a wrong prompt.
//
// Thread safety: immutable after creation.
#ifndef LLMASOS_MODEL_CHAT_CHAT_TEMPLATE_H_
#define LLMASOS_MODEL_CHAT_CHAT_TEMPLATE_H_

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace llmasos::chat {

struct Message {
  std::string role;  // "system", "user", "assistant" (others passed through where allowed)
  std::string content;
};

enum class TemplateFamily {
  kChatMl,  // <|im_start|>role\ncontent<|im_end|>\n  (SmolLM2, Qwen2, ...)
  kLlama3,  // <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>
  kLlama2,  // [INST] ... [/INST]
  kZephyr,  // <|user|>\n...</s>
  kGemma,   // <start_of_turn>user\n...<end_of_turn>
};

// Python's str.strip() with no argument, which Jinja's `trim` filter and `.strip()` call:
// removes leading and trailing Unicode whitespace (ASCII \t \n \v \f \r space, \x1c-\x1f,
// U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). Bytes that
// are not valid UTF-8 are never whitespace.
//
// Which families transform message content (as their reference templates do):
//   llama3: every message's content is stripped.
//   gemma:  every message's content is stripped.
//   llama2: every user/assistant content is stripped; the first user message, when a system
//           message precedes it, is stripped together with the <<SYS>> block in front of it
//           (so its leading whitespace stays, and an all-whitespace user message also loses
//           the "\n\n" after <</SYS>>). The system content itself is not stripped.
//   chatml, zephyr: content is used as is. A default system prompt is inserted verbatim.
std::string PythonStrip(std::string_view text);

// One stretch of a rendering: template text (its special tokens are meant to be parsed as
// such) or message content (caller-supplied text, in which special-token text must stay plain
// text). Roles count as template text; the API layer validates them.
struct RenderedPiece {
  std::string text;
  bool is_content = false;
};

class ChatTemplate {
 public:
  // Recognises the family from a Jinja template's text, including a default system prompt
  // when the template inserts one (SmolLM2's does). bos_text is the BOS token's text; it is
  // written only if the template writes bos_token (or that text). NotFound for an empty
  // template; Unimplemented, naming what was not recognised, for a template of no known family
  // or a look-alike that renders differently (Mistral [INST], Phi-3 <|end|>, Llama-3.1, Qwen3
  // <think>, Gemma-3). Llama-2 and Zephyr write eos_token as "</s>", their tokenizers' EOS.
  static StatusOr<ChatTemplate> FromJinja(std::string_view jinja, std::string_view bos_text);
  // By name: "chatml", "llama3", "llama2", "zephyr", "gemma", with the family's usual BOS text
  // ("<|begin_of_text|>", "<s>", "<bos>"; none for chatml and zephyr). InvalidArgument otherwise.
  static StatusOr<ChatTemplate> FromName(std::string_view name);

  TemplateFamily family() const { return family_; }
  std::string_view name() const;
  // Renders the conversation; with add_generation_prompt the text ends where the assistant's
  // reply begins. InvalidArgument for an empty conversation or a role the family cannot hold.
  StatusOr<std::string> Render(std::span<const Message> messages, bool add_generation_prompt) const;
  // The same rendering split into pieces (never empty, neighbours of different kinds), so a
  // caller can tokenise content without parsing special tokens in it. The texts concatenate to
  // Render's output; content pieces are already transformed as the family does (see
  // PythonStrip above), so no caller needs to re-apply the trimming.
  StatusOr<std::vector<RenderedPiece>> RenderPieces(std::span<const Message> messages,
                                                    bool add_generation_prompt) const;
  // Strings that end an assistant turn in this family ("<|im_end|>", "<|eot_id|>", ...).
  std::vector<std::string> EndOfTurnStrings() const;

 private:
  TemplateFamily family_ = TemplateFamily::kChatMl;
  std::string default_system_;  // inserted when the first message is not a system message
  std::string bos_text_;
  // ChatML templates with <tool_response> (Qwen2.5): a run of "tool" messages becomes one
  // user turn of <tool_response> blocks instead of a turn with role "tool".
  bool tool_responses_as_user_ = false;
};

}  // namespace llmasos::chat

#endif  // LLMASOS_MODEL_CHAT_CHAT_TEMPLATE_H_
