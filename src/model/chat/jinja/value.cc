#include "model/chat/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "util/logging.h"

namespace llmasos::chat::jinja {

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.i_ = b ? 1 : 0;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}

Value Value::Float(double f) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = f;
  return v;
}

Value Value::String(Text t) {
  Value v;
  v.kind_ = Kind::kString;
  v.ptr_ = std::make_shared<const Text>(std::move(t));
  return v;
}

Value Value::String(std::string s, bool is_content) { return String(Text(std::move(s), is_content)); }

Value Value::MakeList(List items) {
  Value v;
  v.kind_ = Kind::kList;
  for (const Value& item : items) v.depth_ = std::max(v.depth_, item.depth_ + 1);
  if (items.empty()) v.depth_ = 1;
  v.ptr_ = std::make_shared<const List>(std::move(items));
  return v;
}

Value Value::MakeTuple(List items) {
  Value v = MakeList(std::move(items));
  v.tuple_ = true;
  return v;
}

Value Value::MakeDict(std::shared_ptr<Dict> d) {
  Value v;
  v.kind_ = Kind::kDict;
  v.depth_ = 1;
  if (!d->is_namespace) {
    for (const auto& [key, item] : d->items) v.depth_ = std::max({v.depth_, key.depth_ + 1, item.depth_ + 1});
  }
  v.ptr_ = std::move(d);
  return v;
}

Value Value::MakeCallable(Callable c) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.ptr_ = std::make_shared<const Callable>(std::move(c));
  return v;
}

const Text& Value::text() const {
  CHECK(kind_ == Kind::kString);
  return *std::get<std::shared_ptr<const Text>>(ptr_);
}

const List& Value::list() const {
  CHECK(kind_ == Kind::kList);
  return *std::get<std::shared_ptr<const List>>(ptr_);
}

const Dict& Value::dict() const { return mutable_dict(); }

Dict& Value::mutable_dict() const {
  CHECK(kind_ == Kind::kDict);
  return *std::get<std::shared_ptr<Dict>>(ptr_);
}

bool Value::is_namespace() const { return kind_ == Kind::kDict && dict().is_namespace; }

const Callable& Value::callable() const {
  CHECK(kind_ == Kind::kCallable);
  return *std::get<std::shared_ptr<const Callable>>(ptr_);
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return false;
    case Kind::kBool:
    case Kind::kInt: return i_ != 0;
    case Kind::kFloat: return f_ != 0;
    case Kind::kString: return !text().empty();
    case Kind::kList: return !list().empty();
    case Kind::kDict: return !dict().items.empty();
    case Kind::kCallable: return true;
  }
  return false;
}

bool Value::Equals(const Value& other) const {
  if (is_number() && other.is_number()) {
    if (kind_ == Kind::kFloat || other.kind_ == Kind::kFloat) return as_double() == other.as_double();
    return i_ == other.i_;
  }
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone: return true;
    case Kind::kString: return text().str() == other.text().str();
    case Kind::kList: {
      const List& a = list();
      const List& b = other.list();
      if (a.size() != b.size() || tuple_ != other.tuple_) return false;
      for (size_t i = 0; i < a.size(); ++i) {
        if (!a[i].Equals(b[i])) return false;
      }
      return true;
    }
    case Kind::kDict: {
      const Dict& a = dict();
      const Dict& b = other.dict();
      if (&a == &b) return true;
      if (a.is_namespace || b.is_namespace || a.items.size() != b.items.size()) return false;
      for (const auto& [k, v] : a.items) {
        const Value* w = b.Find(k);
        if (w == nullptr || !v.Equals(*w)) return false;
      }
      return true;
    }
    case Kind::kCallable: return &callable() == &other.callable();
    default: return false;
  }
}

