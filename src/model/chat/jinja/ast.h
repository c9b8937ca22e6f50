// The syntax tree a parsed template is: statements (Node) holding expressions (Expr). Owned by
// the Template; the interpreter walks it read-only.
#ifndef LLMASOS_MODEL_CHAT_JINJA_AST_H_
#define LLMASOS_MODEL_CHAT_JINJA_AST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/chat/jinja/value.h"

namespace llmasos::chat::jinja {

struct Position {
  uint32_t line = 0;
  uint32_t column = 0;
};

enum class ExprKind {
  kLiteral,    // literal
  kName,       // name
  kList,       // [args...]; a tuple (args...) when name is "tuple"
  kDict,       // {args[0]: args[1], ...}
  kAttr,       // args[0].name
  kItem,       // args[0][args[1]]
  kSlice,      // args[0][args[1]:args[2]:args[3]] (absent parts are null)
  kUnary,      // name ("-", "+", "not") args[0]
  kBinary,     // args[0] name args[1]: arithmetic and ~
  kCompare,    // args[0] then (operator, operand) pairs in kwargs: == != < <= > >= in, not in
  kAnd,        // args[0] and args[1]
  kOr,         // args[0] or args[1]
  kCondition,  // args[0] if args[1] else args[2] (args[2] may be null)
  kCall,       // args[0](args[1:], kwargs)
  kFilter,     // args[0] | name(args[1:], kwargs)
  kTest,       // args[0] is [not] name(args[1:])
};

struct Expr {
  ExprKind kind = ExprKind::kLiteral;
  Position pos;
  std::string name;
  Value literal;
  bool negated = false;  // kTest: `is not`
  std::vector<std::unique_ptr<Expr>> args;
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
};

enum class NodeKind {
  kText,      // text
  kOutput,    // {{ expr }}
  kIf,        // branches (condition, body); else_body
  kFor,       // for targets in expr [if filter]: body; else_body
  kSet,       // set targets = expr; or `set target %}body{% endset` when expr is null
  kMacro,     // macro name(params) body
  kBreak,
  kContinue,
  kBlock,     // a body rendered in place ({% generation %})
};

struct Node;
using Body = std::vector<Node>;

struct Node {
  NodeKind kind = NodeKind::kText;
  Position pos;
  std::string text;                        // kText; kMacro: the macro's name
  std::unique_ptr<Expr> expr;              // kOutput, kFor (iterable), kSet (value)
  std::unique_ptr<Expr> filter;            // kFor: the `if` after the iterable
  std::vector<std::string> targets;        // kFor loop names; kSet names ("ns.attr" is {ns, attr})
  std::string attr;                        // kSet: `set ns.attr = ...` sets this attribute
  std::vector<std::pair<std::unique_ptr<Expr>, Body>> branches;  // kIf
  Body body;                               // kFor, kSet (block form), kMacro, kBlock
  Body else_body;                          // kIf, kFor
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> params;  // kMacro (default may be null)
};

}  // namespace llmasos::chat::jinja

#endif  // LLMASOS_MODEL_CHAT_JINJA_AST_H_
