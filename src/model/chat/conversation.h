// Turns a conversation into prompt tokens so that only the chat template's own markers can
// become special tokens: text a user typed ("<|im_start|>") is always encoded as plain text.
#ifndef LLMASOS_MODEL_CHAT_CONVERSATION_H_
#define LLMASOS_MODEL_CHAT_CONVERSATION_H_

#include <span>
#include <vector>

#include "model/chat/chat_template.h"
#include "model/tokenizer/tokenizer.h"
#include "util/status.h"

namespace llmasos::chat {

// The chat template for a model: `name` if not empty, else the model's own template.
StatusOr<ChatTemplate> ChatTemplateFor(const tokenizer::Tokenizer& tokenizer,
                                             const std::string& name);

// Renders `messages` (and `tools_json`, a JSON array of tool definitions, or empty) with `tmpl`
// and encodes the result: the template's text with special tokens parsed, the caller's text
// (message content, tool definitions and calls) without.
StatusOr<std::vector<tokenizer::TokenId>> EncodeConversation(
    const tokenizer::Tokenizer& tokenizer, const ChatTemplate& tmpl,
    std::span<const Message> messages, bool add_generation_prompt,
    std::string_view tools_json = {});

}  // namespace llmasos::chat

#endif  // LLMASOS_MODEL_CHAT_CONVERSATION_H_
