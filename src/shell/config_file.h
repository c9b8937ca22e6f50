// A command's flags from a TOML file (toml++): each top-level key is a long flag of the command
// without its dashes (`ctx-size = 2048` for --ctx-size 2048), so every flag has a key and
// the file can hold nothing else. Flags given on the command line win over the file.
//
//   - A key that names no flag, and a value of the wrong type (a string for a number, a number
//     for a flag, a table or an array anywhere) are errors naming the file, the key and its
//     line; a value out of the flag's range fails with the flag's own check, named the same way.
//   - Flags (on/off) take true or false; text options strings; integer options integers;
//     floating-point options integers or floats.
//   - A table the caller reads itself (ReadConfigTable; serve's [scheduler]) is left alone.
//
// Used by `llmasos serve` (--config FILE, default $LLMASOS_HOME/config.toml when it exists).
#ifndef LLMASOS_SHELL_CONFIG_FILE_H_
#define LLMASOS_SHELL_CONFIG_FILE_H_

#include <functional>
#include <set>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "util/status.h"

namespace llmasos::shell {

// Applies the keys of the TOML file `path` to the options of `cmd` (after it parsed its
// command line) that the command line did not give, running each option's checks and
// storing its value. Options named in `skip` (long names without dashes) are not keys.
// InvalidArgument "PATH:LINE: ..." as above; NotFound when the file cannot be read.
// Tables named in `tables` are left to ReadConfigTable; any other table is an unknown key.
Status ApplyConfigFile(CLI::App& cmd, const std::string& path, const std::set<std::string>& skip,
                       const std::set<std::string>& tables = {});

// The table `name` of the TOML file `path` as a JSON object (tables become objects, arrays
// arrays; dates and times are errors), {} when the file has no such table; errors as
// ApplyConfigFile. `where(p)` says "PATH:LINE: " for the key at dotted path `p` inside the
// table (the table's own line when `p` is not found).
struct ConfigTable {
  nlohmann::json value;
  std::function<std::string(const std::string& path)> where;
};
StatusOr<ConfigTable> ReadConfigTable(const std::string& path, const std::string& name);

// `object` (a JSON object of scalars and objects) as the TOML table [name], for --print-config.
std::string TomlTableText(const std::string& name, const nlohmann::json& object);

// The effective values of `cmd`'s options (given, from the file, or their defaults) as a TOML
// document that ApplyConfigFile reads back to the same values. REQUIRES: the options were
// added with their defaults captured (option_defaults()->always_capture_default()).
std::string EffectiveConfigToml(const CLI::App& cmd, const std::set<std::string>& skip);

}  // namespace llmasos::shell

#endif  // LLMASOS_SHELL_CONFIG_FILE_H_