std::string FloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, r.ptr);
  // sci is "[-]d[.ddd]e[+-]XX": split into sign, digits and the decimal exponent.
  std::string sign;
  if (sci[0] == '-') {
    sign = "-";
    sci.erase(0, 1);
  }
  const size_t e = sci.find('e');
  const int exp = std::atoi(sci.c_str() + e + 1);
  std::string digits;
  for (size_t i = 0; i < e; ++i) {
    if (sci[i] != '.') digits.push_back(sci[i]);
  }
  if (exp >= -5 + 1 && exp < 16) {  // Python's repr switches to exponent form outside [1e-4, 1e16)
    std::string out;
    if (exp < 0) {
      out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<size_t>(exp) + 1 >= digits.size()) {
      out = digits + std::string(static_cast<size_t>(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exp) + 1) + "." + digits.substr(static_cast<size_t>(exp) + 1);
    }
    return sign + out;
  }
  std::string mant = digits.substr(0, 1);
  if (digits.size() > 1) mant += "." + digits.substr(1);
  char ebuf[16];
  std::snprintf(ebuf, sizeof ebuf, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return sign + mant + ebuf;
}

namespace {

std::string StringRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  out.push_back(quote);
  return out;
}

bool ContainsContent(const Value& v) {
  switch (v.kind()) {
    case Kind::kString: return v.text().AnyContent();
    case Kind::kList:
      for (const Value& item : v.list()) {
        if (ContainsContent(item)) return true;
      }
      return false;
    case Kind::kDict:
      if (v.dict().is_namespace) return false;  // printed as <Namespace>, its items unseen
      for (const auto& [k, item] : v.dict().items) {
        if (ContainsContent(k) || ContainsContent(item)) return true;
      }
      return false;
    default: return false;
  }
}

}  // namespace

std::string Value::Repr() const {
  switch (kind_) {
    case Kind::kString: return StringRepr(text().str());
    case Kind::kList: {
      std::string out = tuple_ ? "(" : "[";
      const List& l = list();
      for (size_t i = 0; i < l.size(); ++i) {
        if (i > 0) out += ", ";
        out += l[i].Repr();
      }
      if (tuple_ && l.size() == 1) out += ",";
      return out + (tuple_ ? ")" : "]");
    }
    case Kind::kDict: {
      const Dict& d = dict();
      if (d.is_namespace) return "<Namespace>";
      std::string out = "{";
      for (size_t i = 0; i < d.items.size(); ++i) {
        if (i > 0) out += ", ";
        out += d.items[i].first.Repr() + ": " + d.items[i].second.Repr();
      }
      return out + "}";
    }
    default: return ToText().str();
  }
}

Text Value::ToText() const {
  switch (kind_) {
    case Kind::kUndefined: return Text();
    case Kind::kNone: return Text("None");
    case Kind::kBool: return Text(i_ ? "True" : "False");
    case Kind::kInt: return Text(std::to_string(i_));
    case Kind::kFloat: return Text(FloatRepr(f_));
    case Kind::kString: return text();
    case Kind::kCallable: return Text("<function " + callable().name + ">");
    case Kind::kList:
    case Kind::kDict: break;
  }
  // A printed list or dict keeps no per-byte marks: if it holds content, all of it is content.
  return Text(Repr(), ContainsContent(*this));
}

std::string_view Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined: return "undefined";
    case Kind::kNone: return "none";
    case Kind::kBool: return "boolean";
    case Kind::kInt: return "integer";
    case Kind::kFloat: return "float";
    case Kind::kString: return "string";
    case Kind::kList: return "list";
    case Kind::kDict: return dict().is_namespace ? "namespace" : "dict";
    case Kind::kCallable: return "function";
  }
  return "?";
}

const Value* Dict::Find(const Value& key) const {
  for (const auto& [k, v] : items) {
    if (k.Equals(key)) return &v;
  }
  return nullptr;
}

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [k, v] : items) {
    if (k.is_string() && k.text().str() == key) return &v;
  }
  return nullptr;
}

void Dict::Set(Value key, Value value) {
  for (auto& [k, v] : items) {
    if (k.Equals(key)) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

}  // namespace llmasos::chat::jinja
