#include "services/registry/semver.h"

#include <algorithm>

#include "services/registry/validate.h"

namespace llmasos::registry {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsIdentChar(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}
bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsDigit);
}

Status VersionError(std::string_view text, const std::string& problem) {
  return InvalidArgumentError("version " + QuoteForMessage(text) + " is not a semantic version: " +
                              problem);
}

// A numeric MAJOR/MINOR/PATCH field.
StatusOr<uint64_t> ParseNumber(std::string_view whole, std::string_view field, const char* what) {
  if (field.empty()) return VersionError(whole, std::string(what) + " is empty");
  if (!AllDigits(field)) {
    return VersionError(whole, std::string(what) + " " + QuoteForMessage(field) +
                                   " is not a non-negative integer");
  }
  if (field.size() > 1 && field[0] == '0') {
    return VersionError(whole, std::string(what) + " " + QuoteForMessage(field) +
                                   " has a leading zero");
  }
  uint64_t value = 0;
  for (char c : field) {
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) {
      return VersionError(whole, std::string(what) + " " + QuoteForMessage(field) +
                                     " does not fit in 64 bits");
    }
    value = value * 10 + digit;
  }
  return value;
}

StatusOr<std::vector<std::string>> ParseIdentifiers(std::string_view whole, std::string_view part,
                                                    bool prerelease) {
  const char* what = prerelease ? "pre-release" : "build metadata";
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t dot = part.find('.', start);
    std::string_view id = part.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (id.empty()) {
      return VersionError(whole, std::string(what) + " has an empty identifier");
    }
    for (char c : id) {
      if (!IsIdentChar(c)) {
        return VersionError(whole, std::string(what) + " identifier " + QuoteForMessage(id) +
                                       " has a character outside [0-9A-Za-z-]");
      }
    }
    if (prerelease && AllDigits(id) && id.size() > 1 && id[0] == '0') {
      return VersionError(whole, "numeric pre-release identifier " + QuoteForMessage(id) +
                                     " has a leading zero");
    }
    out.emplace_back(id);
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return out;
}

int CompareIdentifier(const std::string& a, const std::string& b) {
  bool a_num = AllDigits(a), b_num = AllDigits(b);
  if (a_num && b_num) {
    // No leading zeros (checked at parse), so the longer number is larger.
    if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
    return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
  }
  if (a_num != b_num) return a_num ? -1 : 1;  // numeric identifiers sort below alphanumeric
  int c = a.compare(b);  // ASCII order
  return c < 0 ? -1 : (c == 0 ? 0 : 1);
}

// A version with missing parts: "1", "1.2", "1.x", "*". Absent parts are nullopt.
struct Partial {
  std::optional<uint64_t> major, minor, patch;
  std::vector<std::string> prerelease;
};

bool IsWildcard(std::string_view s) { return s == "x" || s == "X" || s == "*"; }

StatusOr<Partial> ParsePartial(std::string_view range_text, std::string_view text) {
  Partial p;
  if (IsWildcard(text)) return p;
  // A full version (with pre-release or build) goes through the strict parser.
  if (text.find_first_of("-+") != std::string_view::npos) {
    auto v = ParseVersion(text);
    if (!v.ok()) {
      return v.status().Annotate("in version range " + QuoteForMessage(range_text));
    }
    p.major = v->major;
    p.minor = v->minor;
    p.patch = v->patch;
    p.prerelease = v->prerelease;
    return p;
  }
  std::optional<uint64_t>* fields[3] = {&p.major, &p.minor, &p.patch};
  const char* names[3] = {"major", "minor", "patch"};
  size_t start = 0;
  bool wildcard_seen = false;
  for (int i = 0; i < 3; ++i) {
    size_t dot = text.find('.', start);
    std::string_view field = text.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (IsWildcard(field)) {
      wildcard_seen = true;
    } else {
      if (wildcard_seen) {
        return InvalidArgumentError("version range " + QuoteForMessage(range_text) + ": " +
                                    QuoteForMessage(text) + " has a number after a wildcard");
      }
      auto n = ParseNumber(text, field, names[i]);
      if (!n.ok()) return n.status().Annotate("in version range " + QuoteForMessage(range_text));
      *fields[i] = *n;
    }
    if (dot == std::string_view::npos) return p;
    start = dot + 1;
  }
  return InvalidArgumentError("version range " + QuoteForMessage(range_text) + ": " +
                              QuoteForMessage(text) + " has more than three parts");
}

