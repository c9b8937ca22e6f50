// Value: what a Jinja expression evaluates to, with Python's semantics where templates rely on
// them (truthiness, equality, str() and repr(), int/float arithmetic).
//
// Lists are immutable and shared (the sandbox HF renders with forbids mutating them); dicts are
// shared too and mutable only when they are a namespace() (`set ns.x = ...`). Copying a Value
// is cheap: strings, lists and dicts are reference counted.
#ifndef LLMASOS_MODEL_CHAT_JINJA_VALUE_H_
#define LLMASOS_MODEL_CHAT_JINJA_VALUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "model/chat/jinja/text.h"

namespace llmasos::chat::jinja {

struct Node;
class Value;
using List = std::vector<Value>;
struct Dict;

// Something a template can call: a macro it defined, or a global function (range, namespace,
// raise_exception, strftime_now, dict).
struct Callable {
  std::string name;
  const Node* macro = nullptr;  // owned by the template; null for a global function
};

enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

class Value {
 public:
  Value() = default;  // undefined
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double f);
  static Value String(Text t);
  static Value String(std::string s, bool is_content = false);
  static Value MakeList(List items);
  // A tuple: a list that prints as (a, b) and is never equal to a list, as in Python.
  static Value MakeTuple(List items);
  static Value MakeDict(std::shared_ptr<Dict> d);
  static Value MakeCallable(Callable c);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kList && tuple_; }
  bool is_namespace() const;
  // Nesting of lists and dicts (0 for a scalar), as it was when this list or dict was made; a
  // namespace counts as 1 whatever it holds (it may not hold another namespace).
  uint32_t depth() const { return depth_; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  // Python's int includes bool.
  bool is_integer() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }
  bool is_number() const { return is_integer() || kind_ == Kind::kFloat; }

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return i_; }  // REQUIRES: is_integer()
  double as_double() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(i_); }
  const Text& text() const;   // REQUIRES: is_string()
  const List& list() const;   // REQUIRES: is_list()
  const Dict& dict() const;   // REQUIRES: is_dict()
  Dict& mutable_dict() const; // REQUIRES: is_dict()
  const Callable& callable() const;

  // Python's bool(x).
  bool Truthy() const;
  // Python's ==.
  bool Equals(const Value& other) const;
  // Python's str(x) (undefined prints as ""), with content marks kept for strings.
  Text ToText() const;
  // Python's repr(x), as str() of a list or dict shows its items.
  std::string Repr() const;
  // Name of the type for error messages ("string", "list", ...).
  std::string_view TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool tuple_ = false;
  uint32_t depth_ = 0;
  int64_t i_ = 0;
  double f_ = 0;
  std::variant<std::monostate, std::shared_ptr<const Text>, std::shared_ptr<const List>,
               std::shared_ptr<Dict>, std::shared_ptr<const Callable>>
      ptr_;
};

// A Python dict in insertion order. Keys are Values (strings in practice), compared with ==.
struct Dict {
  std::vector<std::pair<Value, Value>> items;
  bool is_namespace = false;

  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
  void Set(Value key, Value value);
};

// Python's repr() of a float (shortest round-trip digits: 0.1, 1e-05, 1e+16, inf).
std::string FloatRepr(double f);

}  // namespace llmasos::chat::jinja

#endif  // LLMASOS_MODEL_CHAT_JINJA_VALUE_H_
