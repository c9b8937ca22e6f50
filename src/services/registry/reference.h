// Registry references: which model version a command or request means.
//
//   name               the version tagged `latest`
//   name:tag           the version a tag points to
//   name@1.2.3         exactly that version (build metadata ignored)
//   name@^1.2          the highest version the range admits (any range in semver.h syntax,
//   name@~1.2.0        quoted or not: name@">=1.0 <2.0" and name@>=1.0 <2.0 are the same)
//   name@">=1.0 <2.0"
// The name and the tag are validated (validate.h) before anything else uses them.
//
// Thread safety: values.
#ifndef LLMASOS_SERVICES_REGISTRY_REFERENCE_H_
#define LLMASOS_SERVICES_REGISTRY_REFERENCE_H_

#include <optional>
#include <string>
#include <string_view>

#include "services/registry/semver.h"
#include "util/status.h"

namespace llmasos::registry {

inline constexpr std::string_view kLatestTag = "latest";

struct Reference {
  enum class Kind { kTag, kVersion, kRange };

  std::string name;
  Kind kind = Kind::kTag;
  std::string tag = std::string(kLatestTag);  // kTag
  Version version;                            // kVersion
  std::optional<VersionRange> range;          // kRange

  // Canonical text: "name:tag", "name@1.2.3", "name@>=1.0 <2.0" (a bare name prints as
  // "name:latest").
  std::string ToString() const;
};

// kInvalidArgument naming what is wrong (the name, the tag or the version part).
StatusOr<Reference> ParseReference(std::string_view text);

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_REFERENCE_H_
