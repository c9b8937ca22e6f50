#include "model/chat/jinja/renderer.h"

#include "model/chat/jinja/strings.h"

#include <cmath>
#include <limits>

namespace llmasos::chat::jinja {

const Value* CallArgs::Get(size_t index, std::string_view name) const {
  if (index < positional.size()) return &positional[index];
  for (const auto& [k, v] : keyword) {
    if (k == name) return &v;
  }
  return nullptr;
}

Renderer::Renderer(const Dict& variables, const RenderOptions& options) : options_(options) {
  frames_.emplace_back();
  Frame& root = frames_.front();
  for (const char* name : {"range", "namespace", "dict", "raise_exception", "strftime_now"}) {
    root.vars.emplace_back(name, Value::MakeCallable(Callable{name, nullptr}));
  }
  for (const auto& [k, v] : variables.items) {
    if (k.is_string()) Assign(k.text().str(), v);
  }
}

StatusOr<Text> Renderer::Run(const Body& body) {
  Text out;
  ASSIGN_OR_RETURN(Flow flow, ExecBody(body, &out));
  (void)flow;
  return out;
}

Status Renderer::Tick() {
  if (++steps_ > options_.limits.max_steps) {
    return ResourceExhaustedError("template rendering took more than " +
                                  std::to_string(options_.limits.max_steps) + " steps");
  }
  return OkStatus();
}

Status Renderer::Charge(size_t bytes) {
  string_bytes_ += bytes;
  if (string_bytes_ > options_.limits.max_string_bytes) {
    return ResourceExhaustedError("template rendering built more than " +
                                  std::to_string(options_.limits.max_string_bytes) +
                                  " bytes of strings");
  }
  return OkStatus();
}

Status Renderer::Error(const Position& pos, const std::string& what) const {
  return InvalidArgumentError("line " + std::to_string(pos.line) + ", column " +
                              std::to_string(pos.column) + ": " + what);
}

// Whether a list or dict holds a namespace at any depth (bounded by kMaxValueDepth).
bool HoldsNamespace(const Value& v) {
  if (v.is_namespace()) return true;
  if (v.is_list()) {
    for (const Value& item : v.list()) {
      if (item.depth() > 0 && HoldsNamespace(item)) return true;
    }
  } else if (v.is_dict()) {
    for (const auto& [k, item] : v.dict().items) {
      if ((k.depth() > 0 && HoldsNamespace(k)) || (item.depth() > 0 && HoldsNamespace(item))) return true;
    }
  }
  return false;
}

Status Renderer::CheckDepth(const Position& pos, const Value& v) const {
  if (v.depth() > kMaxValueDepth) {
    return Error(pos, "lists and dicts nested deeper than " + std::to_string(kMaxValueDepth) + " levels");
  }
  return OkStatus();
}

Status Renderer::Emit(const Text& text, Text* out) {
  output_bytes_ += text.size();
  if (output_bytes_ > options_.limits.max_output_bytes) {
    return ResourceExhaustedError("template output is larger than " +
                                  std::to_string(options_.limits.max_output_bytes) + " bytes");
  }
  out->Append(text);
  return OkStatus();
}

// ---- scopes ----

Value Renderer::Lookup(std::string_view name) const {
  for (size_t i = frames_.size(); i-- > floor_;) {
    for (const auto& [k, v] : frames_[i].vars) {
      if (k == name) return v;
    }
  }
  for (const auto& [k, v] : frames_[0].vars) {
    if (k == name) return v;
  }
  return Value();
}

void Renderer::Assign(std::string name, Value value) {
  for (auto& [k, v] : frames_.back().vars) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  frames_.back().vars.emplace_back(std::move(name), std::move(value));
}

// ---- statements ----

StatusOr<Renderer::Flow> Renderer::ExecBody(const Body& body, Text* out) {
  for (const Node& node : body) {
    ASSIGN_OR_RETURN(Flow flow, Exec(node, out));
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

StatusOr<Renderer::Flow> Renderer::Exec(const Node& node, Text* out) {
  RETURN_IF_ERROR(Tick());
  switch (node.kind) {
    case NodeKind::kText:
      RETURN_IF_ERROR(Emit(Text(node.text), out));
      return Flow::kNormal;
    case NodeKind::kOutput: {
      ASSIGN_OR_RETURN(Value v, Eval(*node.expr));
      RETURN_IF_ERROR(v.is_string() ? Emit(v.text(), out) : Emit(v.ToText(), out));
      return Flow::kNormal;
    }
    case NodeKind::kIf:
      for (const auto& [cond, branch] : node.branches) {
        ASSIGN_OR_RETURN(Value c, Eval(*cond));
        if (c.Truthy()) return ExecBody(branch, out);
      }
      return ExecBody(node.else_body, out);
    case NodeKind::kFor:
      return ExecFor(node, out);
    case NodeKind::kSet:
      RETURN_IF_ERROR(ExecSet(node));
      return Flow::kNormal;
    case NodeKind::kMacro:
      Assign(node.text, Value::MakeCallable(Callable{node.text, &node}));
      return Flow::kNormal;
    case NodeKind::kBreak:
      return Flow::kBreak;
    case NodeKind::kContinue:
      return Flow::kContinue;
    case NodeKind::kBlock:
      return ExecBody(node.body, out);
  }
  return Flow::kNormal;
}

StatusOr<List> Iterate(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return List();
    case Kind::kList: return v.list();
    case Kind::kDict: {
      List keys;
      for (const auto& [k, item] : v.dict().items) keys.push_back(k);
      return keys;
    }
    case Kind::kString: {
      List chars;
      const std::vector<size_t> starts = CodePointStarts(v.text().str());
      for (size_t k = 0; k + 1 < starts.size(); ++k) {
        chars.push_back(Value::String(v.text().Slice(starts[k], starts[k + 1] - starts[k])));
      }
      return chars;
    }
    default:
      return InvalidArgumentError("a " + std::string(v.TypeName()) + " is not iterable");
  }
}

StatusOr<Renderer::Flow> Renderer::ExecFor(const Node& node, Text* out) {
  ASSIGN_OR_RETURN(Value iterable, Eval(*node.expr));
  StatusOr<List> items_or = Iterate(iterable);
  if (!items_or.ok()) return Error(node.pos, items_or.status().message());
  List items = std::move(items_or).value();

  auto bind = [&](const Value& item) -> Status {
    if (node.targets.size() == 1) {
      Assign(node.targets[0], item);
      return OkStatus();
    }
    return Unpack(node, item);
  };

  if (node.filter) {
    List kept;
    for (const Value& item : items) {
      frames_.emplace_back();
      Status s = bind(item);
      StatusOr<Value> keep = s.ok() ? Eval(*node.filter) : StatusOr<Value>(s);
      frames_.pop_back();
      if (!keep.ok()) return keep.status();
      if (keep->Truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) return ExecBody(node.else_body, out);

  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    RETURN_IF_ERROR(Tick());
    // The loop object, built without lookups: its keys are made once per process.
    static const Value kKeys[] = {
        Value::String("index"), Value::String("index0"), Value::String("revindex"),
        Value::String("revindex0"), Value::String("first"), Value::String("last"),
        Value::String("length"), Value::String("depth"), Value::String("depth0"),
        Value::String("previtem"), Value::String("nextitem")};
    auto loop = std::make_shared<Dict>();
    loop->items.reserve(11);
    const Value values[] = {Value::Int(i + 1), Value::Int(i), Value::Int(n - i), Value::Int(n - i - 1),
                            Value::Bool(i == 0), Value::Bool(i == n - 1), Value::Int(n), Value::Int(1),
                            Value::Int(0)};
    for (size_t k = 0; k < 9; ++k) loop->items.emplace_back(kKeys[k], values[k]);
    if (i > 0) loop->items.emplace_back(kKeys[9], items[i - 1]);
    if (i + 1 < n) loop->items.emplace_back(kKeys[10], items[i + 1]);
    frames_.emplace_back();
    Assign("loop", Value::MakeDict(std::move(loop)));
    Status bound = bind(items[i]);
    StatusOr<Flow> flow = bound.ok() ? ExecBody(node.body, out) : StatusOr<Flow>(bound);
    frames_.pop_back();
    if (!flow.ok()) return flow.status();
    if (*flow == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

Status Renderer::ExecSet(const Node& node) {
  Value value;
  if (node.expr) {
    ASSIGN_OR_RETURN(value, Eval(*node.expr));
  } else {
    Text captured;
    ASSIGN_OR_RETURN(Flow flow, ExecBody(node.body, &captured));
    (void)flow;
    value = Value::String(std::move(captured));
    // `{% set x | f | g %}`: filters nest with a null subject at the bottom.
    std::vector<const Expr*> chain;
    for (const Expr* f = node.filter.get(); f != nullptr; f = f->args[0].get()) chain.push_back(f);
    for (size_t k = chain.size(); k-- > 0;) {
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(*chain[k], 1));
      ASSIGN_OR_RETURN(value, ApplyFilter(chain[k]->pos, chain[k]->name, value, args));
    }
  }
  if (!node.attr.empty()) {
    Value ns = Lookup(node.targets[0]);
    if (!ns.is_dict() || !ns.dict().is_namespace) {
      return Error(node.pos, "cannot set attribute '" + node.attr + "' of '" + node.targets[0] +
                                 "': it is not a namespace()");
    }
    // A namespace holds plain values: no namespace inside (no cycles), no deep nesting.
    RETURN_IF_ERROR(CheckDepth(node.pos, value));
    if (value.is_namespace() || (value.depth() > 0 && HoldsNamespace(value))) {
      return Error(node.pos, "a namespace cannot hold another namespace");
    }
    ns.mutable_dict().Set(Value::String(node.attr), std::move(value));
    return OkStatus();
  }
  if (node.targets.size() == 1) {
    Assign(node.targets[0], std::move(value));
    return OkStatus();
  }
  return Unpack(node, value);
}

Status Renderer::Unpack(const Node& node, const Value& value) {
  StatusOr<List> items = Iterate(value);
  if (!items.ok() || value.is_undefined() || items->size() != node.targets.size()) {
    return Error(node.pos, "cannot unpack a " + std::string(value.TypeName()) + " into " +
                               std::to_string(node.targets.size()) + " names");
  }
  for (size_t k = 0; k < node.targets.size(); ++k) Assign(node.targets[k], (*items)[k]);
  return OkStatus();
}

// ---- expressions ----

StatusOr<CallArgs> Renderer::EvalArgs(const Expr& e, size_t first) {
  CallArgs args;
  for (size_t k = first; k < e.args.size(); ++k) {
    ASSIGN_OR_RETURN(Value v, Eval(*e.args[k]));
    args.positional.push_back(std::move(v));
  }
  for (const auto& [name, expr] : e.kwargs) {
    ASSIGN_OR_RETURN(Value v, Eval(*expr));
    args.keyword.emplace_back(name, std::move(v));
  }
  return args;
}

StatusOr<Value> Renderer::Eval(const Expr& e) {
  RETURN_IF_ERROR(Tick());
  switch (e.kind) {
    case ExprKind::kLiteral:
      return e.literal;
    case ExprKind::kName:
      return Lookup(e.name);
    case ExprKind::kList: {
      List items;
      for (const auto& a : e.args) {
        ASSIGN_OR_RETURN(Value v, Eval(*a));
        items.push_back(std::move(v));
      }
      Value list = e.name == "tuple" ? Value::MakeTuple(std::move(items)) : Value::MakeList(std::move(items));
      RETURN_IF_ERROR(CheckDepth(e.pos, list));
      return list;
    }
    case ExprKind::kDict: {
      auto d = std::make_shared<Dict>();
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        ASSIGN_OR_RETURN(Value key, Eval(*e.args[k]));
        ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
        d->Set(std::move(key), std::move(v));
      }
      Value dict = Value::MakeDict(std::move(d));
      RETURN_IF_ERROR(CheckDepth(e.pos, dict));
      return dict;
    }
    case ExprKind::kAttr: {
      ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
      return GetAttr(e.pos, obj, e.name);
    }
    case ExprKind::kItem: {
      ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
      ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
      return GetItem(e.pos, obj, key);
    }
    case ExprKind::kSlice: {
      ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
      Value parts[3];
      for (int k = 0; k < 3; ++k) {
        if (e.args[k + 1]) {
          ASSIGN_OR_RETURN(parts[k], Eval(*e.args[k + 1]));
        }
      }
      if (obj.is_undefined()) return Error(e.pos, "cannot slice an undefined value");
      // As Jinja's getitem: what cannot be sliced gives undefined, not an error.
      if (!obj.is_list() && !obj.is_string()) return Value();
      StatusOr<Value> r = SliceValue(obj, e.args[1] ? &parts[0] : nullptr,
                                     e.args[2] ? &parts[1] : nullptr, e.args[3] ? &parts[2] : nullptr);
      if (!r.ok()) return Error(e.pos, r.status().message());
      return r;
    }
    case ExprKind::kUnary: {
      ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
      if (e.name == "not") return Value::Bool(!v.Truthy());
      if (!v.is_number()) return Error(e.pos, "bad operand for unary " + e.name + ": a " + std::string(v.TypeName()));
      if (e.name == "+") return v.kind() == Kind::kFloat ? v : Value::Int(v.as_int());
      if (v.kind() == Kind::kFloat) return Value::Float(-v.as_double());
      if (v.as_int() == std::numeric_limits<int64_t>::min()) return Error(e.pos, "integer overflow");
      return Value::Int(-v.as_int());
    }
    case ExprKind::kBinary: {
      ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
      ASSIGN_OR_RETURN(Value b, Eval(*e.args[1]));
      return EvalBinary(e, a, b);
    }
    case ExprKind::kCompare: {
      ASSIGN_OR_RETURN(Value left, Eval(*e.args[0]));
      for (const auto& [op, operand] : e.kwargs) {
        ASSIGN_OR_RETURN(Value right, Eval(*operand));
        ASSIGN_OR_RETURN(bool holds, Compare(e.pos, op, left, right));
        if (!holds) return Value::Bool(false);
        left = std::move(right);
      }
      return Value::Bool(true);
    }
    case ExprKind::kAnd: {
      ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
      if (!a.Truthy()) return a;
      return Eval(*e.args[1]);
    }
    case ExprKind::kOr: {
      ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
      if (a.Truthy()) return a;
      return Eval(*e.args[1]);
    }
    case ExprKind::kCondition: {
      ASSIGN_OR_RETURN(Value c, Eval(*e.args[1]));
      if (c.Truthy()) return Eval(*e.args[0]);
      if (e.args[2]) return Eval(*e.args[2]);
      return Value();
    }
    case ExprKind::kCall:
      return EvalCall(e);
    case ExprKind::kFilter: {
      ASSIGN_OR_RETURN(Value subject, Eval(*e.args[0]));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      return ApplyFilter(e.pos, e.name, subject, args);
    }
    case ExprKind::kTest: {
      ASSIGN_OR_RETURN(Value subject, Eval(*e.args[0]));
      ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      ASSIGN_OR_RETURN(bool r, ApplyTest(e.pos, e.name, subject, args));
      return Value::Bool(r != e.negated);
    }
  }
  return Error(e.pos, "unknown expression");
}

StatusOr<Value> Renderer::GetAttr(const Position& pos, const Value& obj, std::string_view name) {
  if (obj.is_undefined()) {
    return Error(pos, "cannot read attribute '" + std::string(name) + "' of an undefined value");
  }
  if (obj.is_dict()) {
    const Value* v = obj.dict().Find(name);
    return v != nullptr ? *v : Value();
  }
  return Value();
}

StatusOr<Value> Renderer::GetItem(const Position& pos, const Value& obj, const Value& key) {
  if (obj.is_undefined()) return Error(pos, "cannot index an undefined value with " + key.Repr());
  if (obj.is_dict()) {
    const Value* v = obj.dict().Find(key);
    return v != nullptr ? *v : Value();
  }
  if ((obj.is_list() || obj.is_string()) && key.is_integer()) {
    // No list or string is that long, and key + 1 below would overflow.
    if (key.as_int() == std::numeric_limits<int64_t>::max()) return Value();
    const Value start = key;
    const Value stop = key.as_int() == -1 ? Value() : Value::Int(key.as_int() + 1);
    StatusOr<Value> r = SliceValue(obj, &start, stop.is_undefined() ? nullptr : &stop, nullptr);
    if (!r.ok()) return Error(pos, r.status().message());
    if (obj.is_list()) return r->list().empty() ? Value() : r->list()[0];
    return r->text().empty() ? Value() : *r;
  }
  if (key.is_string()) return GetAttr(pos, obj, key.text().str());
  return Value();
}

StatusOr<bool> Renderer::Compare(const Position& pos, std::string_view op, const Value& a,
                                 const Value& b) {
  if (op == "==") return a.Equals(b);
  if (op == "!=") return !a.Equals(b);
  if (op == "in" || op == "not in") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string()) return Error(pos, "'in <string>' needs a string on the left, not a " + std::string(a.TypeName()));
      found = b.text().str().find(a.text().str()) != std::string::npos;
    } else if (b.is_list()) {
      for (const Value& item : b.list()) {
        if (item.Equals(a)) {
          found = true;
          break;
        }
      }
    } else if (b.is_dict()) {
      found = b.dict().Find(a) != nullptr;
    } else if (!b.is_undefined()) {
      return Error(pos, "a " + std::string(b.TypeName()) + " is not a container for 'in'");
    }
    return found == (op == "in");
  }
  int cmp;
  if (a.is_number() && b.is_number()) {
    const double x = a.as_double(), y = b.as_double();
    if (a.is_integer() && b.is_integer()) {
      cmp = a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int() ? 1 : 0;
    } else {
      if (std::isnan(x) || std::isnan(y)) return false;
      cmp = x < y ? -1 : x > y ? 1 : 0;
    }
  } else if (a.is_string() && b.is_string()) {
    cmp = a.text().str().compare(b.text().str());  // UTF-8 byte order is code point order
  } else {
    return Error(pos, "cannot compare a " + std::string(a.TypeName()) + " with a " +
                          std::string(b.TypeName()) + " using '" + std::string(op) + "'");
  }
  if (op == "<") return cmp < 0;
  if (op == "<=") return cmp <= 0;
  if (op == ">") return cmp > 0;
  return cmp >= 0;
}

namespace {

int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t FloorMod(int64_t a, int64_t b) {
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

}  // namespace

StatusOr<Value> Renderer::EvalBinary(const Expr& e, const Value& a, const Value& b) {
  const std::string& op = e.name;
  if (op == "~") {
    Text t = a.ToText();
    t.Append(b.ToText());
    RETURN_IF_ERROR(Charge(t.size()));
    return Value::String(std::move(t));
  }
  auto type_error = [&] {
    return Error(e.pos, "unsupported operand types for " + op + ": " + std::string(a.TypeName()) +
                            " and " + std::string(b.TypeName()));
  };
  if (a.is_number() && b.is_number()) {
    const bool ints = a.is_integer() && b.is_integer();
    const int64_t x = ints ? a.as_int() : 0, y = ints ? b.as_int() : 0;
    const double fx = a.as_double(), fy = b.as_double();
    int64_t r;
    if (op == "+") {
      if (!ints) return Value::Float(fx + fy);
      if (__builtin_add_overflow(x, y, &r)) return Error(e.pos, "integer overflow");
      return Value::Int(r);
    }
    if (op == "-") {
      if (!ints) return Value::Float(fx - fy);
      if (__builtin_sub_overflow(x, y, &r)) return Error(e.pos, "integer overflow");
      return Value::Int(r);
    }
    if (op == "*") {
      if (!ints) return Value::Float(fx * fy);
      if (__builtin_mul_overflow(x, y, &r)) return Error(e.pos, "integer overflow");
      return Value::Int(r);
    }
    if (op == "/") {
      if (fy == 0) return Error(e.pos, "division by zero");
      return Value::Float(fx / fy);
    }
    if (op == "//" || op == "%") {
      if (fy == 0) return Error(e.pos, op == "%" ? "modulo by zero" : "division by zero");
      if (ints) {
        if (x == std::numeric_limits<int64_t>::min() && y == -1) return Error(e.pos, "integer overflow");
        return Value::Int(op == "//" ? FloorDiv(x, y) : FloorMod(x, y));
      }
      if (op == "//") return Value::Float(std::floor(fx / fy));
      double m = std::fmod(fx, fy);
      if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
      return Value::Float(m);
    }
    if (op == "**") {
      if (ints && y >= 0) {
        int64_t result = 1, base = x;
        for (int64_t k = y; k > 0; k >>= 1) {
          if ((k & 1) && __builtin_mul_overflow(result, base, &result)) return Error(e.pos, "integer overflow");
          if (k > 1 && __builtin_mul_overflow(base, base, &base)) {
            if (result != 0) return Error(e.pos, "integer overflow");
          }
        }
        return Value::Int(result);
      }
      return Value::Float(std::pow(fx, fy));
    }
    return type_error();
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      RETURN_IF_ERROR(Charge(a.text().size() + b.text().size()));
      Text t = a.text();
      t.Append(b.text());
      return Value::String(std::move(t));
    }
    if (a.is_list() && b.is_list()) {
      RETURN_IF_ERROR(Charge((a.list().size() + b.list().size()) * sizeof(Value)));
      List l = a.list();
      l.insert(l.end(), b.list().begin(), b.list().end());
      return Value::MakeList(std::move(l));
    }
    return type_error();
  }
  if (op == "*" && (a.is_integer() || b.is_integer()) && (a.is_string() || b.is_string() || a.is_list() || b.is_list())) {
    const Value& seq = a.is_integer() ? b : a;
    const int64_t times = std::max<int64_t>(0, a.is_integer() ? a.as_int() : b.as_int());
    const size_t unit = seq.is_string() ? seq.text().size() : seq.list().size() * sizeof(Value);
    if (unit > 0 && static_cast<uint64_t>(times) > (options_.limits.max_string_bytes + unit) / unit) {
      return ResourceExhaustedError("template repeats a sequence " + std::to_string(times) + " times");
    }
    RETURN_IF_ERROR(Charge(unit * static_cast<size_t>(times)));
    if (seq.is_string()) {
      Text t;
      for (int64_t k = 0; k < times; ++k) t.Append(seq.text());
      return Value::String(std::move(t));
    }
    List l;
    for (int64_t k = 0; k < times; ++k) l.insert(l.end(), seq.list().begin(), seq.list().end());
    return Value::MakeList(std::move(l));
  }
  if (op == "%" && a.is_string()) {
    StatusOr<Text> out = PercentFormat(a.text(), b);
    if (!out.ok()) return Error(e.pos, out.status().message());
    RETURN_IF_ERROR(Charge(out->size()));
    return Value::String(std::move(out).value());
  }
  return type_error();
}

StatusOr<Value> Renderer::EvalCall(const Expr& e) {
  const Expr& callee = *e.args[0];
  if (callee.kind == ExprKind::kAttr) {
    ASSIGN_OR_RETURN(Value obj, Eval(*callee.args[0]));
    ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
    bool found = false;
    ASSIGN_OR_RETURN(Value r, CallMethod(e.pos, obj, callee.name, args, &found));
    if (found) return r;
    ASSIGN_OR_RETURN(Value fn, GetAttr(callee.pos, obj, callee.name));
    if (fn.kind() != Kind::kCallable) {
      return Error(e.pos, "a " + std::string(obj.TypeName()) + " has no method '" + callee.name + "'");
    }
    return fn.callable().macro ? CallMacro(e.pos, fn.callable(), args) : CallGlobal(e.pos, fn.callable(), args);
  }
  ASSIGN_OR_RETURN(Value fn, Eval(callee));
  if (fn.kind() != Kind::kCallable) {
    const std::string what = callee.kind == ExprKind::kName ? "'" + callee.name + "'" : "the value";
    return Error(e.pos, what + (fn.is_undefined() ? " is undefined" : " is not callable"));
  }
  ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
  if (fn.callable().macro != nullptr) return CallMacro(e.pos, fn.callable(), args);
  return CallGlobal(e.pos, fn.callable(), args);
}

StatusOr<Value> Renderer::CallMacro(const Position& pos, const Callable& fn, const CallArgs& args) {
  const Node& macro = *fn.macro;
  if (call_depth_ >= options_.limits.max_call_depth) {
    return ResourceExhaustedError("line " + std::to_string(pos.line) + ": macro calls nested deeper than " +
                                  std::to_string(options_.limits.max_call_depth));
  }
  if (args.positional.size() > macro.params.size()) {
    return Error(pos, "macro '" + macro.text + "' takes " + std::to_string(macro.params.size()) +
                          " arguments, " + std::to_string(args.positional.size()) + " given");
  }
  for (const auto& [name, v] : args.keyword) {
    bool known = false;
    for (const auto& p : macro.params) known = known || p.first == name;
    if (!known) return Error(pos, "macro '" + macro.text + "' has no parameter '" + name + "'");
  }
  const size_t saved_floor = floor_;
  floor_ = frames_.size();
  frames_.emplace_back();
  ++call_depth_;
  Status bound = OkStatus();
  for (size_t k = 0; k < macro.params.size() && bound.ok(); ++k) {
    const Value* given = args.Get(k, macro.params[k].first);
    if (given != nullptr) {
      Assign(macro.params[k].first, *given);
    } else if (macro.params[k].second) {
      StatusOr<Value> def = Eval(*macro.params[k].second);
      if (def.ok()) {
        Assign(macro.params[k].first, *def);
      } else {
        bound = def.status();
      }
    } else {
      Assign(macro.params[k].first, Value());
    }
  }
  Text out;
  StatusOr<Flow> flow = bound.ok() ? ExecBody(macro.body, &out) : StatusOr<Flow>(bound);
  --call_depth_;
  frames_.pop_back();
  floor_ = saved_floor;
  if (!flow.ok()) return flow.status();
  return Value::String(std::move(out));
}

}  // namespace llmasos::chat::jinja
