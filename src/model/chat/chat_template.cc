#include "model/chat/chat_template.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "model/chat/jinja/json.h"
#include "model/chat/jinja/python_text.h"
#include "model/chat/jinja/template.h"

namespace llmasos::chat {
namespace {

// ---- Families ----

struct FamilyInfo {
  TemplateFamily family;
  std::string_view name;
  std::string_view default_bos;  // FromName's BOS text
  std::string_view turn_end;     // the end-of-turn stop string
};

constexpr std::array<FamilyInfo, 5> kFamilies = {{
    {TemplateFamily::kChatMl, "chatml", "", "<|im_end|>"},
    {TemplateFamily::kLlama3, "llama3", "<|begin_of_text|>", "<|eot_id|>"},
    {TemplateFamily::kLlama2, "llama2", "<s>", "</s>"},
    {TemplateFamily::kZephyr, "zephyr", "", "</s>"},
    {TemplateFamily::kGemma, "gemma", "<bos>", "<end_of_turn>"},
}};

// Strings that end an assistant turn in the templates of the popular families; a model's own
// template stops on those it writes.
constexpr std::array<std::string_view, 9> kEndOfTurnMarkers = {
    "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>",
    "<｜end▁of▁sentence｜>",  // DeepSeek
    "<|endoftext|>", "<|END_OF_TURN_TOKEN|>", "<|return|>"};

const FamilyInfo& Info(TemplateFamily f) {
  for (const FamilyInfo& i : kFamilies) {
    if (i.family == f) return i;
  }
  CHECK(false) << "unknown template family " << static_cast<int>(f);
  return kFamilies[0];
}

// The Llama-2 and Zephyr families end turns with their tokenizers' EOS text.
constexpr std::string_view kEosText = "</s>";

Status CheckRoles(std::span<const Message> messages) {
  if (messages.empty()) return InvalidArgumentError("the conversation has no messages");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role.empty()) {
      return InvalidArgumentError("message " + std::to_string(i) + " has an empty role");
    }
  }
  return OkStatus();
}

// Llama-2 and Gemma: user at even positions, assistant at odd ones (after a leading system
// message where the family allows one).
Status CheckAlternation(std::span<const Message> turns, size_t offset, std::string_view family) {
  for (size_t i = 0; i < turns.size(); ++i) {
    const std::string_view want = i % 2 == 0 ? "user" : "assistant";
    if (turns[i].role != want) {
      return InvalidArgumentError(std::string(family) + " needs roles alternating user/assistant; "
                                  "message " + std::to_string(i + offset) + " has role '" +
                                  turns[i].role + "', expected '" + std::string(want) + "'");
    }
  }
  return OkStatus();
}

// Builds a rendering as pieces, merging neighbours of the same kind and dropping empty ones.
class PieceWriter {
 public:
  void Template(std::string_view text) { Add(text, false); }
  void Content(std::string_view text) { Add(text, true); }
  void Append(const PieceWriter& other) {
    for (const RenderedPiece& p : other.pieces_) Add(p.text, p.is_content);
  }
  // Python's strip() over the concatenation, applied across piece boundaries (whitespace never
  // spans a boundary: every piece holds whole characters).
  void Strip() {
    while (!pieces_.empty()) {
      std::string& t = pieces_.front().text;
      t.erase(0, LeadingSpaceBytes(t));
      if (!t.empty()) break;
      pieces_.erase(pieces_.begin());
    }
    while (!pieces_.empty()) {
      std::string& t = pieces_.back().text;
      t.resize(t.size() - TrailingSpaceBytes(t));
      if (!t.empty()) break;
      pieces_.pop_back();
    }
  }
  std::vector<RenderedPiece> Take() && { return std::move(pieces_); }

 private:
  void Add(std::string_view text, bool is_content) {
    if (text.empty()) return;
    if (!pieces_.empty() && pieces_.back().is_content == is_content) {
      pieces_.back().text.append(text);
    } else {
      pieces_.push_back({std::string(text), is_content});
    }
  }
  std::vector<RenderedPiece> pieces_;
};

