// Reading the fields of an untrusted JSON object by name, each checked for its type and range
// before any conversion, with errors that start with the field's path ("options.top_k: ...")
// and a list of the fields nobody read. The request parser (request.cc) is built on it.
//
// Thread safety: a Fields and its Context belong to one parse.
#ifndef LLMASOS_API_JSON_FIELDS_H_
#define LLMASOS_API_JSON_FIELDS_H_

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/status.h"

namespace llmasos::api::json_fields {

using json = nlohmann::json;

// Most ignored fields a parse lists.
inline constexpr size_t kMaxIgnoredFields = 64;

// A short rendering of a value for an error message: a number as written, a string quoted
// (cut at 64 bytes), anything else by its type.
std::string Show(const json& v);

// Where errors and ignored fields go.
struct Context {
  std::string* error_param;  // may be null
  std::vector<std::string>* ignored;

  // InvalidArgument "<path>: <what>"; the path goes to *error_param.
  Status Fail(const std::string& path, std::string_view what) const {
    if (error_param != nullptr) *error_param = path;
    return InvalidArgumentError(path + ": " + std::string(what));
  }
  void Ignore(std::string path) const {
    if (ignored->size() < kMaxIgnoredFields) ignored->push_back(std::move(path));
  }
};

// A JSON number with an integral value in [lo, hi] (a whole float such as 5.0 counts),
// compared before it is converted.
Status ReadInteger(const Context& ctx, const json& v, const std::string& path, int64_t lo, int64_t hi,
                   int64_t* out);
// A finite JSON number in [lo, hi].
Status ReadNumber(const Context& ctx, const json& v, const std::string& path, double lo, double hi,
                  double* out);
// A seed: an integer in 0..2^64-1, or -1 for a fresh random one (*out becomes nullopt).
Status ReadSeed(const Context& ctx, const json& v, const std::string& path, std::optional<uint64_t>* out);
// A Go duration ("5m", "1h30m", "-1s", "250ms") or a plain number of seconds, in seconds.
bool ParseDuration(std::string_view s, double* seconds);
// Ollama's keep_alive (a duration string or a number of seconds) at "keep_alive"; negative
// values become -1 ms (forever); more than 100 years is an error.
Status ReadKeepAlive(const Context& ctx, const json& v, std::optional<std::chrono::milliseconds>* out);
// null, false, "", [] or {}: a value that asks for nothing.
bool IsNeutral(const json& v);

// The fields of one JSON object, read by name; what is not read can be listed as ignored.
// A field given as null counts as not given.
class Fields {
 public:
  // `object` and `ctx` must outlive this; `prefix` is the object's path with a trailing '.'.
  Fields(const json& object, std::string prefix, const Context& ctx)
      : object_(object), prefix_(std::move(prefix)), ctx_(ctx) {}

  std::string Path(std::string_view key) const { return prefix_ + std::string(key); }
  Status Fail(std::string_view key, std::string_view what) const { return ctx_.Fail(Path(key), what); }
  const Context& ctx() const { return ctx_; }

  // The value, or null when absent or JSON null; marks `key` as read.
  const json* Find(std::string_view key);
  // Whether `key` is given (not null); does not mark it as read.
  bool Has(std::string_view key) const;
  // An object-valued field: *out is null when it is not given.
  Status Object(std::string_view key, const json** out);
  Status Bool(std::string_view key, bool* out);
  template <typename T>
  Status Int(std::string_view key, int64_t lo, int64_t hi, std::optional<T>* out) {
    const json* v = Find(key);
    if (v == nullptr) return OkStatus();
    int64_t value;
    RETURN_IF_ERROR(ReadInteger(ctx_, *v, Path(key), lo, hi, &value));
    *out = static_cast<T>(value);
    return OkStatus();
  }
  Status Float(std::string_view key, double lo, double hi, std::optional<float>* out);
  // A string of at most max_bytes; *present tells whether the key was given.
  Status String(std::string_view key, size_t max_bytes, std::string* out, bool* present = nullptr);
  // A parameter the project does not support: an error naming it when it asks for anything
  // (any value but a neutral one, see IsNeutral, and those listed).
  Status Unsupported(std::string_view key, std::initializer_list<json> neutral = {});
  // Lists every field not read so far as ignored.
  void IgnoreRest();

 private:
  const json& object_;
  std::string prefix_;
  const Context& ctx_;
  std::set<std::string, std::less<>> read_;
};

}  // namespace llmasos::api::json_fields

#endif  // LLMASOS_API_JSON_FIELDS_H_
