#include "model/chat/jinja/json.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace llmasos::chat::jinja {
namespace {

void AppendEscaped(const Text& s, Text* out) {
  out->Append("\"", false);
  s.ForEachRun([&](std::string_view run, bool is_content) {
    std::string esc;
    for (char c : run) {
      const auto u = static_cast<unsigned char>(c);
      switch (c) {
        case '"': esc += "\\\""; break;
        case '\\': esc += "\\\\"; break;
        case '\n': esc += "\\n"; break;
        case '\r': esc += "\\r"; break;
        case '\t': esc += "\\t"; break;
        case '\b': esc += "\\b"; break;
        case '\f': esc += "\\f"; break;
        default:
          if (u < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", u);
            esc += buf;
          } else {
            esc.push_back(c);
          }
      }
    }
    out->Append(esc, is_content);
  });
  out->Append("\"", false);
}

Status Write(const Value& v, const JsonStyle& style, int level, Text* out) {
  if (level > 200) return InvalidArgumentError("tojson: value nested too deeply");
  auto newline = [&](int lvl) {
    if (style.indent >= 0) out->Append("\n" + std::string(static_cast<size_t>(style.indent * lvl), ' '), false);
  };
  switch (v.kind()) {
    case Kind::kNone: out->Append("null", false); return OkStatus();
    case Kind::kBool: out->Append(v.as_bool() ? "true" : "false", false); return OkStatus();
    case Kind::kInt: out->Append(std::to_string(v.as_int()), false); return OkStatus();
    case Kind::kFloat: {
      const double f = v.as_double();
      out->Append(std::isnan(f) ? "NaN" : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity") : FloatRepr(f), false);
      return OkStatus();
    }
    case Kind::kString: AppendEscaped(v.text(), out); return OkStatus();
    case Kind::kList: {
      const List& l = v.list();
      if (l.empty()) {
        out->Append("[]", false);
        return OkStatus();
      }
      out->Append("[", false);
      for (size_t i = 0; i < l.size(); ++i) {
        if (i > 0) out->Append(style.item_separator, false);
        newline(level + 1);
        RETURN_IF_ERROR(Write(l[i], style, level + 1, out));
      }
      newline(level);
      out->Append("]", false);
      return OkStatus();
    }
    case Kind::kDict: {
      if (v.dict().is_namespace) return InvalidArgumentError("tojson: a namespace is not JSON");
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& item : v.dict().items) {
        if (!item.first.is_string()) {
          return InvalidArgumentError("tojson: dict key " + item.first.Repr() + " is not a string");
        }
        items.push_back(&item);
      }
      if (style.sort_keys) {
        std::stable_sort(items.begin(), items.end(), [](const auto* a, const auto* b) {
          return a->first.text().str() < b->first.text().str();
        });
      }
      if (items.empty()) {
        out->Append("{}", false);
        return OkStatus();
      }
      out->Append("{", false);
      for (size_t i = 0; i < items.size(); ++i) {
        if (i > 0) out->Append(style.item_separator, false);
        newline(level + 1);
        AppendEscaped(items[i]->first.text(), out);
        out->Append(style.key_separator, false);
        RETURN_IF_ERROR(Write(items[i]->second, style, level + 1, out));
      }
      newline(level);
      out->Append("}", false);
      return OkStatus();
    }
    case Kind::kUndefined: return InvalidArgumentError("tojson: the value is undefined");
    case Kind::kCallable: return InvalidArgumentError("tojson: a function is not JSON");
  }
  return OkStatus();
}

}  // namespace

StatusOr<Text> ToJson(const Value& value, const JsonStyle& style) {
  Text out;
  RETURN_IF_ERROR(Write(value, style, 0, &out));
  return out;
}

StatusOr<Value> FromJson(const nlohmann::ordered_json& json, bool is_content, int depth) {
  if (depth > 100) return InvalidArgumentError("JSON nested deeper than 100 levels");
  using T = nlohmann::ordered_json::value_t;
  switch (json.type()) {
    case T::null: return Value::None();
    case T::boolean: return Value::Bool(json.get<bool>());
    case T::number_integer: return Value::Int(json.get<int64_t>());
    case T::number_unsigned: {
      const uint64_t u = json.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::Float(static_cast<double>(u));
      return Value::Int(static_cast<int64_t>(u));
    }
    case T::number_float: return Value::Float(json.get<double>());
    case T::string: return Value::String(json.get<std::string>(), is_content);
    case T::array: {
      List items;
      for (const auto& item : json) {
        ASSIGN_OR_RETURN(Value v, FromJson(item, is_content, depth + 1));
        items.push_back(std::move(v));
      }
      return Value::MakeList(std::move(items));
    }
    case T::object: {
      auto d = std::make_shared<Dict>();
      for (auto it = json.begin(); it != json.end(); ++it) {
        ASSIGN_OR_RETURN(Value v, FromJson(it.value(), is_content, depth + 1));
        d->items.emplace_back(Value::String(it.key(), is_content), std::move(v));
      }
      return Value::MakeDict(std::move(d));
    }
    default: return InvalidArgumentError("JSON value of an unsupported type");
  }
}

}  // namespace llmasos::chat::jinja
