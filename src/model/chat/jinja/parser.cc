#include "model/chat/jinja/parser.h"

#include <cerrno>
#include <cstdlib>
#include <initializer_list>
#include <string_view>

namespace llmasos::chat::jinja {
namespace {

using ExprPtr = std::unique_ptr<Expr>;

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : t_(tokens) {}

  StatusOr<Body> Run() {
    Body body;
    std::string end_tag;
    RETURN_IF_ERROR(ParseBody(&body, {}, &end_tag));
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  const Token& Next() { return t_[i_ < t_.size() - 1 ? i_++ : i_]; }
  bool IsOp(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kOp && Peek(ahead).value == op;
  }
  bool IsName(std::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == TokenKind::kName && Peek(ahead).value == name;
  }
  bool AcceptOp(std::string_view op) {
    if (!IsOp(op)) return false;
    ++i_;
    return true;
  }
  bool AcceptName(std::string_view name) {
    if (!IsName(name)) return false;
    ++i_;
    return true;
  }
  static Position PosOf(const Token& t) { return {t.line, t.column}; }
  static Node NewNode(NodeKind kind, const Token& at) {
    Node n;
    n.kind = kind;
    n.pos = PosOf(at);
    return n;
  }

  Status ErrorAt(const Token& t, const std::string& what) const {
    return InvalidArgumentError("line " + std::to_string(t.line) + ", column " +
                                std::to_string(t.column) + ": " + what);
  }
  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case TokenKind::kText: return "text";
      case TokenKind::kVarBegin: return "'{{'";
      case TokenKind::kVarEnd: return "'}}'";
      case TokenKind::kBlockBegin: return "'{%'";
      case TokenKind::kBlockEnd: return "'%}'";
      case TokenKind::kEnd: return "the end of the template";
      case TokenKind::kString: return "a string";
      default: return "'" + t.value + "'";
    }
  }
  Status ExpectOp(std::string_view op) {
    if (AcceptOp(op)) return OkStatus();
    return ErrorAt(Peek(), "expected '" + std::string(op) + "', found " + Describe(Peek()));
  }
  Status ExpectBlockEnd() {
    if (Peek().kind == TokenKind::kBlockEnd) {
      ++i_;
      return OkStatus();
    }
    return ErrorAt(Peek(), "expected '%}', found " + Describe(Peek()));
  }
  StatusOr<std::string> ExpectName() {
    if (Peek().kind != TokenKind::kName) {
      return ErrorAt(Peek(), "expected a name, found " + Describe(Peek()));
    }
    return Next().value;
  }

  // RAII depth counter for recursion.
  struct DepthGuard {
    explicit DepthGuard(int* d) : depth(d) { ++*depth; }
    ~DepthGuard() { --*depth; }
    int* depth;
  };
  // A left-deep chain (a + b + c, x.y.z, v | f | g) nests one level per operator: each link
  // counts toward the depth limit until the chain is parsed.
  struct ChainGuard {
    explicit ChainGuard(int* d) : depth(d) {}
    ~ChainGuard() { *depth -= added; }
    int* depth;
    int added = 0;
  };
  Status Grow(ChainGuard* g) {
    ++*g->depth;
    ++g->added;
    return CheckDepth();
  }
  Status CheckDepth() const {
    if (depth_ > kMaxParseDepth) {
      return ErrorAt(Peek(), "nesting deeper than " + std::to_string(kMaxParseDepth) + " levels");
    }
    return OkStatus();
  }

  // ---- statements ----

