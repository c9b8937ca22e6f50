// JSON in and out of template values: tojson as transformers defines it (json.dumps with
// ensure_ascii=False: no HTML escaping, keys in insertion order unless sort_keys), and values
// built from the caller's JSON (tool definitions, tool-call arguments).
#ifndef LLMASOS_MODEL_CHAT_JINJA_JSON_H_
#define LLMASOS_MODEL_CHAT_JINJA_JSON_H_

#include <nlohmann/json.hpp>

#include "model/chat/jinja/value.h"
#include "util/status.h"

namespace llmasos::chat::jinja {

struct JsonStyle {
  int indent = -1;  // < 0: one line
  std::string item_separator = ", ";  // Python's defaults: ", " on one line, "," when indented
  std::string key_separator = ": ";
  bool sort_keys = false;
};

// Python's json.dumps(value, ensure_ascii=False, ...). Strings keep their content marks.
// InvalidArgument for a value JSON cannot hold (undefined, a function, a non-string key).
StatusOr<Text> ToJson(const Value& value, const JsonStyle& style);

// The value of a parsed JSON document; every string in it is marked as content when
// `is_content` (it came from the caller, not the template). InvalidArgument past 100 levels
// of nesting. Pass depth 0.
StatusOr<Value> FromJson(const nlohmann::ordered_json& json, bool is_content, int depth);

}  // namespace llmasos::chat::jinja

#endif  // LLMASOS_MODEL_CHAT_JINJA_JSON_H_
