#include "shell/config_file.h"

#include <filesystem>
#include <memory>
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

StatusOr<toml::table> ParseFile(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return NotFoundError("config file " + path + " does not exist");
  try {
    return toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return InvalidArgumentError(path + ":" + std::to_string(e.source().begin.line) + ": " +
                                std::string(e.description()));
  }
}

std::string Where(const std::string& path, const toml::node& node) {
  return path + ":" + std::to_string(node.source().begin.line) + ": ";
}

// `node` as JSON; InvalidArgument naming `key` for a date or time.
Status ToJson(const std::string& path, const std::string& key, const toml::node& node, nlohmann::json* out) {
  if (const toml::table* t = node.as_table()) {
    *out = nlohmann::json::object();
    for (auto&& [k, child] : *t) {
      const std::string name(k.str());
      RETURN_IF_ERROR(ToJson(path, key + "." + name, child, &(*out)[name]));
    }
    return OkStatus();
  }
  if (const toml::array* a = node.as_array()) {
    *out = nlohmann::json::array();
    for (const toml::node& child : *a) {
      nlohmann::json v;
      RETURN_IF_ERROR(ToJson(path, key, child, &v));
      out->push_back(std::move(v));
    }
    return OkStatus();
  }
  if (node.is_string()) *out = *node.value<std::string>();
  else if (node.is_integer()) *out = *node.value<int64_t>();
  else if (node.is_floating_point()) *out = *node.value<double>();
  else if (node.is_boolean()) *out = *node.value<bool>();
  else return InvalidArgumentError(Where(path, node) + "'" + key + "' must not be " + NodeTypeName(node));
  return OkStatus();
}

void InsertJson(toml::table& table, const std::string& key, const nlohmann::json& v) {
  if (v.is_object()) {
    toml::table child;
    for (const auto& [k, x] : v.items()) InsertJson(child, k, x);
    table.insert(key, std::move(child));
  } else if (v.is_string()) {
    table.insert(key, v.get<std::string>());
  } else if (v.is_boolean()) {
    table.insert(key, v.get<bool>());
  } else if (v.is_number_integer()) {
    table.insert(key, v.get<int64_t>());
  } else if (v.is_number()) {
    table.insert(key, v.get<double>());
  }
}

}  // namespace

StatusOr<ConfigTable> ReadConfigTable(const std::string& path, const std::string& name) {
  ASSIGN_OR_RETURN(toml::table file, ParseFile(path));
  ConfigTable out{nlohmann::json::object(), [path](const std::string&) { return path + ": "; }};
  const toml::node* node = file.get(name);
  if (node == nullptr) return out;
  if (!node->is_table()) {
    return InvalidArgumentError(Where(path, *node) + "'" + name + "' must be a table ([" + name + "]), not " +
                                NodeTypeName(*node));
  }
  RETURN_IF_ERROR(ToJson(path, name, *node, &out.value));
  auto shared = std::make_shared<toml::table>(std::move(file));
  out.where = [shared, path, name](const std::string& p) {
    const toml::node* at = shared->at_path(name + "." + p).node();
    return Where(path, at != nullptr ? *at : *shared->get(name));
  };
  return out;
}

std::string TomlTableText(const std::string& name, const nlohmann::json& object) {
  toml::table root;
  InsertJson(root, name, object);
  std::ostringstream out;
  out << root << "\n";
  return out.str();
}

Status ApplyConfigFile(CLI::App& cmd, const std::string& path, const std::set<std::string>& skip,
                       const std::set<std::string>& tables) {
  ASSIGN_OR_RETURN(toml::table table, ParseFile(path));
  const std::vector<CLI::Option*> options = Keyed(cmd, skip);
  for (auto&& [k, node] : table) {
    const std::string key(k.str());
    if (tables.count(key) != 0) continue;  // ReadConfigTable checks it
    const std::string where = Where(path, node);
    CLI::Option* opt = nullptr;
    for (CLI::Option* o : options) {
      if (KeyOf(*o) == key) opt = o;
    }
    if (opt == nullptr) {
      std::string keys;
      for (CLI::Option* o : options) keys += (keys.empty() ? "" : ", ") + KeyOf(*o);
      for (const std::string& t : tables) keys += ", [" + t + "]";
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
