// A command's flags from a TOML file (toml++): each top-level key is a long flag of the command
// without its dashes (`ctx-size = 2048` for --ctx-size 2048), so every flag has a key and
// the file can hold nothing else. Flags given on the command line win over the file.
//
//   - A key that names no flag, and a value of the wrong type (a string for a number, a number
//     for a flag, a table or an array anywhere) are errors naming the file, the key and its
//     line; a value out of the flag's range fails with the flag's own check, named the same way.
//   - Flags (on/off) take true or false; text options strings; integer options integers;
//     floating-point options integers or floats.
//
// Used by `llmasos serve` (--config FILE, default $LLMASOS_HOME/config.toml when it exists).
#ifndef LLMASOS_SHELL_CONFIG_FILE_H_
#define LLMASOS_SHELL_CONFIG_FILE_H_

#include <set>
#include <string>

#include <CLI/CLI.hpp>

#include "util/status.h"

namespace llmasos::shell {

// Applies the keys of the TOML file `path` to the options of `cmd` (after it parsed its
// command line) that the command line did not give, running each option's checks and
// storing its value. Options named in `skip` (long names without dashes) are not keys.
// InvalidArgument "PATH:LINE: ..." as above; NotFound when the file cannot be read.
Status ApplyConfigFile(CLI::App& cmd, const std::string& path, const std::set<std::string>& skip);

// The effective values of `cmd`'s options (given, from the file, or their defaults) as a TOML
// document that ApplyConfigFile reads back to the same values. REQUIRES: the options were
// added with their defaults captured (option_defaults()->always_capture_default()).
std::string EffectiveConfigToml(const CLI::App& cmd, const std::set<std::string>& skip);

}  // namespace llmasos::shell

#endif  // LLMASOS_SHELL_CONFIG_FILE_H_