  // Parses nodes until a block tag whose keyword is in `ends` (returned in *end_tag, the tag's
  // `%}` not yet consumed) or the end of the template (only allowed when `ends` is empty).
  Status ParseBody(Body* body, std::initializer_list<std::string_view> ends, std::string* end_tag) {
    DepthGuard guard(&depth_);
    RETURN_IF_ERROR(CheckDepth());
    for (;;) {
      const Token& t = Peek();
      switch (t.kind) {
        case TokenKind::kEnd:
          if (ends.size() == 0) return OkStatus();
          return ErrorAt(t, "unexpected end of template: expected '{% " + std::string(*(ends.end() - 1)) + " %}'");
        case TokenKind::kText: {
          Node n = NewNode(NodeKind::kText, t);
          n.text = Next().value;
          body->push_back(std::move(n));
          break;
        }
        case TokenKind::kVarBegin: {
          Next();
          Node n = NewNode(NodeKind::kOutput, t);
          ASSIGN_OR_RETURN(n.expr, ParseExpression());
          if (Peek().kind != TokenKind::kVarEnd) return ErrorAt(Peek(), "expected '}}', found " + Describe(Peek()));
          Next();
          body->push_back(std::move(n));
          break;
        }
        case TokenKind::kBlockBegin: {
          const Token& kw = Peek(1);
          if (kw.kind != TokenKind::kName) return ErrorAt(kw, "expected a statement name after '{%'");
          for (std::string_view e : ends) {
            if (kw.value == e) {
              i_ += 2;
              *end_tag = kw.value;
              return OkStatus();
            }
          }
          i_ += 2;
          RETURN_IF_ERROR(ParseStatement(kw, body));
          break;
        }
        default:
          return ErrorAt(t, "unexpected " + Describe(t));
      }
    }
  }

