#include "model/chat/chat_template.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace llmasos::chat {
namespace {

// ---- UTF-8 and Python whitespace ----

// Decodes the code point starting at text[pos]; returns its byte length, or 0 if the bytes
// there are not valid UTF-8.
size_t DecodeAt(std::string_view text, size_t pos, uint32_t* cp) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t c = b(pos);
  size_t len;
  uint32_t v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    len = 2;
    v = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    v = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    v = c & 0x07;
  } else {
    return 0;
  }
  if (pos + len > text.size()) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((b(pos + i) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(pos + i) & 0x3F);
  }
  static constexpr std::array<uint32_t, 5> kMin = {0, 0, 0x80, 0x800, 0x10000};
  if (v < kMin[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

// Python's str.isspace() for one code point.
bool IsPythonSpace(uint32_t cp) {
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) return true;
  if (cp < 0x80) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// ---- Jinja string literals ----

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The value of a Jinja string literal's body: Jinja decodes it as Python's "unicode-escape"
// codec does (\n \t \\ \' \xNN \uNNNN ...; an unknown escape keeps its backslash).
std::string Unescape(std::string_view body) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 == body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char e = body[++i];
    switch (e) {
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'v': out.push_back('\v'); break;
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case '\n': break;  // line continuation
      case 'x':
      case 'u':
      case 'U': {
        const size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        uint32_t cp = 0;
        bool ok = i + digits < body.size();
        for (size_t k = 1; ok && k <= digits; ++k) {
          const int h = HexValue(body[i + k]);
          if (h < 0) ok = false;
          cp = cp * 16 + static_cast<uint32_t>(std::max(h, 0));
        }
        if (!ok || cp > 0x10FFFF) {
          out.push_back('\\');
          out.push_back(e);
          break;
        }
        AppendUtf8(cp, &out);
        i += digits;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = 0;
          size_t k = 0;
          while (k < 3 && i + k < body.size() && body[i + k] >= '0' && body[i + k] <= '7') {
            cp = cp * 8 + static_cast<uint32_t>(body[i + k] - '0');
            ++k;
          }
          AppendUtf8(cp, &out);
          i += k - 1;
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

// Every string literal inside the template's {{ }} and {% %} tags, decoded. Text outside tags
// and inside {# #} comments is skipped.
std::vector<std::string> StringLiterals(std::string_view t) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i + 1 < t.size()) {
    if (t[i] != '{' || (t[i + 1] != '{' && t[i + 1] != '%' && t[i + 1] != '#')) {
      ++i;
      continue;
    }
    if (t[i + 1] == '#') {
      size_t end = t.find("#}", i + 2);
      if (end == std::string_view::npos) break;
      i = end + 2;
      continue;
    }
    const char close = t[i + 1] == '{' ? '}' : '%';
    i += 2;
    while (i < t.size()) {
      const char c = t[i];
      if (c == '\'' || c == '"') {
        size_t j = i + 1;
        while (j < t.size() && t[j] != c) j += t[j] == '\\' ? 2 : 1;
        if (j >= t.size()) return out;  // unterminated: nothing more to read
        out.push_back(Unescape(t.substr(i + 1, j - i - 1)));
        i = j + 1;
      } else if (c == close && i + 1 < t.size() && t[i + 1] == '}') {
        i += 2;
        break;
      } else {
        ++i;
      }
    }
  }
  return out;
}

// ---- Families ----

struct FamilyInfo {
  TemplateFamily family;
  std::string_view name;
  std::string_view marker;         // recognises the family in a Jinja template
  std::string_view default_bos;    // FromName's BOS text
  std::string_view system_header;  // a literal holding a whole default system turn starts so
  std::string_view turn_end;       // ... and ends so; also the end-of-turn stop string
};

constexpr std::array<FamilyInfo, 5> kFamilies = {{
    {TemplateFamily::kChatMl, "chatml", "<|im_start|>", "", "<|im_start|>system\n", "<|im_end|>"},
    {TemplateFamily::kLlama3, "llama3", "<|start_header_id|>", "<|begin_of_text|>",
     "<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"},
    {TemplateFamily::kLlama2, "llama2", "[INST]", "<s>", "", "</s>"},
    {TemplateFamily::kZephyr, "zephyr", "<|user|>", "", "", "</s>"},
    {TemplateFamily::kGemma, "gemma", "<start_of_turn>", "<bos>", "", "<end_of_turn>"},
}};

const FamilyInfo& Info(TemplateFamily f) {
  for (const FamilyInfo& i : kFamilies) {
    if (i.family == f) return i;
  }
  CHECK(false) << "unknown template family " << static_cast<int>(f);
  return kFamilies[0];
}

// Llama-2 and Zephyr templates write eos_token, which the contract does not carry; both
// families' tokenizers spell it "</s>".
constexpr std::string_view kEosText = "</s>";

bool Contains(std::string_view text, std::string_view what) {
  return text.find(what) != std::string_view::npos;
}

// Template variants that carry a family's marker but render differently from the family's
// reference template. Each would give a wrong prompt, so each is refused by name.
Status CheckVariant(TemplateFamily family, std::string_view jinja) {
  switch (family) {
    case TemplateFamily::kChatMl:
      if (Contains(jinja, "<think>")) {
        return UnimplementedError(
            "chat template: ChatML with <think> reasoning blocks (Qwen3-style) is not supported");
      }
      break;
    case TemplateFamily::kLlama3:
      if (Contains(jinja, "Cutting Knowledge Date")) {
        return UnimplementedError(
            "chat template: Llama-3.1-style template (dated system header, tools) is not "
            "supported; use --template llama3 to render plain Llama-3 turns");
      }
      if (!Contains(jinja, "trim")) {
        return UnimplementedError(
            "chat template: <|start_header_id|> template that does not trim content is not "
            "the Llama-3 template");
      }
      break;
    case TemplateFamily::kLlama2:
      if (!Contains(jinja, "<<SYS>>")) {
        return UnimplementedError(
            "chat template: [INST] template without <<SYS>> (Mistral-style) is not supported");
      }
      break;
    case TemplateFamily::kZephyr:
      if (Contains(jinja, "<|end|>")) {
        return UnimplementedError(
            "chat template: <|user|> template ending turns with <|end|> (Phi-3-style) is not "
            "supported");
      }
      if (!Contains(jinja, "eos_token")) {
        return UnimplementedError(
            "chat template: <|user|> template that does not end turns with eos_token is not "
            "the Zephyr template");
      }
      break;
    case TemplateFamily::kGemma:
      if (Contains(jinja, "first_user_prefix")) {
        return UnimplementedError(
            "chat template: Gemma-3-style template (system text merged into the first user "
            "turn) is not supported");
      }
      break;
  }
  return OkStatus();
}

// A default system prompt: a literal holding a whole system turn, header to turn end.
StatusOr<std::string> DefaultSystem(const FamilyInfo& info, std::string_view jinja) {
  if (info.system_header.empty()) return std::string();
  std::optional<std::string> found;
  for (const std::string& lit : StringLiterals(jinja)) {
    if (lit.rfind(info.system_header, 0) != 0) continue;
    const size_t end = lit.find(info.turn_end, info.system_header.size());
    if (end == std::string::npos) continue;
    std::string text = lit.substr(info.system_header.size(), end - info.system_header.size());
    if (found && *found != text) {
      return UnimplementedError("chat template: two different default system prompts ('" +
                                *found + "' and '" + text + "')");
    }
    found = std::move(text);
  }
  return found.value_or(std::string());
}

std::string Abbreviate(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 60)) {
    if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  if (text.size() > 60) out += "...";
  return out;
}

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

// Bytes of Python whitespace at the start of `text`.
size_t LeadingSpaceBytes(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    uint32_t cp;
    const size_t len = DecodeAt(text, begin, &cp);
    if (len == 0 || !IsPythonSpace(cp)) break;
    begin += len;
  }
  return begin;
}