// A message as transformers hands it to a template: a mapping with role and content, plus
// tool_calls / tool_call_id / name only when the message has them (templates test
// `'tool_calls' in message` and `message.name is defined`). Caller text is marked as content.
StatusOr<jinja::Value> MessageValue(const Message& m, size_t index) {
  using jinja::Value;
  auto d = std::make_shared<jinja::Dict>();
  d->items.emplace_back(Value::String("role"), Value::String(m.role));
  d->items.emplace_back(Value::String("content"),
                        m.null_content ? Value::None() : Value::String(m.content, /*is_content=*/true));
  if (!m.tool_calls.empty()) {
    jinja::List calls;
    for (size_t k = 0; k < m.tool_calls.size(); ++k) {
      const ToolCall& c = m.tool_calls[k];
      // Arguments that are a JSON object reach the template as a mapping (as transformers
      // expects them); any other text stays a string.
      Value arguments = Value::String(c.arguments, /*is_content=*/true);
      nlohmann::ordered_json parsed = nlohmann::ordered_json::parse(c.arguments, nullptr, false);
      if (!parsed.is_discarded() && parsed.is_object()) {
        StatusOr<Value> v = jinja::FromJson(parsed, /*is_content=*/true, 0);
        if (!v.ok()) {
          return v.status().Annotate("message " + std::to_string(index) + " tool call " + std::to_string(k));
        }
        arguments = std::move(v).value();
      }
      auto function = std::make_shared<jinja::Dict>();
      function->items.emplace_back(Value::String("name"), Value::String(c.name, true));
      function->items.emplace_back(Value::String("arguments"), std::move(arguments));
      auto call = std::make_shared<jinja::Dict>();
      if (!c.id.empty()) call->items.emplace_back(Value::String("id"), Value::String(c.id, true));
      call->items.emplace_back(Value::String("type"), Value::String("function"));
      call->items.emplace_back(Value::String("function"), Value::MakeDict(std::move(function)));
      calls.push_back(Value::MakeDict(std::move(call)));
    }
    d->items.emplace_back(Value::String("tool_calls"), Value::MakeList(std::move(calls)));
  }
  if (!m.tool_call_id.empty()) {
    d->items.emplace_back(Value::String("tool_call_id"), Value::String(m.tool_call_id, true));
  }
  if (!m.name.empty()) d->items.emplace_back(Value::String("name"), Value::String(m.name, true));
  return Value::MakeDict(std::move(d));
}

}  // namespace

StatusOr<ChatTemplate> ChatTemplate::FromJinja(std::string_view jinja, std::string_view bos_text,
                                               std::string_view eos_text) {
  if (PythonStrip(jinja).empty()) {
    return NotFoundError(
        "the model has no chat template (tokenizer.chat_template is empty); choose one by name: "
        "chatml, llama3, llama2, zephyr, gemma");
  }
  StatusOr<jinja::Template> parsed = jinja::Template::Parse(jinja);
  if (!parsed.ok()) return parsed.status().Annotate("the model's chat template (tokenizer.chat_template)");
  ChatTemplate t;
  t.jinja_ = std::make_shared<const jinja::Template>(std::move(parsed).value());
  t.bos_text_ = std::string(bos_text);
  t.eos_text_ = std::string(eos_text);
  for (std::string_view marker : kEndOfTurnMarkers) {
    if (jinja.find(marker) != std::string_view::npos) t.end_of_turn_.emplace_back(marker);
  }
  if (!eos_text.empty() && jinja.find("eos_token") != std::string_view::npos &&
      std::find(t.end_of_turn_.begin(), t.end_of_turn_.end(), eos_text) == t.end_of_turn_.end()) {
    t.end_of_turn_.emplace_back(eos_text);
  }
  return t;
}

StatusOr<ChatTemplate> ChatTemplate::FromName(std::string_view name) {
  for (const FamilyInfo& info : kFamilies) {
    if (info.name != name) continue;
    ChatTemplate t;
    t.family_ = info.family;
    t.bos_text_ = std::string(info.default_bos);
    return t;
  }
  return InvalidArgumentError("unknown chat template name '" + std::string(name) +
                              "'; known: chatml, llama3, llama2, zephyr, gemma");
}

StatusOr<std::vector<RenderedPiece>> ChatTemplate::RenderJinja(std::span<const Message> messages,
                                                              bool add_generation_prompt,
                                                              std::string_view tools_json) const {
  using jinja::Value;
  jinja::List list;
  for (size_t i = 0; i < messages.size(); ++i) {
    ASSIGN_OR_RETURN(Value m, MessageValue(messages[i], i));
    list.push_back(std::move(m));
  }
  Value tools = Value::None();
  if (!tools_json.empty()) {
    nlohmann::ordered_json parsed = nlohmann::ordered_json::parse(tools_json, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_array()) {
      return InvalidArgumentError("tools must be a JSON array of tool definitions");
    }
    ASSIGN_OR_RETURN(tools, jinja::FromJson(parsed, /*is_content=*/true, 0));
  }
  // The variables transformers' apply_chat_template passes (tools and documents are None when
  // absent, so templates may test either `is defined` or `is none`).
  jinja::Dict vars;
  vars.items.emplace_back(Value::String("messages"), Value::MakeList(std::move(list)));
  vars.items.emplace_back(Value::String("tools"), std::move(tools));
  vars.items.emplace_back(Value::String("documents"), Value::None());
  vars.items.emplace_back(Value::String("add_generation_prompt"), Value::Bool(add_generation_prompt));
  vars.items.emplace_back(Value::String("bos_token"), Value::String(bos_text_));
  vars.items.emplace_back(Value::String("eos_token"), Value::String(eos_text_));
  jinja::RenderOptions options;
  options.now = now_;
  StatusOr<jinja::Text> text = jinja_->Render(vars, options);
  if (!text.ok()) return text.status().Annotate("the model's chat template (tokenizer.chat_template)");
  if (text->empty()) return InvalidArgumentError("the model's chat template rendered an empty prompt");
  std::vector<RenderedPiece> pieces;
  text->ForEachRun([&](std::string_view run, bool is_content) {
    pieces.push_back({std::string(run), is_content});
  });
  return pieces;
}