  Status ParseStatement(const Token& kw, Body* body) {
    const std::string& name = kw.value;
    Node n = NewNode(NodeKind::kText, kw);
    std::string end;
    if (name == "if") {
      n.kind = NodeKind::kIf;
      for (;;) {
        ASSIGN_OR_RETURN(ExprPtr cond, ParseExpression());
        RETURN_IF_ERROR(ExpectBlockEnd());
        Body branch;
        RETURN_IF_ERROR(ParseBody(&branch, {"elif", "else", "endif"}, &end));
        n.branches.emplace_back(std::move(cond), std::move(branch));
        if (end != "elif") break;
      }
      if (end == "else") {
        RETURN_IF_ERROR(ExpectBlockEnd());
        RETURN_IF_ERROR(ParseBody(&n.else_body, {"endif"}, &end));
      }
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (name == "for") {
      n.kind = NodeKind::kFor;
      do {
        ASSIGN_OR_RETURN(std::string target, ExpectName());
        n.targets.push_back(std::move(target));
      } while (AcceptOp(","));
      if (!AcceptName("in")) return ErrorAt(Peek(), "expected 'in' in a for loop, found " + Describe(Peek()));
      // The iterable stops before `if` (the loop filter): parse it without the ternary.
      ASSIGN_OR_RETURN(n.expr, ParseOr());
      if (AcceptName("if")) {
        ASSIGN_OR_RETURN(n.filter, ParseExpression());
      }
      if (AcceptName("recursive")) return ErrorAt(kw, "recursive for loops are not supported");
      RETURN_IF_ERROR(ExpectBlockEnd());
      RETURN_IF_ERROR(ParseBody(&n.body, {"else", "endfor"}, &end));
      if (end == "else") {
        RETURN_IF_ERROR(ExpectBlockEnd());
        RETURN_IF_ERROR(ParseBody(&n.else_body, {"endfor"}, &end));
      }
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (name == "set") {
      n.kind = NodeKind::kSet;
      ASSIGN_OR_RETURN(std::string first, ExpectName());
      n.targets.push_back(std::move(first));
      if (AcceptOp(".")) {
        ASSIGN_OR_RETURN(n.attr, ExpectName());
      } else {
        while (AcceptOp(",")) {
          ASSIGN_OR_RETURN(std::string target, ExpectName());
          n.targets.push_back(std::move(target));
        }
      }
      if (AcceptOp("=")) {
        ASSIGN_OR_RETURN(n.expr, ParseTuple());
        RETURN_IF_ERROR(ExpectBlockEnd());
      } else {
        if (n.targets.size() != 1) return ErrorAt(kw, "a block set assigns one name");
        // `{% set x | filter %}` applies filters to the block's text.
        while (AcceptOp("|")) {
          auto f = std::make_unique<Expr>();
          f->kind = ExprKind::kFilter;
          f->pos = PosOf(Peek());
          ASSIGN_OR_RETURN(f->name, ExpectName());
          f->args.push_back(std::move(n.filter));
          if (IsOp("(")) RETURN_IF_ERROR(ParseCallArgs(f.get()));
          n.filter = std::move(f);
        }
        RETURN_IF_ERROR(ExpectBlockEnd());
        RETURN_IF_ERROR(ParseBody(&n.body, {"endset"}, &end));
        RETURN_IF_ERROR(ExpectBlockEnd());
      }
    } else if (name == "macro") {
      n.kind = NodeKind::kMacro;
      ASSIGN_OR_RETURN(n.text, ExpectName());
      RETURN_IF_ERROR(ExpectOp("("));
      while (!AcceptOp(")")) {
        if (!n.params.empty()) RETURN_IF_ERROR(ExpectOp(","));
        if (AcceptOp(")")) break;
        ASSIGN_OR_RETURN(std::string param, ExpectName());
        ExprPtr def;
        if (AcceptOp("=")) {
          ASSIGN_OR_RETURN(def, ParseExpression());
        }
        n.params.emplace_back(std::move(param), std::move(def));
      }
      RETURN_IF_ERROR(ExpectBlockEnd());
      RETURN_IF_ERROR(ParseBody(&n.body, {"endmacro"}, &end));
      AcceptName(n.text);  // `{% endmacro name %}`
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (name == "break" || name == "continue") {
      n.kind = name == "break" ? NodeKind::kBreak : NodeKind::kContinue;
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else if (name == "generation") {
      // transformers' marker for assistant text; it renders its body unchanged.
      n.kind = NodeKind::kBlock;
      RETURN_IF_ERROR(ExpectBlockEnd());
      RETURN_IF_ERROR(ParseBody(&n.body, {"endgeneration"}, &end));
      RETURN_IF_ERROR(ExpectBlockEnd());
    } else {
      return ErrorAt(kw, "unknown or unsupported statement '" + name + "'");
    }
    body->push_back(std::move(n));
    return OkStatus();
  }

  // ---- expressions ----

  ExprPtr Make(ExprKind kind, const Token& at, std::string name = "") {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = PosOf(at);
    e->name = std::move(name);
    return e;
  }
  ExprPtr Make2(ExprKind kind, const Token& at, std::string name, ExprPtr a, ExprPtr b) {
    ExprPtr e = Make(kind, at, std::move(name));
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  // An expression, or an unparenthesised tuple `a, b` (as in `set a = 1, 2`): a list value.
  StatusOr<ExprPtr> ParseTuple() {
    const Token& at = Peek();
    ASSIGN_OR_RETURN(ExprPtr first, ParseExpression());
    if (!IsOp(",")) return first;
    ExprPtr list = Make(ExprKind::kList, at, "tuple");
    list->args.push_back(std::move(first));
    while (AcceptOp(",")) {
      ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
      list->args.push_back(std::move(item));
    }
    return list;
  }

  StatusOr<ExprPtr> ParseExpression() {
    DepthGuard guard(&depth_);
    RETURN_IF_ERROR(CheckDepth());
    const Token& at = Peek();
    ASSIGN_OR_RETURN(ExprPtr value, ParseOr());
    while (AcceptName("if")) {
      ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
      ExprPtr otherwise;
      if (AcceptName("else")) {
        ASSIGN_OR_RETURN(otherwise, ParseExpression());
      }
      ExprPtr e = Make(ExprKind::kCondition, at);
      e->args.push_back(std::move(value));
      e->args.push_back(std::move(cond));
      e->args.push_back(std::move(otherwise));
      value = std::move(e);
    }
    return value;
  }

  // One left-associative precedence level: next (op next)*. `and` and `or` are names, the
  // arithmetic operators are operator tokens.
  StatusOr<ExprPtr> ParseChain(StatusOr<ExprPtr> (Parser::*next)(),
                               std::initializer_list<std::string_view> ops) {
    ASSIGN_OR_RETURN(ExprPtr left, (this->*next)());
    ChainGuard chain(&depth_);
    for (;;) {
      const Token& at = Peek();
      bool matched = false;
      for (std::string_view op : ops) {
        const bool word = op == "and" || op == "or";
        matched = matched || (at.kind == (word ? TokenKind::kName : TokenKind::kOp) && at.value == op);
      }
      if (!matched) return left;
      RETURN_IF_ERROR(Grow(&chain));
      Next();
      ASSIGN_OR_RETURN(ExprPtr right, (this->*next)());
      const ExprKind kind = at.value == "or" ? ExprKind::kOr : at.value == "and" ? ExprKind::kAnd : ExprKind::kBinary;
      left = Make2(kind, at, at.value, std::move(left), std::move(right));
    }
  }

  StatusOr<ExprPtr> ParseOr() { return ParseChain(&Parser::ParseAnd, {"or"}); }
  StatusOr<ExprPtr> ParseAnd() { return ParseChain(&Parser::ParseNot, {"and"}); }

  StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      const Token& at = Next();
      DepthGuard guard(&depth_);
      RETURN_IF_ERROR(CheckDepth());
      ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
      ExprPtr e = Make(ExprKind::kUnary, at, "not");
      e->args.push_back(std::move(operand));
      return e;
    }
    return ParseCompare();
  }

  // Python chains comparisons (a < b < c is a < b and b < c, b evaluated once): one node holds
  // the first operand in args and each (operator, operand) that follows in kwargs.
  StatusOr<ExprPtr> ParseCompare() {
    const Token& start = Peek();
    ASSIGN_OR_RETURN(ExprPtr left, ParseMath1());
    ExprPtr cmp;
    for (;;) {
      const Token& at = Peek();
      std::string op;
      if (at.kind == TokenKind::kOp &&
          (at.value == "==" || at.value == "!=" || at.value == "<" || at.value == "<=" ||
           at.value == ">" || at.value == ">=")) {
        op = Next().value;
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        i_ += 2;
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = Make(ExprKind::kCompare, start);
        cmp->args.push_back(std::move(left));
      }
      ASSIGN_OR_RETURN(ExprPtr right, ParseMath1());
      cmp->kwargs.emplace_back(std::move(op), std::move(right));
    }
    return cmp ? std::move(cmp) : std::move(left);
  }

  StatusOr<ExprPtr> ParseMath1() { return ParseChain(&Parser::ParseConcat, {"+", "-"}); }
  StatusOr<ExprPtr> ParseConcat() { return ParseChain(&Parser::ParseMath2, {"~"}); }
  StatusOr<ExprPtr> ParseMath2() { return ParseChain(&Parser::ParsePow, {"*", "/", "//", "%"}); }
  StatusOr<ExprPtr> ParsePow() { return ParseChain(&Parser::ParseFilteredUnary, {"**"}); }
  StatusOr<ExprPtr> ParseFilteredUnary() { return ParseUnary(true); }

  StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    DepthGuard guard(&depth_);
    RETURN_IF_ERROR(CheckDepth());
    const Token& at = Peek();
    ExprPtr e;
    if (IsOp("-") || IsOp("+")) {
      Next();
      ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
      e = Make(ExprKind::kUnary, at, at.value);
      e->args.push_back(std::move(operand));
    } else {
      ASSIGN_OR_RETURN(e, ParsePrimary());
    }
    ASSIGN_OR_RETURN(e, ParsePostfix(std::move(e)));
    if (with_filter) {
      ASSIGN_OR_RETURN(e, ParseFilters(std::move(e)));
    }
    return e;
  }

  StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Peek();
    switch (t.kind) {
      case TokenKind::kName: {
        Next();
        ExprPtr e = Make(ExprKind::kLiteral, t);
        if (t.value == "true" || t.value == "True") {
          e->literal = Value::Bool(true);
        } else if (t.value == "false" || t.value == "False") {
          e->literal = Value::Bool(false);
        } else if (t.value == "none" || t.value == "None") {
          e->literal = Value::None();
        } else {
          e->kind = ExprKind::kName;
          e->name = t.value;
        }
        return e;
      }
      case TokenKind::kString: {
        std::string s = Next().value;
        while (Peek().kind == TokenKind::kString) s += Next().value;  // adjacent literals join
        ExprPtr e = Make(ExprKind::kLiteral, t);
        e->literal = Value::String(std::move(s));
        return e;
      }
      case TokenKind::kInt: {
        Next();
        errno = 0;
        const long long v = std::strtoll(t.value.c_str(), nullptr, 10);
        if (errno == ERANGE) return ErrorAt(t, "integer literal out of range");
        ExprPtr e = Make(ExprKind::kLiteral, t);
        e->literal = Value::Int(v);
        return e;
      }
      case TokenKind::kFloat: {
        Next();
        ExprPtr e = Make(ExprKind::kLiteral, t);
        e->literal = Value::Float(std::strtod(t.value.c_str(), nullptr));
        return e;
      }
      case TokenKind::kOp:
        if (t.value == "(") {
          Next();
          if (AcceptOp(")")) return Make(ExprKind::kList, t, "tuple");  // empty tuple
          ASSIGN_OR_RETURN(ExprPtr inner, ParseExpression());
          if (IsOp(",")) {  // a tuple
            ExprPtr list = Make(ExprKind::kList, t, "tuple");
            list->args.push_back(std::move(inner));
            while (AcceptOp(",")) {
              if (IsOp(")")) break;
              ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
              list->args.push_back(std::move(item));
            }
            inner = std::move(list);
          }
          RETURN_IF_ERROR(ExpectOp(")"));
          return inner;
        }
        if (t.value == "[") {
          Next();
          ExprPtr list = Make(ExprKind::kList, t);
          while (!AcceptOp("]")) {
            if (!list->args.empty()) {
              RETURN_IF_ERROR(ExpectOp(","));
              if (AcceptOp("]")) break;
            }
            ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
            list->args.push_back(std::move(item));
          }
          return list;
        }
        if (t.value == "{") {
          Next();
          ExprPtr dict = Make(ExprKind::kDict, t);
          while (!AcceptOp("}")) {
            if (!dict->args.empty()) {
              RETURN_IF_ERROR(ExpectOp(","));
              if (AcceptOp("}")) break;
            }
            ASSIGN_OR_RETURN(ExprPtr key, ParseExpression());
            RETURN_IF_ERROR(ExpectOp(":"));
            ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
            dict->args.push_back(std::move(key));
            dict->args.push_back(std::move(value));
          }
          return dict;
        }
        break;
      default:
        break;
    }
    return ErrorAt(t, "expected an expression, found " + Describe(t));
  }

  StatusOr<ExprPtr> ParsePostfix(ExprPtr e) {
    ChainGuard chain(&depth_);
    for (;;) {
      RETURN_IF_ERROR(Grow(&chain));
      const Token& at = Peek();
      if (AcceptOp(".")) {
        const Token& name = Peek();
        if (name.kind == TokenKind::kName) {
          e = Make2(ExprKind::kAttr, at, Next().value, std::move(e), nullptr);
          e->args.pop_back();
        } else if (name.kind == TokenKind::kInt) {  // x.0 is x[0]
          ExprPtr index = Make(ExprKind::kLiteral, name);
          index->literal = Value::Int(std::strtoll(Next().value.c_str(), nullptr, 10));
          e = Make2(ExprKind::kItem, at, "", std::move(e), std::move(index));
        } else {
          return ErrorAt(name, "expected an attribute name after '.', found " + Describe(name));
        }
      } else if (AcceptOp("[")) {
        DepthGuard guard(&depth_);
        RETURN_IF_ERROR(CheckDepth());
        ExprPtr parts[3];
        bool is_slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!IsOp(":") && !IsOp("]")) {
            ASSIGN_OR_RETURN(parts[k], ParseExpression());
          }
          if (k < 2 && AcceptOp(":")) {
            is_slice = true;
            continue;
          }
          break;
        }
        RETURN_IF_ERROR(ExpectOp("]"));
        if (is_slice) {
          ExprPtr s = Make(ExprKind::kSlice, at);
          s->args.push_back(std::move(e));
          for (ExprPtr& p : parts) s->args.push_back(std::move(p));
          e = std::move(s);
        } else {
          if (!parts[0]) return ErrorAt(at, "empty subscript");
          e = Make2(ExprKind::kItem, at, "", std::move(e), std::move(parts[0]));
        }
      } else if (IsOp("(")) {
        ExprPtr call = Make(ExprKind::kCall, at);
        call->args.push_back(std::move(e));
        RETURN_IF_ERROR(ParseCallArgs(call.get()));
        e = std::move(call);
      } else {
        return e;
      }
    }
  }

  // `(a, b, key=c)` appended to e's args and kwargs.
  Status ParseCallArgs(Expr* e) {
    DepthGuard guard(&depth_);
    RETURN_IF_ERROR(CheckDepth());
    RETURN_IF_ERROR(ExpectOp("("));
    bool first = true;
    while (!AcceptOp(")")) {
      if (!first) {
        RETURN_IF_ERROR(ExpectOp(","));
        if (AcceptOp(")")) break;
      }
      first = false;
      if (Peek().kind == TokenKind::kName && IsOp("=", 1)) {
        std::string key = Next().value;
        Next();
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        e->kwargs.emplace_back(std::move(key), std::move(value));
      } else {
        if (!e->kwargs.empty()) return ErrorAt(Peek(), "positional argument after a keyword argument");
        ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
        e->args.push_back(std::move(value));
      }
    }
    return OkStatus();
  }

  StatusOr<ExprPtr> ParseFilters(ExprPtr e) {
    ChainGuard chain(&depth_);
    for (;;) {
      RETURN_IF_ERROR(Grow(&chain));
      const Token& at = Peek();
      if (AcceptOp("|")) {
        ASSIGN_OR_RETURN(std::string name, ExpectName());
        ExprPtr f = Make(ExprKind::kFilter, at, std::move(name));
        f->args.push_back(std::move(e));
        if (IsOp("(")) RETURN_IF_ERROR(ParseCallArgs(f.get()));
        e = std::move(f);
      } else if (AcceptName("is")) {
        const bool negated = AcceptName("not");
        ASSIGN_OR_RETURN(std::string name, ExpectName());
        ExprPtr test = Make(ExprKind::kTest, at, std::move(name));
        test->negated = negated;
        test->args.push_back(std::move(e));
        if (IsOp("(")) {
          RETURN_IF_ERROR(ParseCallArgs(test.get()));
        } else if (StartsTestArgument()) {  // `is equalto 3`, `is sameas false`
          ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
          ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
          test->args.push_back(std::move(arg));
        }
        e = std::move(test);
      } else {
        return e;
      }
    }
  }

  bool StartsTestArgument() const {
    const Token& t = Peek();
    if (t.kind == TokenKind::kString || t.kind == TokenKind::kInt || t.kind == TokenKind::kFloat) return true;
    if (t.kind == TokenKind::kOp) return t.value == "[" || t.value == "{";
    if (t.kind != TokenKind::kName) return false;
    for (std::string_view kw : {"else", "or", "and", "if", "not", "in", "is"}) {
      if (t.value == kw) return false;
    }
    return true;
  }

  const std::vector<Token>& t_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

StatusOr<Body> Parse(const std::vector<Token>& tokens) {
  if (tokens.empty() || tokens.back().kind != TokenKind::kEnd) {
    return InvalidArgumentError("token stream does not end with an end token");
  }
  return Parser(tokens).Run();
}

}  // namespace llmasos::chat::jinja
