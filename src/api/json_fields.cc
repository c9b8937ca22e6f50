#include "api/json_fields.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "api/json_body.h"
#include "util/utf8.h"

namespace llmasos::api::json_fields {
namespace {

// 100 years: longer keep_alive values are surely mistakes (a negative one means "forever").
constexpr double kMaxKeepAliveSeconds = 100.0 * 365 * 24 * 3600;

}  // namespace

std::string Show(const json& v) {
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.size() > 64) s = SanitizeUtf8(s.substr(0, 64)) + "...";
    return "'" + s + "'";
  }
  if (v.is_number()) return v.dump();
  return JsonTypeName(v);
}

Status ReadInteger(const Context& ctx, const json& v, const std::string& path, int64_t lo, int64_t hi,
                   int64_t* out) {
  const std::string range = "an integer in " + std::to_string(lo) + ".." + std::to_string(hi);
  if (!v.is_number()) return ctx.Fail(path, "must be " + range + ", got " + Show(v));
  // Compared as doubles (or as the JSON parser's exact integers) before any conversion.
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo))) {
      return ctx.Fail(path, "must be " + range + ", got " + v.dump());
    }
    *out = static_cast<int64_t>(u);
    return OkStatus();
  }
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i < lo || i > hi) return ctx.Fail(path, "must be " + range + ", got " + v.dump());
    *out = i;
    return OkStatus();
  }
  const double d = v.get<double>();
  if (!std::isfinite(d) || d != std::floor(d)) return ctx.Fail(path, "must be " + range + ", got " + v.dump());
  // |d| < 2^53 here keeps the bounds exact as doubles and the cast defined.
  if (!(std::fabs(d) < 0x1p53 && d >= static_cast<double>(lo) && d <= static_cast<double>(hi))) {
    return ctx.Fail(path, "must be " + range + ", got " + v.dump());
  }
  *out = static_cast<int64_t>(d);
  return OkStatus();
}

Status ReadNumber(const Context& ctx, const json& v, const std::string& path, double lo, double hi,
                  double* out) {
  auto range = [&] {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "a number in %g..%g", lo, hi);
    return std::string(buf);
  };
  if (!v.is_number()) return ctx.Fail(path, "must be " + range() + ", got " + Show(v));
  const double d = v.get<double>();
  if (!(std::isfinite(d) && d >= lo && d <= hi)) return ctx.Fail(path, "must be " + range() + ", got " + v.dump());
  *out = d;
  return OkStatus();
}

Status ReadSeed(const Context& ctx, const json& v, const std::string& path, std::optional<uint64_t>* out) {
  const std::string what = "must be an integer in 0..18446744073709551615 (or -1: random)";
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return OkStatus();
  }
  if (v.is_number_integer()) {  // signed: negative (or a "-0")
    const int64_t i = v.get<int64_t>();
    if (i >= 0) {
      *out = static_cast<uint64_t>(i);
    } else if (i == -1) {
      out->reset();
    } else {
      return ctx.Fail(path, what + ", got " + v.dump());
    }
    return OkStatus();
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (d == -1.0) {
      out->reset();
      return OkStatus();
    }
    if (std::isfinite(d) && d == std::floor(d) && d >= 0 && d < 0x1p64) {
      *out = static_cast<uint64_t>(d);
      return OkStatus();
    }
    return ctx.Fail(path, what + ", got " + v.dump());
  }
  return ctx.Fail(path, what + ", got " + Show(v));
}

bool ParseDuration(std::string_view s, double* seconds) {
  if (s.empty()) return false;
  double sign = 1;
  if (s[0] == '-' || s[0] == '+') {
    sign = s[0] == '-' ? -1 : 1;
    s.remove_prefix(1);
  }
  double total = 0;
  bool any = false;
  while (!s.empty()) {
    size_t n = 0;
    while (n < s.size() && ((s[n] >= '0' && s[n] <= '9') || s[n] == '.')) ++n;
    if (n == 0 || n > 24) return false;
    const std::string number(s.substr(0, n));
    if (std::count(number.begin(), number.end(), '.') > 1 || number == ".") return false;
    const double value = std::strtod(number.c_str(), nullptr);
    s.remove_prefix(n);
    size_t u = 0;
    while (u < s.size() && !((s[u] >= '0' && s[u] <= '9') || s[u] == '.')) ++u;
    const std::string_view unit = s.substr(0, u);
    s.remove_prefix(u);
    double scale;
    if (unit.empty()) {
      if (any || !s.empty()) return false;  // a bare number is seconds, alone only
      scale = 1;
    } else if (unit == "h") {
      scale = 3600;
    } else if (unit == "m") {
      scale = 60;
    } else if (unit == "s") {
      scale = 1;
    } else if (unit == "ms") {
      scale = 1e-3;
    } else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") {
      scale = 1e-6;
    } else if (unit == "ns") {
      scale = 1e-9;
    } else {
      return false;
    }
    total += value * scale;
    any = true;
  }
  if (!any || !std::isfinite(total)) return false;
  *seconds = sign * total;
  return true;
}

