// Parser: tokens to the syntax tree, with Jinja's grammar and operator precedence (filters and
// tests bind tighter than arithmetic: `a + b | trim` is `a + (b | trim)`).
#ifndef LLMASOS_MODEL_CHAT_JINJA_PARSER_H_
#define LLMASOS_MODEL_CHAT_JINJA_PARSER_H_

#include <vector>

#include "model/chat/jinja/ast.h"
#include "model/chat/jinja/lexer.h"
#include "util/status.h"

namespace llmasos::chat::jinja {

// Nesting of expressions and blocks deeper than this is refused, so a hostile template cannot
// exhaust the stack.
inline constexpr int kMaxParseDepth = 200;

// InvalidArgument naming the line and column for a syntax error or an unknown statement.
StatusOr<Body> Parse(const std::vector<Token>& tokens);

}  // namespace llmasos::chat::jinja

#endif  // LLMASOS_MODEL_CHAT_JINJA_PARSER_H_
