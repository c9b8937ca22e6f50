#include "services/registry/semver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace llmasos::registry {
namespace {

struct ParseRow {
  const char* text;
  bool ok;
  const char* canonical_or_error;  // canonical form when ok, a substring of the error otherwise
};

TEST(SemverTest, ParsesValidAndRejectsInvalidVersionsNamingTheProblem) {
  const ParseRow rows[] = {
      {"0.0.0", true, "0.0.0"},
      {"1.2.3", true, "1.2.3"},
      {"10.20.30", true, "10.20.30"},
      {"1.1.2-prerelease+meta", true, "1.1.2-prerelease+meta"},
      {"1.0.0-alpha", true, "1.0.0-alpha"},
      {"1.0.0-alpha.1", true, "1.0.0-alpha.1"},
      {"1.0.0-0.3.7", true, "1.0.0-0.3.7"},
      {"1.0.0-x.7.z.92", true, "1.0.0-x.7.z.92"},
      {"1.0.0-x-y-z.--", true, "1.0.0-x-y-z.--"},
      {"1.0.0+20130313144700", true, "1.0.0+20130313144700"},
      {"1.0.0-beta+exp.sha.5114f85", true, "1.0.0-beta+exp.sha.5114f85"},
      {"1.0.0+21AF26D3----117B344092BD", true, "1.0.0+21AF26D3----117B344092BD"},
      {"1.0.0+001", true, "1.0.0+001"},  // leading zeros are allowed in build metadata
      {"1.0.0-alpha0.valid", true, "1.0.0-alpha0.valid"},
      {"18446744073709551615.0.0", true, "18446744073709551615.0.0"},
      {"", false, "empty"},
      {"1", false, "MAJOR.MINOR.PATCH"},
      {"1.2", false, "MAJOR.MINOR.PATCH"},
      {"1.2.3.4", false, "more than three"},
      {"01.2.3", false, "leading zero"},
      {"1.02.3", false, "leading zero"},
      {"1.2.03", false, "leading zero"},
      {"v1.2.3", false, "leading 'v'"},
      {"1.2.3-", false, "empty identifier"},
      {"1.2.3-alpha..1", false, "empty identifier"},
      {"1.2.3+", false, "empty identifier"},
      {"1.2.3-01", false, "leading zero"},
      {"1.2.3-alpha_beta", false, "outside [0-9A-Za-z-]"},
      {"1.2.3+b/c", false, "outside [0-9A-Za-z-]"},
      {"1.2.-3", false, "patch is empty"},
      {"a.b.c", false, "major"},
      {"1.2.x", false, "patch"},
      {" 1.2.3", false, "major"},
      {"1.2.3 ", false, "patch"},
      {"18446744073709551616.0.0", false, "64 bits"},
      {"1.2.3\n", false, "patch"},
  };
  for (const ParseRow& row : rows) {
    SCOPED_TRACE(row.text);
    auto v = ParseVersion(row.text);
    ASSERT_EQ(v.ok(), row.ok) << v.status().ToString();
    if (row.ok) {
      EXPECT_EQ(v->ToString(), row.canonical_or_error);
    } else {
      EXPECT_EQ(v.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(v.status().message().find(row.canonical_or_error), std::string::npos)
          << v.status().message();
    }
  }
}

TEST(SemverTest, PrecedenceFollowsTheSemverOrgExample) {
  // semver.org, item 11, plus the numeric examples.
  const std::vector<std::string> ordered = {
      "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
      "1.0.0-beta.11", "1.0.0-rc.1",  "1.0.0",            "2.0.0",      "2.1.0",
      "2.1.1",       "10.0.0",
  };
  for (size_t i = 0; i < ordered.size(); ++i) {
    for (size_t j = 0; j < ordered.size(); ++j) {
      auto a = ParseVersion(ordered[i]);
      auto b = ParseVersion(ordered[j]);
      ASSERT_TRUE(a.ok() && b.ok());
      int want = i < j ? -1 : (i == j ? 0 : 1);
      EXPECT_EQ(ComparePrecedence(*a, *b), want) << ordered[i] << " vs " << ordered[j];
    }
  }
  // Sorting a shuffled copy gives the list back.
  std::vector<Version> versions;
  for (const auto& s : ordered) versions.push_back(*ParseVersion(s));
  std::mt19937 rng(3);
  std::shuffle(versions.begin(), versions.end(), rng);
  std::sort(versions.begin(), versions.end(),
            [](const Version& a, const Version& b) { return ComparePrecedence(a, b) < 0; });
  for (size_t i = 0; i < ordered.size(); ++i) EXPECT_EQ(versions[i].ToString(), ordered[i]);
}

TEST(SemverTest, PrecedenceIgnoresBuildMetadata) {
  const std::pair<const char*, const char*> equal[] = {
      {"1.0.0+a", "1.0.0+b"}, {"1.0.0", "1.0.0+build.7"}, {"1.0.0-rc.1+x", "1.0.0-rc.1"}};
  for (auto [a, b] : equal) EXPECT_EQ(ComparePrecedence(*ParseVersion(a), *ParseVersion(b)), 0) << a;
  // Numeric identifiers compare numerically, even beyond 64 bits' worth of digits.
  EXPECT_LT(ComparePrecedence(*ParseVersion("1.0.0-99999999999999999999"),
                              *ParseVersion("1.0.0-100000000000000000000")), 0);
  EXPECT_LT(ComparePrecedence(*ParseVersion("1.0.0-9"), *ParseVersion("1.0.0-10")), 0);
  // Numeric identifiers sort below alphanumeric ones.
  EXPECT_LT(ComparePrecedence(*ParseVersion("1.0.0-999"), *ParseVersion("1.0.0-a")), 0);
}

struct RangeRow {
  const char* range;
  const char* version;
  bool matches;
};

TEST(SemverTest, RangesMatchTheVersionsTheyShould) {
  const RangeRow rows[] = {
      // exact
      {"1.2.3", "1.2.3", true},
      {"1.2.3", "1.2.3+build", true},
      {"1.2.3", "1.2.4", false},
      {"=1.2.3", "1.2.3", true},
      {"1.2.3-rc.1", "1.2.3-rc.1", true},
      {"1.2.3-rc.1", "1.2.3", false},
      // X-ranges and partial versions
      {"1.2", "1.2.0", true},
      {"1.2", "1.2.99", true},
      {"1.2", "1.3.0", false},
      {"1", "1.9.9", true},
      {"1", "2.0.0", false},
      {"1.x", "1.5.0", true},
      {"1.2.x", "1.2.7", true},
      {"1.2.x", "1.3.0", false},
      {"*", "0.0.1", true},
      {"*", "99.0.0", true},
      {"*", "1.0.0-rc.1", false},  // pre-releases need an explicit comparator
      // caret
      {"^1.2", "1.2.0", true},
      {"^1.2", "1.9.9", true},
      {"^1.2", "2.0.0", false},
      {"^1.2", "1.1.9", false},
      {"^1.2.3", "1.2.2", false},
      {"^1.2.3", "1.2.3", true},
      {"^0.2.3", "0.2.9", true},
      {"^0.2.3", "0.3.0", false},
      {"^0.0.3", "0.0.3", true},
      {"^0.0.3", "0.0.4", false},
      {"^0", "0.9.0", true},
      {"^0", "1.0.0", false},
      {"^1.2", "2.0.0-rc.1", false},
      {"^1.2.3-beta.2", "1.2.3-beta.4", true},
      {"^1.2.3-beta.2", "1.2.3-beta.1", false},
      {"^1.2.3-beta.2", "1.2.4-beta.2", false},  // pre-release of another release
      {"^1.2.3-beta.2", "1.3.0", true},
      // tilde
      {"~1.2.0", "1.2.0", true},
      {"~1.2.0", "1.2.9", true},
      {"~1.2.0", "1.3.0", false},
      {"~1.2.3", "1.2.2", false},
      {"~1.2", "1.2.5", true},
      {"~1", "1.8.0", true},
      {"~1", "2.0.0", false},
      // comparator sets (space = AND)
      {">=1.0 <2.0", "1.0.0", true},
      {">=1.0 <2.0", "1.99.99", true},
      {">=1.0 <2.0", "2.0.0", false},
      {">=1.0 <2.0", "0.9.9", false},
      {">=1.0 <2.0", "2.0.0-alpha", false},
      {">= 1.0  < 2.0", "1.5.0", true},
      {">1.2.3", "1.2.3", false},
      {">1.2.3", "1.2.4", true},
      {">1.2", "1.2.9", false},
      {">1.2", "1.3.0", true},
      {"<=1.2", "1.2.9", true},
      {"<=1.2", "1.3.0", false},
      {"<=1.2.3", "1.2.3", true},
      {"<1.2.3", "1.2.3-rc.1", false},
      {">=1.2.3-rc.1 <1.2.3", "1.2.3-rc.2", true},
      {">=1.2.3-rc.1", "1.2.3-rc.0", false},
      {">=1.2.3-rc.1", "1.3.0-rc.1", false},
      {">=1.2.3-rc.1", "2.0.0", true},
      {">=1.0.0 <=1.0.0", "1.0.0", true},
      {">=2.0.0 <1.0.0", "1.5.0", false},
  };
  for (const RangeRow& row : rows) {
    SCOPED_TRACE(std::string(row.range) + " vs " + row.version);
    auto range = VersionRange::Parse(row.range);
    ASSERT_TRUE(range.ok()) << range.status().ToString();
    auto v = ParseVersion(row.version);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(range->Matches(*v), row.matches);
  }
}

TEST(SemverTest, RejectsMalformedRangesNamingThePart) {
  const std::pair<const char*, const char*> rows[] = {
      {"", "empty"},
      {"   ", "empty"},
      {">=", "no version"},
      {"^", "no version"},
      {">=1.0 <", "no version"},
      {"1.2.3.4", "more than three"},
      {"1.x.3", "after a wildcard"},
      {"^01.2", "leading zero"},
      {">=1.0 || <0.5", "major"},
      {"~a.b", "major"},
      {"<*", "matches nothing"},
      {"1.2.3-", "empty identifier"},
      {">=1.0\x01", "control"},
  };
  for (auto [text, problem] : rows) {
    SCOPED_TRACE(text);
    auto range = VersionRange::Parse(text);
    ASSERT_FALSE(range.ok());
    EXPECT_EQ(range.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(range.status().message().find(problem), std::string::npos) << range.status().message();
  }
}

struct ResolveRow {
  const char* range;
  const char* want;  // "" when nothing matches
};

TEST(SemverTest, HighestMatchingPicksTheHighestAdmittedVersion) {
  std::vector<Version> installed;
  for (const char* s : {"0.9.0", "1.0.0", "1.2.0", "1.2.5", "1.3.0-rc.1", "1.10.0", "2.0.0-beta.1",
                        "2.0.0", "2.1.0+build.3", "3.0.0-alpha"}) {
    installed.push_back(*ParseVersion(s));
  }
  const ResolveRow rows[] = {
      {"*", "2.1.0+build.3"},
      {"^1.0", "1.10.0"},
      {"^1.2", "1.10.0"},
      {"~1.2.0", "1.2.5"},
      {"~1.3", ""},  // only a pre-release of 1.3.0 exists
      {">=1.3.0-rc.0 <1.4.0", "1.3.0-rc.1"},
      {">=1.0 <2.0", "1.10.0"},
      {"<1.0", "0.9.0"},
      {"^0.9", "0.9.0"},
      {"2", "2.1.0+build.3"},
      {"2.0.0-beta.1", "2.0.0-beta.1"},
      {">=3.0.0-alpha", "3.0.0-alpha"},
      {">=3.0.0", ""},
      {"^4", ""},
      {"1.2.5", "1.2.5"},
  };
  for (const ResolveRow& row : rows) {
    SCOPED_TRACE(row.range);
    auto range = VersionRange::Parse(row.range);
    ASSERT_TRUE(range.ok()) << range.status().ToString();
    auto idx = HighestMatching(*range, installed);
    if (*row.want == '\0') {
      EXPECT_FALSE(idx.has_value()) << installed[*idx].ToString();
    } else {
      ASSERT_TRUE(idx.has_value());
      EXPECT_EQ(installed[*idx].ToString(), row.want);
    }
  }
}

}  // namespace
}  // namespace llmasos::registry
