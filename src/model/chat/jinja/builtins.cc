// Filters, tests, string and dict methods and global functions: the Renderer's built-ins.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>

#include "model/chat/jinja/json.h"
#include "model/chat/jinja/python_text.h"
#include "model/chat/jinja/renderer.h"
#include "model/chat/jinja/strings.h"

namespace llmasos::chat::jinja {
namespace {

std::optional<std::string> OptString(const Value* v) {
  if (v == nullptr || v->is_none() || v->is_undefined()) return std::nullopt;
  return v->ToText().str();
}

int64_t Length(const Value& v) {
  switch (v.kind()) {
    case Kind::kString: return static_cast<int64_t>(CodePointStarts(v.text().str()).size() - 1);
    case Kind::kList: return static_cast<int64_t>(v.list().size());
    case Kind::kDict: return static_cast<int64_t>(v.dict().items.size());
    default: return 0;
  }
}

Value Pairs(const Dict& d) {
  List out;
  for (const auto& [k, v] : d.items) out.push_back(Value::MakeTuple({k, v}));
  return Value::MakeList(std::move(out));
}

// Python's int(str): optional sign, digits, surrounding whitespace.
std::optional<int64_t> ParseInt(const std::string& s, int base) {
  const std::string t = PythonStrip(s);
  if (t.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(t.c_str(), &end, base);
  if (errno == ERANGE || end != t.c_str() + t.size()) return std::nullopt;
  return v;
}

}  // namespace

// ---- slicing and formatting ----

StatusOr<Value> SliceValue(const Value& v, const Value* start, const Value* stop, const Value* step) {
  auto as_index = [](const Value* x, const char* what) -> StatusOr<std::optional<int64_t>> {
    if (x == nullptr || x->is_none() || x->is_undefined()) return std::optional<int64_t>();
    if (!x->is_integer()) return InvalidArgumentError(std::string("slice ") + what + " must be an integer");
    return std::optional<int64_t>(x->as_int());
  };
  ASSIGN_OR_RETURN(std::optional<int64_t> a, as_index(start, "start"));
  ASSIGN_OR_RETURN(std::optional<int64_t> b, as_index(stop, "stop"));
  ASSIGN_OR_RETURN(std::optional<int64_t> s, as_index(step, "step"));
  const int64_t st = s.value_or(1);
  if (st == 0) return InvalidArgumentError("slice step cannot be zero");
  std::vector<size_t> starts;
  int64_t n;
  if (v.is_list()) {
    n = static_cast<int64_t>(v.list().size());
  } else if (v.is_string()) {
    starts = CodePointStarts(v.text().str());
    n = static_cast<int64_t>(starts.size()) - 1;
  } else {
    return InvalidArgumentError("a " + std::string(v.TypeName()) + " cannot be sliced");
  }
  // Python's slice.indices().
  auto clamp = [&](std::optional<int64_t> x, int64_t def) {
    if (!x) return def;
    int64_t i = *x;
    if (i < 0) i += n;
    if (st > 0) return std::clamp<int64_t>(i, 0, n);
    return std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t lo = clamp(a, st > 0 ? 0 : n - 1);
  const int64_t hi = clamp(b, st > 0 ? n : -1);
  std::vector<int64_t> picked;
  for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) picked.push_back(i);
  if (v.is_list()) {
    List out;
    for (int64_t i : picked) out.push_back(v.list()[static_cast<size_t>(i)]);
    return v.is_tuple() ? Value::MakeTuple(std::move(out)) : Value::MakeList(std::move(out));
  }
  Text out;
  if (st == 1 && !picked.empty()) {
    out = v.text().Slice(starts[picked.front()], starts[picked.back() + 1] - starts[picked.front()]);
  } else {
    for (int64_t i : picked) out.AppendSlice(v.text(), starts[i], starts[i + 1] - starts[i]);
  }
  return Value::String(std::move(out));
}

StatusOr<Text> FormatString(const Text& format, const CallArgs& args) {
  const std::string& f = format.str();
  Text out;
  size_t auto_index = 0;
  size_t i = 0;
  while (i < f.size()) {
    const char c = f[i];
    if (c == '{' && i + 1 < f.size() && f[i + 1] == '{') {
      out.AppendSlice(format, i, 1);
      i += 2;
    } else if (c == '}' && i + 1 < f.size() && f[i + 1] == '}') {
      out.AppendSlice(format, i, 1);
      i += 2;
    } else if (c == '{') {
      const size_t end = f.find('}', i);
      if (end == std::string::npos) return InvalidArgumentError("format: single '{' in the format string");
      const std::string field = f.substr(i + 1, end - i - 1);
      if (field.find_first_of(":!.[") != std::string::npos) {
        return InvalidArgumentError("format: field '{" + field + "}' uses a format spec or conversion, which is not supported");
      }
      const Value* v = nullptr;
      if (field.empty()) {
        v = args.Get(auto_index++, "");
      } else if (field.find_first_not_of("0123456789") == std::string::npos) {
        v = args.Get(static_cast<size_t>(std::strtoul(field.c_str(), nullptr, 10)), "");
      } else {
        v = args.Get(SIZE_MAX, field);
      }
      if (v == nullptr) return InvalidArgumentError("format: no argument for '{" + field + "}'");
      out.Append(v->ToText());
      i = end + 1;
    } else if (c == '}') {
      return InvalidArgumentError("format: single '}' in the format string");
    } else {
      const size_t next = f.find_first_of("{}", i);
      const size_t len = (next == std::string::npos ? f.size() : next) - i;
      out.AppendSlice(format, i, len);
      i += len;
    }
  }
  return out;
}

StatusOr<Text> PercentFormat(const Text& format, const Value& args) {
  const List single = {args};
  const List& items = args.is_tuple() ? args.list() : single;
  const std::string& f = format.str();
  Text out;
  size_t next = 0;
  size_t i = 0;
  while (i < f.size()) {
    const size_t pct = f.find('%', i);
    const size_t len = (pct == std::string::npos ? f.size() : pct) - i;
    out.AppendSlice(format, i, len);
    i += len;
    if (pct == std::string::npos) break;
    if (pct + 1 >= f.size()) return InvalidArgumentError("'%' formatting: incomplete format");
    const char conv = f[pct + 1];
    i = pct + 2;
    if (conv == '%') {
      out.Append("%", false);
      continue;
    }
    if (next >= items.size()) return InvalidArgumentError("'%' formatting: not enough arguments");
    const Value& v = items[next++];
    switch (conv) {
      case 's': out.Append(v.ToText()); break;
      case 'r': out.Append(v.Repr(), v.is_string() && v.text().AnyContent()); break;
      case 'd':
      case 'i':
        if (!v.is_number()) return InvalidArgumentError("'%' formatting: %d needs a number");
        out.Append(std::to_string(v.is_integer() ? v.as_int() : static_cast<int64_t>(v.as_double())), false);
        break;
      case 'f': {
        if (!v.is_number()) return InvalidArgumentError("'%' formatting: %f needs a number");
        char buf[512];
        std::snprintf(buf, sizeof buf, "%f", v.as_double());
        out.Append(buf, false);
        break;
      }
      default:
        return InvalidArgumentError(std::string("'%' formatting: conversion '%") + conv + "' is not supported");
    }
  }
  if (next < items.size()) return InvalidArgumentError("'%' formatting: not all arguments converted");
  return out;
}

// ---- attribute access used by map/selectattr: "a.b" walks nested keys ----

namespace {

Value Attribute(const Value& item, const std::string& path) {
  Value cur = item;
  size_t pos = 0;
  while (pos <= path.size()) {
    const size_t dot = path.find('.', pos);
    const std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
    if (cur.is_dict()) {
      const Value* v = cur.dict().Find(part);
      cur = v ? *v : Value();
    } else if (cur.is_list() && !part.empty() && part.find_first_not_of("0123456789") == std::string::npos) {
      const size_t idx = std::strtoul(part.c_str(), nullptr, 10);
      cur = idx < cur.list().size() ? cur.list()[idx] : Value();
    } else {
      return Value();
    }
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  return cur;
}

}  // namespace

// ---- filters ----

StatusOr<Value> Renderer::ApplyFilter(const Position& pos, std::string_view name,
                                      const Value& subject, const CallArgs& args) {
  RETURN_IF_ERROR(Tick());
  auto fail = [&](const std::string& what) { return Error(pos, "filter '" + std::string(name) + "': " + what); };
  auto need_string_result = [&](Text t) -> StatusOr<Value> {
    RETURN_IF_ERROR(Charge(t.size()));
    return Value::String(std::move(t));
  };
  const Value* a0 = args.Get(0, "");

  if (name == "trim") return need_string_result(Strip(subject.ToText(), OptString(args.Get(0, "chars")), true, true));
  if (name == "upper") return need_string_result(Upper(subject.ToText()));
  if (name == "lower") return need_string_result(Lower(subject.ToText()));
  if (name == "capitalize") return need_string_result(Capitalize(subject.ToText()));
  if (name == "title") return need_string_result(TitleFilter(subject.ToText()));
  if (name == "string") return need_string_result(subject.ToText());
  if (name == "safe") return subject;
  if (name == "length" || name == "count") {
    if (!subject.is_string() && !subject.is_list() && !subject.is_dict() && !subject.is_undefined()) {
      return fail("a " + std::string(subject.TypeName()) + " has no length");
    }
    return Value::Int(Length(subject));
  }
  if (name == "tojson") {
    const Value* ensure_ascii = args.Get(0, "ensure_ascii");
    if (ensure_ascii != nullptr && ensure_ascii->Truthy()) return fail("ensure_ascii=True is not supported");
    JsonStyle style;
    if (const Value* indent = args.Get(1, "indent"); indent != nullptr && !indent->is_none()) {
      if (!indent->is_integer() || indent->as_int() < 0 || indent->as_int() > 64) {
        return fail("indent must be an integer from 0 to 64");
      }
      style.indent = static_cast<int>(indent->as_int());
      style.item_separator = ",";
    }
    if (const Value* seps = args.Get(2, "separators"); seps != nullptr && !seps->is_none()) {
      if (!seps->is_list() || seps->list().size() != 2 || !seps->list()[0].is_string() || !seps->list()[1].is_string()) {
        return fail("separators must be a pair of strings");
      }
      style.item_separator = seps->list()[0].text().str();
      style.key_separator = seps->list()[1].text().str();
    }
    if (const Value* sort = args.Get(3, "sort_keys"); sort != nullptr) style.sort_keys = sort->Truthy();
    StatusOr<Text> json = ToJson(subject, style);
    if (!json.ok()) return fail(json.status().message());
    return need_string_result(std::move(json).value());
  }
  if (name == "join") {
    std::string attribute;
    if (const Value* attr = args.Get(1, "attribute"); attr != nullptr) attribute = attr->ToText().str();
    const Text sep = args.Get(0, "d") ? args.Get(0, "d")->ToText() : Text();
    StatusOr<List> items = Iterate(subject);
    if (!items.ok()) return fail(items.status().message());
    Text out;
    for (size_t k = 0; k < items->size(); ++k) {
      if (k > 0) out.Append(sep);
      out.Append((attribute.empty() ? (*items)[k] : Attribute((*items)[k], attribute)).ToText());
      if (out.size() > options_.limits.max_string_bytes) {
        return ResourceExhaustedError("filter 'join': the result is larger than the string budget");
      }
    }
    return need_string_result(std::move(out));
  }
  if (name == "default" || name == "d") {
    const Value* boolean = args.Get(1, "boolean");
    const bool use_default = subject.is_undefined() || (boolean != nullptr && boolean->Truthy() && !subject.Truthy());
    if (!use_default) return subject;
    const Value* def = args.Get(0, "default_value");
    return def != nullptr ? *def : Value::String("");
  }
  if (name == "first" || name == "last") {
    StatusOr<List> items = Iterate(subject);
    if (!items.ok()) return fail(items.status().message());
    if (items->empty()) return Value();
    return name == "first" ? items->front() : items->back();
  }
  if (name == "list") {
    StatusOr<List> items = Iterate(subject);
    if (!items.ok()) return fail(items.status().message());
    return Value::MakeList(std::move(items).value());
  }
  if (name == "reverse") {
    if (subject.is_string()) {
      Value step = Value::Int(-1);
      return SliceValue(subject, nullptr, nullptr, &step);
    }
    StatusOr<List> items = Iterate(subject);
    if (!items.ok()) return fail(items.status().message());
    std::reverse(items->begin(), items->end());
    return Value::MakeList(std::move(items).value());
  }
  if (name == "items") {
    if (subject.is_undefined()) return Value::MakeList({});
    if (!subject.is_dict()) return fail("needs a mapping, not a " + std::string(subject.TypeName()));
    return Pairs(subject.dict());
  }
  if (name == "dictsort") {
    if (!subject.is_dict()) return fail("needs a mapping, not a " + std::string(subject.TypeName()));
    List pairs = Pairs(subject.dict()).list();
    std::stable_sort(pairs.begin(), pairs.end(), [](const Value& x, const Value& y) {
      return Lower(x.list()[0].ToText()).str() < Lower(y.list()[0].ToText()).str();
    });
    return Value::MakeList(std::move(pairs));
  }
  if ((name == "int" || name == "float" || name == "round") && subject.is_undefined()) {
    return fail("the value is undefined");
  }
  if (name == "int") {
    const Value* def = args.Get(0, "default");
    const Value fallback = def != nullptr ? *def : Value::Int(0);
    const Value* base_arg = args.Get(1, "base");
    const int base = base_arg != nullptr && base_arg->is_integer() ? static_cast<int>(base_arg->as_int()) : 10;
    if (subject.is_integer()) return Value::Int(subject.as_int());
    if (subject.kind() == Kind::kFloat) {
      const double f = subject.as_double();
      if (!std::isfinite(f) || std::fabs(f) >= 9.2e18) return fallback;
      return Value::Int(static_cast<int64_t>(f));
    }
    if (subject.is_string()) {
      if (std::optional<int64_t> v = ParseInt(subject.text().str(), base)) return Value::Int(*v);
      char* end = nullptr;
      const std::string t = PythonStrip(subject.text().str());
      const double f = std::strtod(t.c_str(), &end);
      if (!t.empty() && end == t.c_str() + t.size() && std::isfinite(f) && std::fabs(f) < 9.2e18) {
        return Value::Int(static_cast<int64_t>(f));
      }
    }
    return fallback;
  }
  if (name == "float") {
    const Value* def = args.Get(0, "default");
    const Value fallback = def != nullptr ? *def : Value::Float(0.0);
    if (subject.is_number()) return Value::Float(subject.as_double());
    if (subject.is_string()) {
      const std::string t = PythonStrip(subject.text().str());
      char* end = nullptr;
      const double f = std::strtod(t.c_str(), &end);
      if (!t.empty() && end == t.c_str() + t.size()) return Value::Float(f);
    }
    return fallback;
  }
  if (name == "abs") {
    if (subject.kind() == Kind::kFloat) return Value::Float(std::fabs(subject.as_double()));
    if (subject.is_integer() && subject.as_int() != INT64_MIN) return Value::Int(std::llabs(subject.as_int()));
    return fail("needs a number");
  }
  if (name == "round") {
    if (!subject.is_number()) return fail("needs a number");
    if (subject.is_integer()) return Value::Int(subject.as_int());  // Python's round keeps ints
    const Value* prec = args.Get(0, "precision");
    const int64_t p = prec != nullptr && prec->is_integer() ? std::clamp<int64_t>(prec->as_int(), 0, 15) : 0;
    const Value* method = args.Get(1, "method");
    const std::string m = method != nullptr ? method->ToText().str() : "common";
    if (m == "common") {
      // Python's round(): the exact binary value rounded half to even, which printf does too.
      char buf[512];
      std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(p), subject.as_double());
      return Value::Float(std::strtod(buf, nullptr));
    }
    if (m != "ceil" && m != "floor") return fail("method must be 'common', 'ceil' or 'floor'");
    const double scale = std::pow(10.0, static_cast<double>(p));
    const double x = subject.as_double() * scale;
    return Value::Float((m == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
  }
  if (name == "replace") {
    if (a0 == nullptr || args.Get(1, "new") == nullptr) return fail("needs the old and new strings");
    const Value* count = args.Get(2, "count");
    Text out = Replace(subject.ToText(), a0->ToText().str(), args.Get(1, "new")->ToText(),
                       count != nullptr && count->is_integer() ? count->as_int() : -1);
    return need_string_result(std::move(out));
  }
  if (name == "indent") {
    if (!subject.is_string()) return fail("needs a string, not a " + std::string(subject.TypeName()));
    const Value* width = args.Get(0, "width");
    const Text indention = width != nullptr && width->is_string()
                               ? width->text()
                               : Text(std::string(static_cast<size_t>(std::clamp<int64_t>(
                                                      width != nullptr && width->is_integer() ? width->as_int() : 4, 0, 256)),
                                                  ' '));
    const Value* first = args.Get(1, "first");
    const Value* blank = args.Get(2, "blank");
    Text s = subject.ToText();
    s.Append("\n", false);
    std::vector<Text> lines = SplitLines(s);
    Text rv;
    if (blank != nullptr && blank->Truthy()) {
      for (size_t k = 0; k < lines.size(); ++k) {
        if (k > 0) {
          rv.Append("\n", false);
          rv.Append(indention);
        }
        rv.Append(lines[k]);
      }
    } else if (!lines.empty()) {
      rv = lines[0];
      for (size_t k = 1; k < lines.size(); ++k) {
        rv.Append("\n", false);
        if (!lines[k].empty()) rv.Append(indention);
        rv.Append(lines[k]);
      }
    }
    if (first != nullptr && first->Truthy()) {
      Text t = indention;
      t.Append(rv);
      rv = std::move(t);
    }
    return need_string_result(std::move(rv));
  }
  if (name == "escape" || name == "e") {
    Text out;
    subject.ToText().ForEachRun([&](std::string_view run, bool is_content) {
      std::string esc;
      for (char c : run) {
        switch (c) {
          case '&': esc += "&amp;"; break;
          case '<': esc += "&lt;"; break;
          case '>': esc += "&gt;"; break;
          case '"': esc += "&#34;"; break;
          case '\'': esc += "&#39;"; break;
          default: esc.push_back(c);
        }
      }
      out.Append(esc, is_content);
    });
    return need_string_result(std::move(out));
  }
  if (name == "unique") {
    StatusOr<List> items = Iterate(subject);
    if (!items.ok()) return fail(items.status().message());
    List out;
    for (const Value& v : *items) {
      RETURN_IF_ERROR(Tick());
      bool seen = false;
      for (const Value& u : out) seen = seen || u.Equals(v);
      if (!seen) out.push_back(v);
    }
    return Value::MakeList(std::move(out));
  }
  if (name == "map" || name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    StatusOr<List> items = Iterate(subject);
    if (!items.ok()) return fail(items.status().message());
    List out;
    if (name == "map") {
      if (const Value* attr = args.Get(SIZE_MAX, "attribute"); attr != nullptr) {
        const Value* def = args.Get(SIZE_MAX, "default");
        for (const Value& v : *items) {
          Value got = Attribute(v, attr->ToText().str());
          out.push_back(got.is_undefined() && def != nullptr ? *def : got);
        }
      } else {
        if (a0 == nullptr || !a0->is_string()) return fail("needs attribute= or a filter name");
        CallArgs rest;
        rest.positional.assign(args.positional.begin() + 1, args.positional.end());
        for (const Value& v : *items) {
          ASSIGN_OR_RETURN(Value r, ApplyFilter(pos, a0->text().str(), v, rest));
          out.push_back(std::move(r));
        }
      }
      return Value::MakeList(std::move(out));
    }
    const bool by_attr = name == "selectattr" || name == "rejectattr";
    const bool keep_if = name == "selectattr" || name == "select";
    const size_t test_at = by_attr ? 1 : 0;
    if (by_attr && (a0 == nullptr || !a0->is_string())) return fail("needs an attribute name");
    const Value* test = args.Get(test_at, "");
    CallArgs test_args;
    if (args.positional.size() > test_at + 1) {
      test_args.positional.assign(args.positional.begin() + static_cast<ptrdiff_t>(test_at) + 1, args.positional.end());
    }
    for (const Value& v : *items) {
      const Value probe = by_attr ? Attribute(v, a0->text().str()) : v;
      bool pass;
      if (test == nullptr) {
        pass = probe.Truthy();
      } else {
        ASSIGN_OR_RETURN(pass, ApplyTest(pos, test->ToText().str(), probe, test_args));
      }
      if (pass == keep_if) out.push_back(v);
    }
    return Value::MakeList(std::move(out));
  }
  if (name == "sort") {
    StatusOr<List> items = Iterate(subject);
    if (!items.ok()) return fail(items.status().message());
    const Value* reverse = args.Get(0, "reverse");
    const Value* case_sensitive = args.Get(1, "case_sensitive");
    const Value* attribute = args.Get(2, "attribute");
    const bool cs = case_sensitive != nullptr && case_sensitive->Truthy();
    auto key = [&](const Value& v) {
      Value k = attribute != nullptr ? Attribute(v, attribute->ToText().str()) : v;
      if (!cs && k.is_string()) k = Value::String(Lower(k.text()));
      return k;
    };
    Status error = OkStatus();
    List sorted = std::move(items).value();
    std::stable_sort(sorted.begin(), sorted.end(), [&](const Value& x, const Value& y) {
      StatusOr<bool> lt = Compare(pos, "<", key(x), key(y));
      if (!lt.ok()) {
        if (error.ok()) error = lt.status();
        return false;
      }
      return *lt;
    });
    RETURN_IF_ERROR(error);
    if (reverse != nullptr && reverse->Truthy()) std::reverse(sorted.begin(), sorted.end());
    return Value::MakeList(std::move(sorted));
  }
  return Error(pos, "unknown filter '" + std::string(name) + "'");
}

// ---- tests ----

StatusOr<bool> Renderer::ApplyTest(const Position& pos, std::string_view name, const Value& v,
                                   const CallArgs& args) {
  RETURN_IF_ERROR(Tick());
  const Value* a0 = args.Get(0, "");
  auto need_arg = [&]() -> Status {
    if (a0 == nullptr) return Error(pos, "test '" + std::string(name) + "' needs an argument");
    return OkStatus();
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind() == Kind::kInt;
  if (name == "float") return v.kind() == Kind::kFloat;
  if (name == "boolean") return v.kind() == Kind::kBool;
  if (name == "true") return v.kind() == Kind::kBool && v.as_bool();
  if (name == "false") return v.kind() == Kind::kBool && !v.as_bool();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "sequence") return v.is_list() || v.is_dict() || v.is_string() || v.is_undefined();
  if (name == "callable") return v.kind() == Kind::kCallable;
  if (name == "lower" || name == "upper") {
    // Python's islower()/isupper(): at least one cased letter, none of the other case.
    if (!v.is_string()) return false;
    bool cased = false;
    for (char c : v.text().str()) {
      const bool low = c >= 'a' && c <= 'z', up = c >= 'A' && c <= 'Z';
      if ((name == "lower" && up) || (name == "upper" && low)) return false;
      cased = cased || low || up;
    }
    return cased;
  }
  if (name == "even" || name == "odd") {
    if (!v.is_number()) return Error(pos, "test '" + std::string(name) + "' needs a number");
    if (!v.is_integer()) {  // Python: x % 2 == 1 (odd) or == 0 (even), with a float x
      const double m = std::fmod(std::fmod(v.as_double(), 2.0) + 2.0, 2.0);
      return name == "even" ? m == 0 : m == 1;
    }
    return (v.as_int() % 2 == 0) == (name == "even");
  }
  if (name == "divisibleby") {
    RETURN_IF_ERROR(need_arg());
    if (!v.is_integer() || !a0->is_integer() || a0->as_int() == 0) {
      return Error(pos, "test 'divisibleby' needs non-zero integers");
    }
    return v.as_int() % a0->as_int() == 0;
  }
  if (name == "sameas") {
    RETURN_IF_ERROR(need_arg());
    if (v.kind() != a0->kind()) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.kind() == Kind::kBool) return v.as_bool() == a0->as_bool();
    return v.Equals(*a0);
  }
  static constexpr std::pair<std::string_view, std::string_view> kCompareTests[] = {
      {"equalto", "=="}, {"eq", "=="}, {"==", "=="}, {"ne", "!="}, {"!=", "!="},
      {"lt", "<"},       {"<", "<"},   {"le", "<="}, {"<=", "<="}, {"gt", ">"},
      {">", ">"},        {"ge", ">="}, {">=", ">="}, {"in", "in"}};
  for (const auto& [test, op] : kCompareTests) {
    if (name != test) continue;
    RETURN_IF_ERROR(need_arg());
    return Compare(pos, op, v, *a0);
  }
  return Error(pos, "unknown test '" + std::string(name) + "'");
}

// ---- methods ----

StatusOr<Value> Renderer::CallMethod(const Position& pos, const Value& obj, std::string_view name,
                                     const CallArgs& args, bool* found) {
  *found = true;
  const Value* a0 = args.Get(0, "");
  auto fail = [&](const std::string& what) { return Error(pos, "'" + std::string(name) + "()': " + what); };
  auto string_result = [&](Text t) -> StatusOr<Value> {
    RETURN_IF_ERROR(Charge(t.size()));
    return Value::String(std::move(t));
  };
  if (obj.is_string()) {
    const Text& s = obj.text();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      return string_result(Strip(s, OptString(a0), name != "rstrip", name != "lstrip"));
    }
    if (name == "upper") return string_result(Upper(s));
    if (name == "lower") return string_result(Lower(s));
    if (name == "title") return string_result(TitleMethod(s));
    if (name == "capitalize") return string_result(Capitalize(s));
    if (name == "startswith" || name == "endswith") {
      if (a0 == nullptr) return fail("needs an argument");
      List candidates = a0->is_list() ? a0->list() : List{*a0};
      for (const Value& c : candidates) {
        if (!c.is_string()) return fail("needs a string or a tuple of strings");
        const std::string& str = s.str();
        const std::string& p = c.text().str();
        const bool hit = p.size() <= str.size() &&
                         (name == "startswith" ? str.compare(0, p.size(), p) == 0
                                               : str.compare(str.size() - p.size(), p.size(), p) == 0);
        if (hit) return Value::Bool(true);
      }
      return Value::Bool(false);
    }
    if (name == "split") {
      const std::optional<std::string> sep = OptString(args.Get(0, "sep"));
      if (sep && sep->empty()) return fail("empty separator");
      const Value* maxsplit = args.Get(1, "maxsplit");
      List out;
      for (Text& part : Split(s, sep, maxsplit != nullptr && maxsplit->is_integer() ? maxsplit->as_int() : -1)) {
        out.push_back(Value::String(std::move(part)));
      }
      return Value::MakeList(std::move(out));
    }
    if (name == "splitlines") {
      List out;
      for (Text& part : SplitLines(s)) out.push_back(Value::String(std::move(part)));
      return Value::MakeList(std::move(out));
    }
    if (name == "replace") {
      if (a0 == nullptr || args.Get(1, "") == nullptr) return fail("needs the old and new strings");
      const Value* count = args.Get(2, "count");
      return string_result(Replace(s, a0->ToText().str(), args.Get(1, "")->ToText(),
                                   count != nullptr && count->is_integer() ? count->as_int() : -1));
    }
    if (name == "format") {
      StatusOr<Text> out = FormatString(s, args);
      if (!out.ok()) return fail(out.status().message());
      return string_result(std::move(out).value());
    }
    if (name == "find" || name == "count") {
      if (a0 == nullptr || !a0->is_string()) return fail("needs a string");
      const std::string& str = s.str();
      const std::string& sub = a0->text().str();
      if (name == "find") {
        const size_t at = str.find(sub);
        if (at == std::string::npos) return Value::Int(-1);
        return Value::Int(static_cast<int64_t>(CodePointStarts(std::string_view(str).substr(0, at)).size() - 1));
      }
      if (sub.empty()) return Value::Int(static_cast<int64_t>(CodePointStarts(str).size()));
      int64_t n = 0;
      for (size_t at = str.find(sub); at != std::string::npos; at = str.find(sub, at + sub.size())) ++n;
      return Value::Int(n);
    }
    if (name == "join") {
      if (a0 == nullptr) return fail("needs an iterable");
      StatusOr<List> items = Iterate(*a0);
      if (!items.ok()) return fail(items.status().message());
      Text out;
      for (size_t k = 0; k < items->size(); ++k) {
        if (!(*items)[k].is_string()) return fail("item " + std::to_string(k) + " is not a string");
        if (k > 0) out.Append(s);
        out.Append((*items)[k].text());
      }
      return string_result(std::move(out));
    }
  } else if (obj.is_dict() && !obj.dict().is_namespace) {
    const Dict& d = obj.dict();
    if (name == "items") return Pairs(d);
    if (name == "keys" || name == "values") {
      List out;
      for (const auto& [k, v] : d.items) out.push_back(name == "keys" ? k : v);
      return Value::MakeList(std::move(out));
    }
    if (name == "get") {
      if (a0 == nullptr) return fail("needs a key");
      const Value* v = d.Find(*a0);
      if (v != nullptr) return *v;
      const Value* def = args.Get(1, "default");
      return def != nullptr ? *def : Value::None();
    }
  } else if (obj.is_list()) {
    if (name == "append" || name == "extend" || name == "pop" || name == "insert" || name == "remove" ||
        name == "clear" || name == "sort" || name == "reverse") {
      return fail("lists cannot be modified in a template (use namespace() to carry state)");
    }
    if (name == "index" || name == "count") {
      if (a0 == nullptr) return fail("needs a value");
      int64_t n = 0;
      for (size_t k = 0; k < obj.list().size(); ++k) {
        if (!obj.list()[k].Equals(*a0)) continue;
        if (name == "index") return Value::Int(static_cast<int64_t>(k));
        ++n;
      }
      if (name == "index") return fail("value is not in the list");
      return Value::Int(n);
    }
  }
  *found = false;
  return Value();
}

// ---- global functions ----

StatusOr<Value> Renderer::CallGlobal(const Position& pos, const Callable& fn, const CallArgs& args) {
  const std::string& name = fn.name;
  if (name == "raise_exception") {
    const Value* msg = args.Get(0, "message");
    return Error(pos, "the template raised an error: " + (msg ? msg->ToText().str() : std::string()));
  }
  if (name == "range") {
    int64_t start = 0, stop = 0, step = 1;
    for (const Value& v : args.positional) {
      if (!v.is_integer()) return Error(pos, "range() needs integers");
    }
    if (args.positional.size() == 1) {
      stop = args.positional[0].as_int();
    } else if (args.positional.size() == 2 || args.positional.size() == 3) {
      start = args.positional[0].as_int();
      stop = args.positional[1].as_int();
      if (args.positional.size() == 3) step = args.positional[2].as_int();
    } else {
      return Error(pos, "range() takes 1 to 3 integers");
    }
    if (step == 0) return Error(pos, "range() step cannot be zero");
    // The length, computed without overflow.
    const long double span = step > 0 ? static_cast<long double>(stop) - start : static_cast<long double>(start) - stop;
    const long double count = span <= 0 ? 0 : std::ceil(span / std::fabs(static_cast<long double>(step)));
    if (count > static_cast<long double>(options_.limits.max_steps - std::min(steps_, options_.limits.max_steps))) {
      return ResourceExhaustedError("line " + std::to_string(pos.line) + ": range() of more items than the step budget allows");
    }
    List out;
    for (int64_t k = 0; k < static_cast<int64_t>(count); ++k) {
      RETURN_IF_ERROR(Tick());
      out.push_back(Value::Int(start + k * step));
    }
    return Value::MakeList(std::move(out));
  }
  if (name == "namespace" || name == "dict") {
    auto d = std::make_shared<Dict>();
    d->is_namespace = name == "namespace";
    if (!args.positional.empty()) {
      if (args.positional.size() > 1 || !args.positional[0].is_dict()) {
        return Error(pos, name + "() takes keyword arguments or one mapping");
      }
      d->items = args.positional[0].dict().items;
    }
    for (const auto& [k, v] : args.keyword) d->Set(Value::String(k), v);
    for (const auto& [k, v] : d->items) {
      RETURN_IF_ERROR(CheckDepth(pos, v));
      if (d->is_namespace && HoldsNamespace(v)) return Error(pos, "a namespace cannot hold another namespace");
    }
    return Value::MakeDict(std::move(d));
  }
  if (name == "strftime_now") {
    const Value* format = args.Get(0, "format");
    if (format == nullptr || !format->is_string()) return Error(pos, "strftime_now() needs a format string");
    const std::time_t now = options_.now != 0 ? options_.now : std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[256];
    const size_t n = std::strftime(buf, sizeof buf, format->text().str().c_str(), &tm);
    if (n == 0 && !format->text().empty()) return Error(pos, "strftime_now(): the formatted date is empty or too long");
    return Value::String(std::string(buf, n));
  }
  return Error(pos, "unknown function '" + name + "'");
}

}  // namespace llmasos::chat::jinja