Version Make(uint64_t major, uint64_t minor, uint64_t patch,
             std::vector<std::string> prerelease = {}) {
  Version v;
  v.major = major;
  v.minor = minor;
  v.patch = patch;
  v.prerelease = std::move(prerelease);
  return v;
}

// The lowest version above every release of the given prefix: an upper bound "<X.Y.Z-0"
// would also exclude pre-releases of X.Y.Z, so "<X.Y.Z" with X.Y.Z a release is used and
// pre-release admission is handled by Matches.
constexpr uint64_t kMax = UINT64_MAX;

}  // namespace

std::string Version::ToString() const {
  std::string s = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  for (size_t i = 0; i < prerelease.size(); ++i) s += (i == 0 ? "-" : ".") + prerelease[i];
  for (size_t i = 0; i < build.size(); ++i) s += (i == 0 ? "+" : ".") + build[i];
  return s;
}

StatusOr<Version> ParseVersion(std::string_view text) {
  if (text.empty()) return InvalidArgumentError("version is empty");
  if (text[0] == 'v' || text[0] == 'V') {
    return VersionError(text, "remove the leading 'v'");
  }
  Version v;
  std::string_view core = text;
  size_t plus = text.find('+');
  if (plus != std::string_view::npos) {
    ASSIGN_OR_RETURN(v.build, ParseIdentifiers(text, text.substr(plus + 1), false));
    core = text.substr(0, plus);
  }
  size_t dash = core.find('-');
  if (dash != std::string_view::npos) {
    ASSIGN_OR_RETURN(v.prerelease, ParseIdentifiers(text, core.substr(dash + 1), true));
    core = core.substr(0, dash);
  }
  size_t d1 = core.find('.');
  size_t d2 = d1 == std::string_view::npos ? d1 : core.find('.', d1 + 1);
  if (d1 == std::string_view::npos || d2 == std::string_view::npos) {
    return VersionError(text, "expected MAJOR.MINOR.PATCH");
  }
  if (core.find('.', d2 + 1) != std::string_view::npos) {
    return VersionError(text, "more than three numeric parts");
  }
  ASSIGN_OR_RETURN(v.major, ParseNumber(text, core.substr(0, d1), "major"));
  ASSIGN_OR_RETURN(v.minor, ParseNumber(text, core.substr(d1 + 1, d2 - d1 - 1), "minor"));
  ASSIGN_OR_RETURN(v.patch, ParseNumber(text, core.substr(d2 + 1), "patch"));
  return v;
}

int ComparePrecedence(const Version& a, const Version& b) {
  if (a.major != b.major) return a.major < b.major ? -1 : 1;
  if (a.minor != b.minor) return a.minor < b.minor ? -1 : 1;
  if (a.patch != b.patch) return a.patch < b.patch ? -1 : 1;
  // A pre-release has lower precedence than the release.
  if (a.prerelease.empty() != b.prerelease.empty()) return a.prerelease.empty() ? 1 : -1;
  size_t n = std::min(a.prerelease.size(), b.prerelease.size());
  for (size_t i = 0; i < n; ++i) {
    int c = CompareIdentifier(a.prerelease[i], b.prerelease[i]);
    if (c != 0) return c;
  }
  if (a.prerelease.size() != b.prerelease.size()) {
    return a.prerelease.size() < b.prerelease.size() ? -1 : 1;
  }
  return 0;
}

VersionRange VersionRange::Exactly(const Version& version) {
  VersionRange r;
  r.text_ = version.ToString();
  r.comparators_.push_back({Op::kEq, version});
  return r;
}

