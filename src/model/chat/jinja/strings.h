// Python str operations on Text, by code point where Python counts code points. Content marks
// are kept byte for byte (see text.h). Internal to the jinja folder.
#ifndef LLMASOS_MODEL_CHAT_JINJA_STRINGS_H_
#define LLMASOS_MODEL_CHAT_JINJA_STRINGS_H_

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "model/chat/jinja/text.h"

namespace llmasos::chat::jinja {

// Byte offsets of each code point's start, then s.size(). A byte that starts no valid UTF-8
// sequence counts as one code point.
std::vector<size_t> CodePointStarts(std::string_view s);

// str.strip / lstrip / rstrip; `chars` absent means whitespace.
Text Strip(const Text& s, const std::optional<std::string>& chars, bool left, bool right);
// str.split(sep, maxsplit) and str.split() (sep absent: runs of whitespace).
std::vector<Text> Split(const Text& s, const std::optional<std::string>& sep, int64_t maxsplit);
// str.replace(old, new, count); count < 0 replaces all.
Text Replace(const Text& s, std::string_view old_text, const Text& new_text, int64_t count);
// str.splitlines() (without keepends).
std::vector<Text> SplitLines(const Text& s);
// ASCII case mapping (non-ASCII characters are left as they are).
Text Upper(const Text& s);
Text Lower(const Text& s);
Text Capitalize(const Text& s);  // first character upper, the rest lower
Text TitleMethod(const Text& s); // str.title(): a letter after a non-letter is upper
Text TitleFilter(const Text& s); // Jinja's title: words split at whitespace, - ( { [ <

}  // namespace llmasos::chat::jinja

#endif  // LLMASOS_MODEL_CHAT_JINJA_STRINGS_H_
