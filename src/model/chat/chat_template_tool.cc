// chat_template_tool: renders one conversation with ChatTemplate, for the jinja2 oracle test.
//
// stdin: {"template": <jinja text> | null, "name": "<family>" (when template is null),
//         "bos": "<bos text>", "messages": [{"role": ..., "content": ...}, ...],
//         "add_generation_prompt": true|false, "pieces": true|false}
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
using nlohmann::json;

StatusOr<std::string> StringField(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) return llmasos::InvalidArgumentError(where + " has no \"" + key + "\"");
  if (!it->is_string()) return llmasos::InvalidArgumentError(where + "." + key + " is not a string");
  return it->get<std::string>();
}

StatusOr<std::string> Run(const std::string& input) {
  json req = json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded()) return llmasos::InvalidArgumentError("stdin is not valid JSON");
  if (!req.is_object()) return llmasos::InvalidArgumentError("stdin must be a JSON object");

  std::string bos;
  if (req.contains("bos") && !req["bos"].is_null()) {
    ASSIGN_OR_RETURN(bos, StringField(req, "bos", "request"));
  }
  std::optional<ChatTemplate> tmpl;
  if (req.contains("template") && !req["template"].is_null()) {
    ASSIGN_OR_RETURN(std::string jinja, StringField(req, "template", "request"));
    ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::FromJinja(jinja, bos));
    tmpl = std::move(t);
  } else {
    ASSIGN_OR_RETURN(std::string name, StringField(req, "name", "request"));
    ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::FromName(name));
    tmpl = std::move(t);
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
    const json& m = req["messages"][i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return llmasos::InvalidArgumentError(where + " is not an object");
    Message msg;
    ASSIGN_OR_RETURN(msg.role, StringField(m, "role", where));
    ASSIGN_OR_RETURN(msg.content, StringField(m, "content", where));
    messages.push_back(std::move(msg));
  }
  bool pieces = false;
  if (req.contains("pieces")) {
    if (!req["pieces"].is_boolean()) return llmasos::InvalidArgumentError("request.pieces is not a boolean");
    pieces = req["pieces"].get<bool>();
  }
  if (!pieces) return tmpl->Render(messages, add_generation_prompt);
  ASSIGN_OR_RETURN(std::vector<llmasos::chat::RenderedPiece> parts,
                   tmpl->RenderPieces(messages, add_generation_prompt));
  json out = json::array();
  for (const auto& p : parts) out.push_back({{"text", p.text}, {"content", p.is_content}});
  // Invalid UTF-8 in content is replaced rather than failing the dump.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
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
