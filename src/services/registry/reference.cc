#include "services/registry/reference.h"

#include <algorithm>

#include "services/registry/validate.h"

namespace llmasos::registry {

std::string Reference::ToString() const {
  switch (kind) {
    case Kind::kTag: return name + ":" + tag;
    case Kind::kVersion: return name + "@" + version.ToString();
    case Kind::kRange: return name + "@" + range->text();
  }
  return name;
}

StatusOr<Reference> ParseReference(std::string_view text) {
  if (text.empty()) return InvalidArgumentError("model reference is empty");
  Reference ref;
  size_t sep = text.find_first_of(":@");
  ref.name = std::string(text.substr(0, sep));
  if (auto s = ValidateName(ref.name); !s.ok()) {
    return s.Annotate("in reference " + QuoteForMessage(text));
  }
  if (sep == std::string_view::npos) return ref;
  std::string_view rest = text.substr(sep + 1);
  if (text[sep] == ':') {
    if (auto s = ValidateTag(rest); !s.ok()) {
      return s.Annotate("in reference " + QuoteForMessage(text));
    }
    ref.tag = std::string(rest);
    return ref;
  }
  if (rest.size() >= 2 && rest.front() == '"' && rest.back() == '"') {
    rest = rest.substr(1, rest.size() - 2);
  }
  if (rest.empty()) {
    return InvalidArgumentError("reference " + QuoteForMessage(text) +
                                " has nothing after '@'; expected a version or a range");
  }
  // A full version without operators is an exact reference; anything else is a range.
  std::string_view core = rest.substr(0, rest.find_first_of("-+"));
  if (core.find_first_of(" <>=^~*xX") == std::string_view::npos &&
      std::count(core.begin(), core.end(), '.') >= 2) {
    auto v = ParseVersion(rest);
    if (!v.ok()) return v.status().Annotate("in reference " + QuoteForMessage(text));
    ref.kind = Reference::Kind::kVersion;
    ref.version = std::move(v).value();
    return ref;
  }
  auto range = VersionRange::Parse(rest);
  if (!range.ok()) return range.status().Annotate("in reference " + QuoteForMessage(text));
  ref.kind = Reference::Kind::kRange;
  ref.range = std::move(range).value();
  return ref;
}

}  // namespace llmasos::registry