// Bytes of Python whitespace at the end of `text`.
size_t TrailingSpaceBytes(std::string_view text) {
  size_t end = text.size();
  while (end > 0) {
    // Step back to the start of the last code point (at most 4 bytes).
    size_t start = end - 1;
    while (start > 0 && end - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) {
      --start;
    }
    uint32_t cp;
    const size_t len = DecodeAt(text, start, &cp);
    if (len != end - start || !IsPythonSpace(cp)) break;
    end = start;
  }
  return text.size() - end;
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

}  // namespace

std::string PythonStrip(std::string_view text) {
  const size_t begin = LeadingSpaceBytes(text);
  text.remove_prefix(begin);
  text.remove_suffix(TrailingSpaceBytes(text));
  return std::string(text);
}

StatusOr<ChatTemplate> ChatTemplate::FromJinja(std::string_view jinja, std::string_view bos_text) {
  if (PythonStrip(jinja).empty()) {
    return NotFoundError(
        "the model has no chat template (tokenizer.chat_template is empty); choose one by name: "
        "chatml, llama3, llama2, zephyr, gemma");
  }
  const FamilyInfo* match = nullptr;
  for (const FamilyInfo& info : kFamilies) {
    if (!Contains(jinja, info.marker)) continue;
    if (match != nullptr) {
      return UnimplementedError("chat template has the markers of two families (" +
                                std::string(match->marker) + " and " + std::string(info.marker) +
                                "); not recognised");
    }
    match = &info;
  }
  if (match == nullptr) {
    return UnimplementedError(
        "chat template not recognised: it has none of the markers <|im_start|> (chatml), "
        "<|start_header_id|> (llama3), [INST] (llama2), <|user|> (zephyr), <start_of_turn> "
        "(gemma); it begins '" + Abbreviate(jinja) + "'");
  }
  RETURN_IF_ERROR(CheckVariant(match->family, jinja));
  ChatTemplate t;
  t.family_ = match->family;
  ASSIGN_OR_RETURN(t.default_system_, DefaultSystem(*match, jinja));
  t.tool_responses_as_user_ =
      match->family == TemplateFamily::kChatMl && Contains(jinja, "<tool_response>");
  // A template that never writes the BOS token (neither bos_token nor its text) gets none.
  if (Contains(jinja, "bos_token") || (!bos_text.empty() && Contains(jinja, bos_text))) {
    t.bos_text_ = std::string(bos_text);
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

std::string_view ChatTemplate::name() const { return Info(family_).name; }

std::vector<std::string> ChatTemplate::EndOfTurnStrings() const {
  return {std::string(Info(family_).turn_end)};
}

StatusOr<std::string> ChatTemplate::Render(std::span<const Message> messages,
                                           bool add_generation_prompt) const {
  ASSIGN_OR_RETURN(std::vector<RenderedPiece> pieces, RenderPieces(messages, add_generation_prompt));
  std::string out;
  for (const RenderedPiece& p : pieces) out += p.text;
  return out;
}

StatusOr<std::vector<RenderedPiece>> ChatTemplate::RenderPieces(std::span<const Message> messages,
                                                               bool add_generation_prompt) const {
  RETURN_IF_ERROR(CheckRoles(messages));
  const bool insert_default = !default_system_.empty() && messages.front().role != "system";
  PieceWriter out;
  switch (family_) {
    case TemplateFamily::kChatMl:
      if (insert_default) out.Template("<|im_start|>system\n" + default_system_ + "<|im_end|>\n");
      for (size_t i = 0; i < messages.size(); ++i) {
        const Message& m = messages[i];
        if (tool_responses_as_user_ && m.role == "tool") {
          if (i == 0 || messages[i - 1].role != "tool") out.Template("<|im_start|>user");
          out.Template("\n<tool_response>\n");
          out.Content(m.content);
          out.Template("\n</tool_response>");
          if (i + 1 == messages.size() || messages[i + 1].role != "tool") out.Template("<|im_end|>\n");
          continue;
        }
        out.Template("<|im_start|>" + m.role + "\n");
        out.Content(m.content);
        out.Template("<|im_end|>\n");
      }
      if (add_generation_prompt) out.Template("<|im_start|>assistant\n");
      break;

    case TemplateFamily::kLlama3:
      out.Template(bos_text_);
      if (insert_default) {
        out.Template("<|start_header_id|>system<|end_header_id|>\n\n" + default_system_ + "<|eot_id|>");
      }
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
