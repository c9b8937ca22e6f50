// UTF-8 scanning shared by the tokenizers and the incremental decoder.
//
// Invalid input is handled the way the Unicode Standard (chapter 3, "U+FFFD substitution of
// maximal subparts") and Python's bytes.decode("utf-8", errors="replace") do: each maximal
// subpart of an ill-formed sequence becomes one U+FFFD. Using the same policy everywhere means
// Encode(x) sees exactly the text a Python client would have sent for x.
#ifndef LLMASOS_UTIL_UTF8_H_
#define LLMASOS_UTIL_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace llmasos {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

enum class Utf8Kind {
  kValid,       // `length` bytes form one well-formed character
  kInvalid,     // `length` bytes (>= 1) are a maximal ill-formed subpart: one U+FFFD
  kIncomplete,  // all `length` remaining bytes are a proper prefix of a well-formed character
};

struct Utf8Step {
  Utf8Kind kind;
  size_t length;
};

// Classifies the sequence starting at text[0]. REQUIRES: !text.empty().
Utf8Step ScanUtf8(std::string_view text);

// True when `text` is entirely well-formed UTF-8.
bool IsValidUtf8(std::string_view text);

// `text` with every maximal ill-formed subpart (including a truncated final character)
// replaced by U+FFFD.
std::string SanitizeUtf8(std::string_view text);

// Appends the UTF-8 encoding of `cp` (REQUIRES: a Unicode scalar value).
void AppendUtf8(uint32_t cp, std::string* out);

// Decodes one well-formed character. REQUIRES: ScanUtf8(text) is kValid with this length.
uint32_t DecodeUtf8(std::string_view text, size_t length);

}  // namespace llmasos

#endif  // LLMASOS_UTIL_UTF8_H_
