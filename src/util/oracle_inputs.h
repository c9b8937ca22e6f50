// Oracle inputs: files a test compares against that the test does not make itself (the
// upstream reference data under tests/data, the default model scripts/setup installs). A
// missing one is a failure that names the file, so a green run means every oracle ran. A
// developer who deliberately runs without them sets LLMASOS_ALLOW_MISSING_ORACLES=1 in the
// environment of the test run to have those tests skip instead; CI never sets it.
#ifndef LLMASOS_UTIL_ORACLE_INPUTS_H_
#define LLMASOS_UTIL_ORACLE_INPUTS_H_

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace llmasos::oracles {

// True only when LLMASOS_ALLOW_MISSING_ORACLES is "1".
inline bool AllowMissing() {
  const char* v = std::getenv("LLMASOS_ALLOW_MISSING_ORACLES");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

// Where scripts/setup installs the default model: $LLMASOS_HOME/models/ (LLMASOS_HOME defaults
// to ~/.llmasos, as for the llmasos binary).
inline std::string DefaultModelPath() {
  std::string home;
  if (const char* env = std::getenv("LLMASOS_HOME"); env != nullptr && *env != '\0') {
    home = env;
  } else if (const char* user = std::getenv("HOME"); user != nullptr && *user != '\0') {
    home = std::string(user) + "/.llmasos";
  } else {
    home = ".llmasos";
  }
  return home + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// "<what> not found at <path> (...)": what a test prints when an oracle input is missing.
inline std::string MissingMessage(const std::string& what, const std::string& path) {
  return what + " not found at " + path +
         " (the reference data lives in tests/data; scripts/setup installs the default model "
         "into $LLMASOS_HOME/models; LLMASOS_ALLOW_MISSING_ORACLES=1 skips instead of failing)";
}

}  // namespace llmasos::oracles

// In a GoogleTest body or SetUp (include <gtest/gtest.h> first): fails when `path` does not
// exist, or skips under LLMASOS_ALLOW_MISSING_ORACLES=1.
#define LLMASOS_REQUIRE_ORACLE_INPUT(what, path)                                        \
  do {                                                                                  \
    const std::string llmasos_oracle_path = (path);                                    \
    if (!std::filesystem::exists(llmasos_oracle_path)) {                                \
      if (::llmasos::oracles::AllowMissing()) {                                         \
        GTEST_SKIP() << ::llmasos::oracles::MissingMessage((what), llmasos_oracle_path); \
      }                                                                                 \
      FAIL() << ::llmasos::oracles::MissingMessage((what), llmasos_oracle_path);        \
    }                                                                                   \
  } while (0)

#endif  // LLMASOS_UTIL_ORACLE_INPUTS_H_
