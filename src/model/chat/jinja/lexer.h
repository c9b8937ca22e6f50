// Lexer: template source to tokens, applying Jinja's whitespace control as Hugging Face
// configures it (trim_blocks, lstrip_blocks, keep_trailing_newline=False): `{%-`/`-%}` strip
// whitespace on that side, `{%+`/`+%}` turn lstrip/trim off for one tag, and newlines are
// normalised to "\n".
#ifndef LLMASOS_MODEL_CHAT_JINJA_LEXER_H_
#define LLMASOS_MODEL_CHAT_JINJA_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace llmasos::chat::jinja {

enum class TokenKind {
  kText,        // literal template text (value holds it)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,        // identifier or keyword
  kString,      // string literal, decoded
  kInt,
  kFloat,
  kOp,          // operator or punctuation: + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
  kEnd,         // end of the template
};

struct Token {
  TokenKind kind;
  std::string value;
  uint32_t line = 1;
  uint32_t column = 1;
};

// Tokenises `source`. InvalidArgument naming the line and column for an unterminated tag,
// comment or string, or a character that starts no token.
StatusOr<std::vector<Token>> Tokenize(std::string_view source);

}  // namespace llmasos::chat::jinja

#endif  // LLMASOS_MODEL_CHAT_JINJA_LEXER_H_