std::string_view ChatTemplate::name() const { return jinja_ ? "jinja" : Info(family_).name; }

std::vector<std::string> ChatTemplate::EndOfTurnStrings() const {
  if (jinja_) return end_of_turn_;
  return {std::string(Info(family_).turn_end)};
}

StatusOr<std::string> ChatTemplate::Render(std::span<const Message> messages,
                                           bool add_generation_prompt,
                                           std::string_view tools_json) const {
  ASSIGN_OR_RETURN(std::vector<RenderedPiece> pieces,
                   RenderPieces(messages, add_generation_prompt, tools_json));
  std::string out;
  for (const RenderedPiece& p : pieces) out += p.text;
  return out;
}

StatusOr<std::vector<RenderedPiece>> ChatTemplate::RenderPieces(std::span<const Message> messages,
                                                               bool add_generation_prompt,
                                                               std::string_view tools_json) const {
  RETURN_IF_ERROR(CheckRoles(messages));
  if (jinja_) return RenderJinja(messages, add_generation_prompt, tools_json);
  if (!tools_json.empty()) {
    return InvalidArgumentError("the built-in " + std::string(name()) +
                                " chat template cannot describe tools; use a model whose own "
                                "chat template supports them");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].tool_calls.empty()) {
      return InvalidArgumentError("message " + std::to_string(i) + " has tool calls, which the built-in " +
                                  std::string(name()) + " chat template cannot render");
    }
  }
  PieceWriter out;
  switch (family_) {
    case TemplateFamily::kChatMl:
      for (const Message& m : messages) {
        out.Template("<|im_start|>" + m.role + "\n");
        out.Content(m.content);
        out.Template("<|im_end|>\n");
      }
      if (add_generation_prompt) out.Template("<|im_start|>assistant\n");
      break;

    case TemplateFamily::kLlama3:
      out.Template(bos_text_);
      for (const Message& m : messages) {
        out.Template("<|start_header_id|>" + m.role + "<|end_header_id|>\n\n");
        out.Content(PythonStrip(m.content));
        out.Template("<|eot_id|>");
      }
      if (add_generation_prompt) out.Template("<|start_header_id|>assistant<|end_header_id|>\n\n");
      break;

    case TemplateFamily::kLlama2: {
      // The reference template ignores add_generation_prompt: a conversation ending in a user
      // turn already ends where the reply begins (after " [/INST]").
      const bool has_system = messages.front().role == "system";
      std::span<const Message> turns = messages.subspan(has_system ? 1 : 0);
      if (turns.empty()) {
        return InvalidArgumentError("llama2 needs a user message after the system message");
      }
      RETURN_IF_ERROR(CheckAlternation(turns, has_system ? 1 : 0, "llama2"));
      for (size_t i = 0; i < turns.size(); ++i) {
        // The template strips the whole of `content`, system block included.
        PieceWriter content;
        if (i == 0 && has_system) {
          content.Template("<<SYS>>\n");
          content.Content(messages.front().content);
          content.Template("\n<</SYS>>\n\n");
        }
        content.Content(turns[i].content);
        content.Strip();
        if (turns[i].role == "user") {
          out.Template(bos_text_ + "[INST] ");
          out.Append(content);
          out.Template(" [/INST]");
        } else {
          out.Template(" ");
          out.Append(content);
          out.Template(" " + std::string(kEosText));
        }
      }
      break;
    }

    case TemplateFamily::kZephyr:
      for (size_t i = 0; i < messages.size(); ++i) {
        const std::string& role = messages[i].role;
        if (role != "user" && role != "system" && role != "assistant") {
          return InvalidArgumentError("zephyr has no role '" + role + "' (message " +
                                      std::to_string(i) + "); use system, user or assistant");
        }
        out.Template("<|" + role + "|>\n");
        out.Content(messages[i].content);
        out.Template(std::string(kEosText) + "\n");
      }
      if (add_generation_prompt) out.Template("<|assistant|>\n");
      break;

    case TemplateFamily::kGemma:
      if (messages.front().role == "system") {
        return InvalidArgumentError("gemma has no system role; put the instructions in the "
                                    "first user message");
      }
      RETURN_IF_ERROR(CheckAlternation(messages, 0, "gemma"));
      out.Template(bos_text_);
      for (const Message& m : messages) {
        const std::string_view role = m.role == "assistant" ? "model" : "user";
        out.Template("<start_of_turn>" + std::string(role) + "\n");
        out.Content(PythonStrip(m.content));
        out.Template("<end_of_turn>\n");
      }
      if (add_generation_prompt) out.Template("<start_of_turn>model\n");
      break;
  }
  return std::move(out).Take();
}

}  // namespace llmasos::chat
