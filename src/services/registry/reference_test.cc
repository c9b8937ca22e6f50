#include "services/registry/reference.h"

#include <gtest/gtest.h>

#include "services/registry/validate.h"

namespace llmasos::registry {
namespace {

struct RefRow {
  const char* text;
  const char* name;
  Reference::Kind kind;
  const char* detail;  // tag, canonical version, or range text
};

TEST(ReferenceTest, ParsesEveryReferenceForm) {
  using K = Reference::Kind;
  const RefRow rows[] = {
      {"smollm2", "smollm2", K::kTag, "latest"},
      {"smollm2:q4_1", "smollm2", K::kTag, "q4_1"},
      {"smollm2-135m-instruct:q4_1", "smollm2-135m-instruct", K::kTag, "q4_1"},
      {"acme/llama:stable", "acme/llama", K::kTag, "stable"},
      {"m@1.2.3", "m", K::kVersion, "1.2.3"},
      {"m@1.2.3-rc.1+b5", "m", K::kVersion, "1.2.3-rc.1+b5"},
      {"m@1.2.3-x", "m", K::kVersion, "1.2.3-x"},
      {"m@^1.2", "m", K::kRange, "^1.2"},
      {"m@~1.2.0", "m", K::kRange, "~1.2.0"},
      {"m@>=1.0 <2.0", "m", K::kRange, ">=1.0 <2.0"},
      {"m@\">=1.0 <2.0\"", "m", K::kRange, ">=1.0 <2.0"},
      {"m@1.2", "m", K::kRange, "1.2"},
      {"m@*", "m", K::kRange, "*"},
      {"m@1.x", "m", K::kRange, "1.x"},
      {"a.b_c-d", "a.b_c-d", K::kTag, "latest"},
  };
  for (const RefRow& row : rows) {
    SCOPED_TRACE(row.text);
    auto ref = ParseReference(row.text);
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    EXPECT_EQ(ref->name, row.name);
    ASSERT_EQ(ref->kind, row.kind);
    switch (row.kind) {
      case K::kTag: EXPECT_EQ(ref->tag, row.detail); break;
      case K::kVersion: EXPECT_EQ(ref->version.ToString(), row.detail); break;
      case K::kRange: EXPECT_EQ(ref->range->text(), row.detail); break;
    }
  }
}

TEST(ReferenceTest, RejectsMalformedReferencesNamingThePart) {
  const std::pair<const char*, const char*> rows[] = {
      {"", "empty"},
      {"Model", "use lowercase"},
      {"m:", "tag is empty"},
      {"m@", "nothing after '@'"},
      {"m@\"\"", "nothing after '@'"},
      {":tag", "model name is empty"},
      {"@1.0.0", "model name is empty"},
      {"m:tag:more", "':'"},
      {"m:tag@1.0.0", "'@'"},
      {"m@1.2.3.4", "more than three"},
      {"m@01.2.3", "leading zero"},
      {"m@>=1.0 <", "no version"},
      {"../etc/passwd", "'..'"},
      {"m:../x", "'..'"},
      {"/abs", "starts with '/'"},
  };
  for (auto [text, problem] : rows) {
    SCOPED_TRACE(text);
    auto ref = ParseReference(text);
    ASSERT_FALSE(ref.ok());
    EXPECT_EQ(ref.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(ref.status().message().find(problem), std::string::npos) << ref.status().message();
  }
}

TEST(ValidateTest, AcceptsWellFormedNamesTagsAndDigests) {
  for (const char* name : {"a", "smollm2", "smollm2-135m-instruct", "acme/llama-3.1", "a_b.c-d/e",
                           "0", "x/y"}) {
    EXPECT_TRUE(ValidateName(name).ok()) << name << ": " << ValidateName(name).ToString();
  }
  EXPECT_TRUE(ValidateName(std::string(kMaxNameBytes, 'a')).ok());
  for (const char* tag : {"latest", "stable", "q4_1", "v1.0", "2024-01-01"}) {
    EXPECT_TRUE(ValidateTag(tag).ok()) << tag;
  }
  EXPECT_TRUE(ValidateTag(std::string(kMaxTagBytes, 'z')).ok());
  EXPECT_TRUE(ValidateDigest("sha256:" + std::string(64, 'a')).ok());
  EXPECT_TRUE(ValidateDigest("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef").ok());
}

TEST(ValidateTest, RejectsHostileNames) {
  const std::pair<std::string, const char*> rows[] = {
      {"", "empty"},
      {"..", "'..'"},
      {"a/../b", "'..'"},
      {"a..b", "'..'"},
      {"/etc/passwd", "starts with '/'"},
      {"a/b/c", "more than one '/'"},
      {"a/", "empty part"},
      {".hidden", "must start"},
      {"a/.b", "must start"},
      {"-rf", "must start"},
      {"_x", "must start"},
      {"a\nb", "byte 0x0a"},
      {"a\tb", "byte 0x09"},
      {std::string("a\0b", 3), "byte 0x00"},
      {"a\x1b[31mred", "byte 0x1b"},
      {"caf\xc3\xa9", "byte 0xc3"},
      {"a b", "' '"},
      {"a:b", "':'"},
      {"a@b", "'@'"},
      {"a\\b", "'\\'"},
      {"C:", "must start"},
      {"UPPER", "use lowercase"},
      {std::string(kMaxNameBytes + 1, 'a'), "the limit is"},
      {"%2e%2e", "must start"},
  };
  for (const auto& [name, problem] : rows) {
    SCOPED_TRACE(QuoteForMessage(name));
    Status s = ValidateName(name);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(problem), std::string::npos) << s.message();
    // The message never carries a raw control character to the terminal.
    for (char c : s.message()) EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20) << s.message();
  }
}

TEST(ValidateTest, RejectsHostileTags) {
  const std::pair<std::string, const char*> rows[] = {
      {"", "empty"},
      {"..", "'..'"},
      {"a/b", "'/'"},
      {".x", "must start"},
      {"x\r", "byte 0x0d"},
      {"Latest", "must start"},
      {std::string(kMaxTagBytes + 1, 'a'), "the limit is"},
  };
  for (const auto& [tag, problem] : rows) {
    SCOPED_TRACE(QuoteForMessage(tag));
    Status s = ValidateTag(tag);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find(problem), std::string::npos) << s.message();
  }
}

