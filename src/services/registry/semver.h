// Semantic Versioning 2.0.0 (https://semver.org): strict parsing, precedence, and ranges.
//
// Ranges are sets of comparators joined by spaces (AND):
//   1.2.3            exactly that precedence (build metadata ignored)
//   1.2, 1, 1.x      X-ranges: >=1.2.0 <1.3.0, >=1.0.0 <2.0.0
//   ^1.2.3, ^1.2     compatible with: >=1.2.3 <2.0.0; ^0.2.3 is >=0.2.3 <0.3.0; ^0.0.3 is =0.0.3
//   ~1.2.3, ~1.2     patch-level changes: >=1.2.3 <1.3.0; ~1 is >=1.0.0 <2.0.0
//   >=1.0 <2.0       comparators (=, >, >=, <, <=) with full or partial versions
//   *                any release
// As in npm, a pre-release version (1.3.0-rc.1) satisfies a range only if some comparator
// names a pre-release of the same major.minor.patch: ">=1.3.0-rc.0" admits 1.3.0-rc.1 but
// "*" and "^1.0" do not. A range never admits a pre-release of another release by accident.
//
// Thread safety: values; no shared state.
#ifndef LLMASOS_SERVICES_REGISTRY_SEMVER_H_
#define LLMASOS_SERVICES_REGISTRY_SEMVER_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace llmasos::registry {

struct Version {
  uint64_t major = 0;
  uint64_t minor = 0;
  uint64_t patch = 0;
  std::vector<std::string> prerelease;  // dot-separated identifiers after '-'
  std::vector<std::string> build;       // dot-separated identifiers after '+'

  bool is_prerelease() const { return !prerelease.empty(); }
  // Canonical text: "1.2.3-rc.1+build.5".
  std::string ToString() const;
};

// Strict SemVer 2.0.0: MAJOR.MINOR.PATCH, numbers without leading zeros (and within 64 bits),
// optional -PRERELEASE and +BUILD made of [0-9A-Za-z-] identifiers, numeric pre-release
// identifiers without leading zeros. Errors are kInvalidArgument naming the problem.
StatusOr<Version> ParseVersion(std::string_view text);

// Precedence: <0, 0 or >0. Build metadata is ignored, so 1.0.0+a and 1.0.0+b compare equal.
int ComparePrecedence(const Version& a, const Version& b);

class VersionRange {
 public:
  // Parses a range in the syntax above; kInvalidArgument naming the bad part on error.
  static StatusOr<VersionRange> Parse(std::string_view text);
  // A range that matches exactly `version`'s precedence.
  static VersionRange Exactly(const Version& version);

  bool Matches(const Version& version) const;
  const std::string& text() const { return text_; }

 private:
  enum class Op { kEq, kLt, kLe, kGt, kGe };
  struct Comparator {
    Op op;
    Version version;
  };
  static bool Satisfies(const Comparator& c, const Version& v);

  std::string text_;
  std::vector<Comparator> comparators_;  // all must hold; empty: any release
};

// The highest version in `versions` that `range` matches, or nullopt. Ties in precedence
// (different build metadata) resolve to the first in the span.
std::optional<size_t> HighestMatching(const VersionRange& range, std::span<const Version> versions);

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_SEMVER_H_
