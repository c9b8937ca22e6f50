// chat_template_tool: renders one conversation with ChatTemplate, for the jinja2 oracle tests.
//
// stdin: {"template": <jinja text> | null, "name": "<family>" (when template is null),
//         "bos": "<bos text>", "eos": "<eos text>",
//         "messages": [{"role": ..., "content": <string or null>,
//                       "tool_calls": [{"id": ..., "type": "function",
//                                       "function": {"name": ..., "arguments": <object or JSON text>}}],
//                       "tool_call_id": ..., "name": ...}, ...],
//         "tools": [<tool definition>, ...] (optional), "add_generation_prompt": true|false,
//         "now": <seconds since the epoch for strftime_now> (optional), "pieces": true|false}
// stdout: the rendered text, byte for byte; with "pieces": true, a JSON array of
// {"text": ..., "content": bool} instead. On any error: the message on stderr, exit 1.
#include <iostream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/chat/chat_template.h"

namespace {

using llmasos::Status;
using llmasos::StatusOr;
using llmasos::chat::ChatTemplate;
using llmasos::chat::Message;
using llmasos::chat::ToolCall;
using nlohmann::ordered_json;

StatusOr<std::string> StringField(const ordered_json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return llmasos::InvalidArgumentError(where + " has no \"" + key + "\"");
  if (!it->is_string()) return llmasos::InvalidArgumentError(where + "." + key + " is not a string");
  return it->get<std::string>();
}

StatusOr<std::string> OptionalString(const ordered_json& obj, const char* key, const std::string& where) {
  if (!obj.contains(key) || obj[key].is_null()) return std::string();
  return StringField(obj, key, where);
}

StatusOr<Message> ParseMessage(const ordered_json& m, const std::string& where) {
  if (!m.is_object()) return llmasos::InvalidArgumentError(where + " is not an object");
  Message msg;
  ASSIGN_OR_RETURN(msg.role, StringField(m, "role", where));
  if (m.contains("content") && m["content"].is_null()) {
    msg.null_content = true;
  } else {
    ASSIGN_OR_RETURN(msg.content, StringField(m, "content", where));
  }
  ASSIGN_OR_RETURN(msg.tool_call_id, OptionalString(m, "tool_call_id", where));
  ASSIGN_OR_RETURN(msg.name, OptionalString(m, "name", where));
  if (m.contains("tool_calls")) {
    if (!m["tool_calls"].is_array()) return llmasos::InvalidArgumentError(where + ".tool_calls is not an array");
    for (size_t k = 0; k < m["tool_calls"].size(); ++k) {
      const ordered_json& c = m["tool_calls"][k];
      const std::string cw = where + ".tool_calls[" + std::to_string(k) + "]";
      if (!c.is_object() || !c.contains("function") || !c["function"].is_object()) {
        return llmasos::InvalidArgumentError(cw + " needs a \"function\" object");
      }
      ToolCall call;
      ASSIGN_OR_RETURN(call.id, OptionalString(c, "id", cw));
      ASSIGN_OR_RETURN(call.name, StringField(c["function"], "name", cw + ".function"));
      const ordered_json& args = c["function"]["arguments"];
      call.arguments = args.is_string() ? args.get<std::string>() : args.dump();
      msg.tool_calls.push_back(std::move(call));
    }
  }
  return msg;
}

StatusOr<std::string> Run(const std::string& input) {
  ordered_json req = ordered_json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded()) return llmasos::InvalidArgumentError("stdin is not valid JSON");
  if (!req.is_object()) return llmasos::InvalidArgumentError("stdin must be a JSON object");

  ASSIGN_OR_RETURN(std::string bos, OptionalString(req, "bos", "request"));
  ASSIGN_OR_RETURN(std::string eos, OptionalString(req, "eos", "request"));
  std::optional<ChatTemplate> tmpl;
  if (req.contains("template") && !req["template"].is_null()) {
    ASSIGN_OR_RETURN(std::string jinja, StringField(req, "template", "request"));
    ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::FromJinja(jinja, bos, eos));
    tmpl = std::move(t);
  } else {
    ASSIGN_OR_RETURN(std::string name, StringField(req, "name", "request"));
    ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::FromName(name));
    tmpl = std::move(t);
  }
  if (req.contains("now")) {
    if (!req["now"].is_number_integer()) return llmasos::InvalidArgumentError("request.now is not an integer");
    tmpl = tmpl->WithFixedTime(req["now"].get<std::time_t>());
  }

  bool add_generation_prompt = false;
  if (req.contains("add_generation_prompt")) {
    if (!req["add_generation_prompt"].is_boolean()) {
      return llmasos::InvalidArgumentError("request.add_generation_prompt is not a boolean");
    }
    add_generation_prompt = req["add_generation_prompt"].get<bool>();
  }
  if (!req.contains("messages") || !req["messages"].is_array()) {
    return llmasos::InvalidArgumentError("request.messages must be an array");
  }
  std::vector<Message> messages;
  for (size_t i = 0; i < req["messages"].size(); ++i) {
    ASSIGN_OR_RETURN(Message msg, ParseMessage(req["messages"][i], "messages[" + std::to_string(i) + "]"));
    messages.push_back(std::move(msg));
  }
  std::string tools;
  if (req.contains("tools") && !req["tools"].is_null()) tools = req["tools"].dump();
  bool pieces = false;
  if (req.contains("pieces")) {
    if (!req["pieces"].is_boolean()) return llmasos::InvalidArgumentError("request.pieces is not a boolean");
    pieces = req["pieces"].get<bool>();
  }
  if (!pieces) return tmpl->Render(messages, add_generation_prompt, tools);
  ASSIGN_OR_RETURN(std::vector<llmasos::chat::RenderedPiece> parts,
                   tmpl->RenderPieces(messages, add_generation_prompt, tools));
  ordered_json out = ordered_json::array();
  for (const auto& p : parts) out.push_back({{"text", p.text}, {"content", p.is_content}});
  // Invalid UTF-8 in content is replaced rather than failing the dump.
  return out.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

}  // namespace

int main() {
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  StatusOr<std::string> out = Run(input);
  if (!out.ok()) {
    std::cerr << out.status().ToString() << "\n";
    return 1;
  }
  std::cout << *out;
  return std::cout.good() ? 0 : 1;
}