StatusOr<VersionRange> VersionRange::Parse(std::string_view text) {
  VersionRange r;
  r.text_ = std::string(text);
  // Split on spaces; an operator alone (">= 1.0") joins the next token.
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    size_t end = text.find(' ', i);
    std::string tok(text.substr(i, end == std::string_view::npos ? end : end - i));
    i = end == std::string_view::npos ? text.size() : end;
    if (!tokens.empty() && (tokens.back() == ">" || tokens.back() == ">=" || tokens.back() == "<" ||
                            tokens.back() == "<=" || tokens.back() == "=")) {
      tokens.back() += tok;
    } else {
      tokens.push_back(std::move(tok));
    }
  }
  if (tokens.empty()) return InvalidArgumentError("version range is empty");
  for (const std::string& tok : tokens) {
    for (char c : tok) {
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
        return InvalidArgumentError("version range " + QuoteForMessage(text) +
                                    " contains a control or non-ASCII character");
      }
    }
    std::string_view t = tok;
    std::string_view op;
    for (std::string_view candidate : {">=", "<=", ">", "<", "=", "^", "~"}) {
      if (t.substr(0, candidate.size()) == candidate) {
        op = candidate;
        break;
      }
    }
    std::string_view rest = t.substr(op.size());
    if (rest.empty()) {
      return InvalidArgumentError("version range " + QuoteForMessage(text) + ": operator " +
                                  QuoteForMessage(op) + " has no version after it");
    }
    ASSIGN_OR_RETURN(Partial p, ParsePartial(text, rest));
    const uint64_t M = p.major.value_or(0), m = p.minor.value_or(0), pt = p.patch.value_or(0);
    auto add = [&](Op o, Version v) { r.comparators_.push_back({o, std::move(v)}); };
    if (!p.major) {  // "*", ">=*" ...: anything (a "<*" matches nothing)
      if (op == "<" || op == ">") {
        return InvalidArgumentError("version range " + QuoteForMessage(text) + ": " +
                                    QuoteForMessage(t) + " matches nothing");
      }
      continue;
    }
    if (op == "^") {
      add(Op::kGe, Make(M, m, pt, p.prerelease));
      if (M > 0 || !p.minor) {
        if (M == kMax) continue;
        add(Op::kLt, Make(M + 1, 0, 0));
      } else if (m > 0 || !p.patch) {
        add(Op::kLt, Make(0, m + 1, 0));
      } else {
        add(Op::kLt, Make(0, 0, pt + 1));
      }
    } else if (op == "~") {
      add(Op::kGe, Make(M, m, pt, p.prerelease));
      if (p.minor) {
        add(Op::kLt, Make(M, m + 1, 0));
      } else {
        add(Op::kLt, Make(M + 1, 0, 0));
      }
    } else if (op.empty() || op == "=") {
      if (p.patch) {
        add(Op::kEq, Make(M, m, pt, p.prerelease));
      } else if (p.minor) {
        add(Op::kGe, Make(M, m, 0));
        add(Op::kLt, Make(M, m + 1, 0));
      } else {
        add(Op::kGe, Make(M, 0, 0));
        add(Op::kLt, Make(M + 1, 0, 0));
      }
    } else if (op == ">=") {
      add(Op::kGe, Make(M, m, pt, p.prerelease));
    } else if (op == "<") {
      add(Op::kLt, Make(M, m, pt, p.prerelease));
    } else if (op == ">") {
      // ">1.2" means above every 1.2.x: >=1.3.0.
      if (p.patch) {
        add(Op::kGt, Make(M, m, pt, p.prerelease));
      } else if (p.minor) {
        add(Op::kGe, Make(M, m + 1, 0));
      } else {
        add(Op::kGe, Make(M + 1, 0, 0));
      }
    } else {  // "<="; "<=1.2" includes every 1.2.x: <1.3.0.
      if (p.patch) {
        add(Op::kLe, Make(M, m, pt, p.prerelease));
      } else if (p.minor) {
        add(Op::kLt, Make(M, m + 1, 0));
      } else {
        add(Op::kLt, Make(M + 1, 0, 0));
      }
    }
  }
  return r;
}

bool VersionRange::Satisfies(const Comparator& c, const Version& v) {
  int cmp = ComparePrecedence(v, c.version);
  switch (c.op) {
    case Op::kEq: return cmp == 0;
    case Op::kLt: return cmp < 0;
    case Op::kLe: return cmp <= 0;
    case Op::kGt: return cmp > 0;
    case Op::kGe: return cmp >= 0;
  }
  return false;
}

bool VersionRange::Matches(const Version& version) const {
  for (const Comparator& c : comparators_) {
    if (!Satisfies(c, version)) return false;
  }
  if (!version.is_prerelease()) return true;
  // A pre-release needs a comparator that names a pre-release of the same release.
  for (const Comparator& c : comparators_) {
    if (c.version.is_prerelease() && c.version.major == version.major &&
        c.version.minor == version.minor && c.version.patch == version.patch) {
      return true;
    }
  }
  return false;
}

std::optional<size_t> HighestMatching(const VersionRange& range, std::span<const Version> versions) {
  std::optional<size_t> best;
  for (size_t i = 0; i < versions.size(); ++i) {
    if (!range.Matches(versions[i])) continue;
    if (!best || ComparePrecedence(versions[i], versions[*best]) > 0) best = i;
  }
  return best;
}

}  // namespace llmasos::registry
