#include "shell/config_file.h"

#include <filesystem>
#include <sstream>

#include <toml++/toml.h>

namespace llmasos::shell {
namespace {

enum class Kind { kFlag, kText, kInteger, kFloat };

// The kind of value an option takes, from CLI11's type name ("UINT:INT in [1 - 64]").
Kind KindOf(const CLI::Option& opt) {
  if (opt.get_expected_max() == 0) return Kind::kFlag;
  const std::string type = opt.get_type_name();
  const std::string base = type.substr(0, type.find(':'));
  if (base == "INT" || base == "UINT") return Kind::kInteger;
  if (base == "FLOAT") return Kind::kFloat;
  return Kind::kText;
}

std::string KeyOf(const CLI::Option& opt) {
  const auto& names = opt.get_lnames();
  return names.empty() ? "" : names.front();
}

std::vector<CLI::Option*> Keyed(CLI::App& cmd, const std::set<std::string>& skip) {
  return cmd.get_options([&](CLI::Option* o) { return !KeyOf(*o).empty() && skip.count(KeyOf(*o)) == 0; });
}

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kFlag: return "true or false";
    case Kind::kText: return "a string";
    case Kind::kInteger: return "an integer";
    case Kind::kFloat: return "a number";
  }
  return "";
}

const char* NodeTypeName(const toml::node& node) {
  if (node.is_table()) return "a table";
  if (node.is_array()) return "an array";
  if (node.is_string()) return "a string";
  if (node.is_integer()) return "an integer";
  if (node.is_floating_point()) return "a float";
  if (node.is_boolean()) return "a boolean";
  return "a date or time";
}

// The value as the option's command-line text; false when its type does not fit.
bool ValueText(Kind kind, const toml::node& node, std::string* out) {
  switch (kind) {
    case Kind::kFlag:
      if (!node.is_boolean()) return false;
      *out = *node.value<bool>() ? "true" : "false";
      return true;
    case Kind::kText:
      if (!node.is_string()) return false;
      *out = *node.value<std::string>();
      return true;
    case Kind::kInteger:
      if (!node.is_integer()) return false;
      *out = std::to_string(*node.value<int64_t>());
      return true;
    case Kind::kFloat:
      if (node.is_integer()) {
        *out = std::to_string(*node.value<int64_t>());
        return true;
      }
      if (!node.is_floating_point()) return false;
      {
        std::ostringstream s;
        s.precision(17);
        s << *node.value<double>();
        *out = s.str();
      }
      return true;
  }
  return false;
}

}  // namespace

Status ApplyConfigFile(CLI::App& cmd, const std::string& path, const std::set<std::string>& skip) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFoundError("config file " + path + " does not exist");
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return InvalidArgumentError(path + ":" + std::to_string(e.source().begin.line) + ": " +
                                std::string(e.description()));
  }
  const std::vector<CLI::Option*> options = Keyed(cmd, skip);
  for (auto&& [k, node] : table) {
    const std::string key(k.str());
    const std::string where = path + ":" + std::to_string(node.source().begin.line) + ": ";
    CLI::Option* opt = nullptr;
    for (CLI::Option* o : options) {
      if (KeyOf(*o) == key) opt = o;
    }
    if (opt == nullptr) {
      std::string keys;
      for (CLI::Option* o : options) keys += (keys.empty() ? "" : ", ") + KeyOf(*o);
      return InvalidArgumentError(where + "unknown key '" + key + "' (the keys are: " + keys + ")");
    }
    const Kind kind = KindOf(*opt);
    std::string text;
    if (!ValueText(kind, node, &text)) {
      return InvalidArgumentError(where + "'" + key + "' must be " + KindName(kind) + ", not " + NodeTypeName(node));
    }
    if (opt->count() > 0) continue;  // given on the command line
    try {
      opt->add_result(text);
      opt->run_callback();
    } catch (const CLI::Error& e) {
      return InvalidArgumentError(where + "'" + key + "': " + e.what());
    }
  }
  return OkStatus();
}

std::string EffectiveConfigToml(const CLI::App& cmd, const std::set<std::string>& skip) {
  toml::table table;
  for (const CLI::Option* opt : cmd.get_options()) {
    const std::string key = KeyOf(*opt);
    if (key.empty() || skip.count(key) != 0) continue;
    const std::string text = opt->count() > 0 ? opt->results().back() : opt->get_default_str();
    switch (KindOf(*opt)) {
      case Kind::kFlag:
        table.insert(key, text == "true" || text == "1");
        break;
      case Kind::kInteger:
        table.insert(key, text.empty() ? int64_t{0} : static_cast<int64_t>(std::stoll(text)));
        break;
      case Kind::kFloat:
        table.insert(key, text.empty() ? 0.0 : std::stod(text));
        break;
      case Kind::kText:
        table.insert(key, text);
        break;
    }
  }
  std::ostringstream out;
  out << table << "\n";
  return out.str();
}

}  // namespace llmasos::shell