TEST(ValidateTest, RejectsHostileDigests) {
  const std::string hex(64, 'a');
  const std::pair<std::string, const char*> rows[] = {
      {"", "does not start with 'sha256:'"},
      {hex, "does not start with 'sha256:'"},
      {"sha512:" + hex, "does not start with 'sha256:'"},
      {"SHA256:" + hex, "does not start with 'sha256:'"},
      {"sha256:" + hex.substr(1), "63 hex digits"},
      {"sha256:" + hex + "a", "65 hex digits"},
      {"sha256:" + std::string(64, 'A'), "lowercase hex"},
      {"sha256:" + hex.substr(2) + "/.", "lowercase hex"},
      {"sha256:../../../../etc/passwd" + std::string(42, 'a'), "lowercase hex"},
      {"sha256:" + hex.substr(1) + "\n", "byte 0x0a"},
      {"sha256:" + hex.substr(1) + std::string(1, '\0'), "byte 0x00"},
      {"sha256-" + hex, "does not start with 'sha256:'"},
  };
  for (const auto& [digest, problem] : rows) {
    SCOPED_TRACE(QuoteForMessage(digest));
    Status s = ValidateDigest(digest);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(problem), std::string::npos) << s.message();
  }
}

TEST(ValidateTest, QuoteForMessageEscapesAndTruncates) {
  EXPECT_EQ(QuoteForMessage("ab"), "'ab'");
  EXPECT_EQ(QuoteForMessage("a\nb"), "'a\\x0ab'");
  EXPECT_EQ(QuoteForMessage("it's"), "'it\\x27s'");
  std::string long_text(200, 'x');
  std::string q = QuoteForMessage(long_text);
  EXPECT_LT(q.size(), 120u);
  EXPECT_NE(q.find("200 bytes"), std::string::npos);
}

}  // namespace
}  // namespace llmasos::registry
