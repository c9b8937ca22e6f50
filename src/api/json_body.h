// Parsing an untrusted JSON text (a request body, a batch line) into an object, with the checks
// nlohmann's parser does not make or reports unclearly.
//
// Thread safety: pure functions.
#ifndef LLMASOS_API_JSON_BODY_H_
#define LLMASOS_API_JSON_BODY_H_

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace llmasos::api {

// Deepest nesting of arrays and objects a text may have. A chat request needs 4 (body,
// messages, message, content parts); the rest is headroom.
inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as one JSON object. InvalidArgument, each with its own message, for: an empty
// text, invalid UTF-8 (with the byte offset), a lone UTF-16 surrogate escape, nesting deeper
// than kMaxJsonDepth, malformed JSON (with line and column), and valid JSON that is not an
// object ("not a JSON object (got a list)"). The depth is checked on the bytes before nlohmann
// builds anything, so no step recurses as deep as the input.
StatusOr<nlohmann::json> ParseJsonObject(std::string_view text);

// "an object", "a list", "a string", "a boolean", "null", "an integer", "a number" (whole) or
// "a fractional number": what a value is, for error messages.
std::string JsonTypeName(const nlohmann::json& value);

}  // namespace llmasos::api

#endif  // LLMASOS_API_JSON_BODY_H_
