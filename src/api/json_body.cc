#include "api/json_body.h"

#include <cmath>

#include "util/utf8.h"

namespace llmasos::api {
namespace {

using json = nlohmann::json;

// --- The body: UTF-8, surrogates, depth, then nlohmann ----------------------------------------

size_t FirstInvalidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    if (static_cast<unsigned char>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const Utf8Step step = ScanUtf8(text.substr(pos));
    if (step.kind != Utf8Kind::kValid) return pos;
    pos += step.length;
  }
  return std::string_view::npos;
}

// The value of 4 hex digits at text[pos], or -1.
int32_t Hex4(std::string_view text, size_t pos) {
  if (pos + 4 > text.size()) return -1;
  int32_t v = 0;
  for (size_t i = pos; i < pos + 4; ++i) {
    const char c = text[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

// One pass over the bytes, outside and inside strings, that finds what nlohmann would either
// report unclearly (a lone surrogate escape) or only after recursing as deep as the input (the
// DOM it builds). Everything else malformed is left to the JSON parser.
Status ScanStructure(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '"') {
        in_string = false;
      } else if (c == '\\' && i + 1 < text.size()) {
        if (text[i + 1] == 'u') {
          const int32_t unit = Hex4(text, i + 2);
          if (unit >= 0xD800 && unit <= 0xDBFF) {
            const bool escape_follows = i + 7 < text.size() && text[i + 6] == '\\' && text[i + 7] == 'u';
            const int32_t low = escape_follows ? Hex4(text, i + 8) : -1;
            if (!(low >= 0xDC00 && low <= 0xDFFF)) {
              return InvalidArgumentError("lone UTF-16 surrogate \\u" + std::string(text.substr(i + 2, 4)) +
                                          " at byte " + std::to_string(i) +
                                          " (a high surrogate must be followed by a low one)");
            }
            i += 11;  // both escapes
            continue;
          }
          if (unit >= 0xDC00 && unit <= 0xDFFF) {
            return InvalidArgumentError("lone UTF-16 surrogate \\u" + std::string(text.substr(i + 2, 4)) +
                                        " at byte " + std::to_string(i) +
                                        " (a low surrogate must follow a high one)");
          }
        }
        ++i;  // the escaped character (the rest of \uXXXX is plain hex)
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        return InvalidArgumentError("JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels (at byte " +
                                    std::to_string(i) + ")");
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return OkStatus();
}

// nlohmann's message without its "[json.exception...]" tag and the "; last read: '...'" echo
// of the input: "line 1, column 5: syntax error while parsing value - invalid literal".
std::string ParserMessage(const json::exception& e) {
  std::string m = e.what();
  if (size_t tag = m.find("] "); m.rfind("[json.exception", 0) == 0 && tag != std::string::npos) m.erase(0, tag + 2);
  if (m.rfind("parse error at ", 0) == 0) m.erase(0, 15);
  if (size_t echo = m.find("; last read"); echo != std::string::npos) m.erase(echo);
  if (m.size() > 200) m.resize(200);
  return SanitizeUtf8(m);
}

}  // namespace

std::string JsonTypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::object: return "an object";
    case json::value_t::array: return "a list";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::null: return "null";
    case json::value_t::number_float:
      return v.get<double>() == std::floor(v.get<double>()) ? "a number" : "a fractional number";
    default: return "an integer";
  }
}

StatusOr<nlohmann::json> ParseJsonObject(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return InvalidArgumentError("empty; expected a JSON object");
  }
  if (const size_t bad = FirstInvalidUtf8(text); bad != std::string_view::npos) {
    return InvalidArgumentError("invalid UTF-8 at byte " + std::to_string(bad));
  }
  RETURN_IF_ERROR(ScanStructure(text));
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    return InvalidArgumentError("not a JSON object: malformed JSON at " + ParserMessage(e));
  }
  if (!j.is_object()) return InvalidArgumentError("not a JSON object (got " + JsonTypeName(j) + ")");
  return j;
}

}  // namespace llmasos::api
