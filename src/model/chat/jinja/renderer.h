// Renderer: the interpreter behind Template::Render (internal to the jinja folder). One
// Renderer renders one template once; it owns the scopes and the budget of that rendering.
//
// Scopes follow Jinja: the template's top level and the variables passed in share the root
// scope; each for-loop iteration and each macro call gets its own scope, so a `set` inside a
// loop does not outlive the iteration (namespace() objects carry state out). A macro sees its
// own scope and the root scope only.
#ifndef LLMASOS_MODEL_CHAT_JINJA_RENDERER_H_
#define LLMASOS_MODEL_CHAT_JINJA_RENDERER_H_

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/chat/jinja/ast.h"
#include "model/chat/jinja/template.h"

namespace llmasos::chat::jinja {

// Arguments of a filter, test, method or function call, evaluated.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  // The argument at `index` or named `name`, or nullptr.
  const Value* Get(size_t index, std::string_view name) const;
};

// Lists and dicts a template builds nest at most this deep (JSON input is held to 100), so
// printing, comparing and freeing them never recurses deeply.
inline constexpr uint32_t kMaxValueDepth = 128;

class Renderer {
 public:
  Renderer(const Dict& variables, const RenderOptions& options);

  StatusOr<Text> Run(const Body& body);

  // ---- used by builtins.cc ----
  // Counts one step of work; ResourceExhausted past the limit.
  Status Tick();
  // Accounts for `bytes` of newly built string; ResourceExhausted past the limit.
  Status Charge(size_t bytes);
  Status Error(const Position& pos, const std::string& what) const;

  StatusOr<Value> ApplyFilter(const Position& pos, std::string_view name, const Value& subject,
                              const CallArgs& args);
  StatusOr<bool> ApplyTest(const Position& pos, std::string_view name, const Value& subject,
                           const CallArgs& args);
  // A method of a string or dict (`s.strip()`, `d.items()`); nullopt-like: *found = false when
  // the value's type has no such method.
  StatusOr<Value> CallMethod(const Position& pos, const Value& object, std::string_view name,
                             const CallArgs& args, bool* found);
  StatusOr<Value> CallGlobal(const Position& pos, const Callable& fn, const CallArgs& args);
  // Reads obj.name as Jinja does for a dict key or loop attribute: undefined when absent.
  StatusOr<Value> GetAttr(const Position& pos, const Value& obj, std::string_view name);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  struct Frame {
    std::vector<std::pair<std::string, Value>> vars;
  };

  StatusOr<Flow> ExecBody(const Body& body, Text* out);
  StatusOr<Flow> Exec(const Node& node, Text* out);
  StatusOr<Flow> ExecFor(const Node& node, Text* out);
  Status ExecSet(const Node& node);
  // InvalidArgument when a list or dict the template builds nests deeper than kMaxValueDepth.
  Status CheckDepth(const Position& pos, const Value& v) const;
  // Assigns the items of `value` to node.targets (for-loop and set tuple targets).
  Status Unpack(const Node& node, const Value& value);
  Status Emit(const Text& text, Text* out);

  StatusOr<Value> Eval(const Expr& e);
  StatusOr<Value> EvalBinary(const Expr& e, const Value& a, const Value& b);
  StatusOr<bool> Compare(const Position& pos, std::string_view op, const Value& a, const Value& b);
  StatusOr<Value> EvalCall(const Expr& e);
  StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first);
  StatusOr<Value> GetItem(const Position& pos, const Value& obj, const Value& key);
  StatusOr<Value> CallMacro(const Position& pos, const Callable& fn, const CallArgs& args);

  Value Lookup(std::string_view name) const;
  void Assign(std::string name, Value value);

  RenderOptions options_;
  std::vector<Frame> frames_;  // frames_[0]: globals, variables and the template's top level
  size_t floor_ = 1;           // lookups search frames_[floor_..] then frames_[0]
  int call_depth_ = 0;
  uint64_t steps_ = 0;
  size_t string_bytes_ = 0;
  size_t output_bytes_ = 0;
};

// Whether `v` is or holds a namespace.
bool HoldsNamespace(const Value& v);
// The items a for loop or a filter walks: a list's items, a dict's keys, a string's characters;
// nothing for undefined. InvalidArgument for a value that is not iterable.
StatusOr<List> Iterate(const Value& v);
// Slicing as Python does, for lists and strings (by code point).
StatusOr<Value> SliceValue(const Value& v, const Value* start, const Value* stop, const Value* step);
// Python's printf-style `format % args` with %s, %r, %d, %i, %f and %% (no widths or flags);
// a tuple supplies one argument per conversion.
StatusOr<Text> PercentFormat(const Text& format, const Value& args);
// Python's str.format with {} / {0} / {name} fields.
StatusOr<Text> FormatString(const Text& format, const CallArgs& args);

}  // namespace llmasos::chat::jinja

#endif  // LLMASOS_MODEL_CHAT_JINJA_RENDERER_H_
