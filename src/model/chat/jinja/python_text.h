// Python's string semantics that chat templates rely on: Jinja templates run on Python strings,
// so trimming and escape decoding must match Python's str methods byte for byte.
#ifndef LLMASOS_MODEL_CHAT_JINJA_PYTHON_TEXT_H_
#define LLMASOS_MODEL_CHAT_JINJA_PYTHON_TEXT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace llmasos::chat {

// Python's str.isspace() for one code point: ASCII \t \n \v \f \r space, \x1c-\x1f, U+0085,
// U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
bool IsPythonSpace(uint32_t cp);

// Bytes of Python whitespace at the start / end of `text`. Bytes that are not valid UTF-8 are
// never whitespace.
size_t LeadingSpaceBytes(std::string_view text);
size_t TrailingSpaceBytes(std::string_view text);

// Python's str.strip() with no argument, which Jinja's `trim` filter and `.strip()` call.
std::string PythonStrip(std::string_view text);

// The value of a Jinja string literal's body: Jinja decodes it as Python's "unicode-escape"
// codec does (\n \t \\ \' \xNN \uNNNN \NNN octal ...; an unknown escape keeps its backslash).
std::string PythonUnescape(std::string_view body);

}  // namespace llmasos::chat

#endif  // LLMASOS_MODEL_CHAT_JINJA_PYTHON_TEXT_H_