Status ReadKeepAlive(const Context& ctx, const json& v, std::optional<std::chrono::milliseconds>* out) {
  double seconds;
  if (v.is_number()) {
    seconds = v.get<double>();
  } else if (v.is_string()) {
    if (!ParseDuration(v.get<std::string>(), &seconds)) {
      return ctx.Fail("keep_alive", "must be a duration such as \"5m\", \"1h\" or \"-1\" (forever), or a number "
                                    "of seconds, got " + Show(v));
    }
  } else {
    return ctx.Fail("keep_alive", "must be a duration string or a number of seconds, got " + Show(v));
  }
  if (!std::isfinite(seconds)) return ctx.Fail("keep_alive", "must be finite");
  if (seconds < 0) {
    *out = std::chrono::milliseconds(-1);  // forever
    return OkStatus();
  }
  if (seconds > kMaxKeepAliveSeconds) {
    return ctx.Fail("keep_alive", "must be at most 100 years (a negative value means forever)");
  }
  *out = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  return OkStatus();
}

bool IsNeutral(const json& v) {
  return v.is_null() || (v.is_boolean() && !v.get<bool>()) || (v.is_string() && v.get<std::string>().empty()) ||
         ((v.is_array() || v.is_object()) && v.empty());
}

const json* Fields::Find(std::string_view key) {
  read_.insert(std::string(key));
  auto it = object_.find(std::string(key));
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool Fields::Has(std::string_view key) const {
  auto it = object_.find(std::string(key));
  return it != object_.end() && !it->is_null();
}

Status Fields::Object(std::string_view key, const json** out) {
  *out = Find(key);
  if (*out != nullptr && !(*out)->is_object()) return Fail(key, "must be an object, got " + Show(**out));
  return OkStatus();
}

Status Fields::Bool(std::string_view key, bool* out) {
  const json* v = Find(key);
  if (v == nullptr) return OkStatus();
  if (!v->is_boolean()) return Fail(key, "must be true or false, got " + Show(*v));
  *out = v->get<bool>();
  return OkStatus();
}

Status Fields::Float(std::string_view key, double lo, double hi, std::optional<float>* out) {
  const json* v = Find(key);
  if (v == nullptr) return OkStatus();
  double value;
  RETURN_IF_ERROR(ReadNumber(ctx_, *v, Path(key), lo, hi, &value));
  *out = static_cast<float>(value);
  return OkStatus();
}

Status Fields::String(std::string_view key, size_t max_bytes, std::string* out, bool* present) {
  const json* v = Find(key);
  if (present != nullptr) *present = v != nullptr;
  if (v == nullptr) return OkStatus();
  if (!v->is_string()) return Fail(key, "must be a string, got " + Show(*v));
  if (v->get_ref<const std::string&>().size() > max_bytes) {
    return Fail(key, "is longer than " + std::to_string(max_bytes) + " bytes");
  }
  *out = v->get<std::string>();
  return OkStatus();
}

Status Fields::Unsupported(std::string_view key, std::initializer_list<json> neutral) {
  const json* v = Find(key);
  if (v == nullptr || IsNeutral(*v)) return OkStatus();
  for (const json& n : neutral) {
    if (*v == n) return OkStatus();
  }
  return Fail(key, "is not supported");
}

void Fields::IgnoreRest() {
  for (auto it = object_.begin(); it != object_.end(); ++it) {
    if (!read_.count(it.key())) ctx_.Ignore(Path(it.key()));
  }
}

}  // namespace llmasos::api::json_fields
