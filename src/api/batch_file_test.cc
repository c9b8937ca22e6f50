#include "api/batch_file.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace llmasos::api {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/batch_file_test_" + std::to_string(getpid()) + "_" + name;
}

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(BatchResultIdsTest, AMissingFileHasNone) {
  auto ids = ReadBatchResultIds(TempPath("missing.jsonl"));
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_TRUE(ids->empty());
}

TEST(BatchResultIdsTest, ReadsTheIdsAndDropsALastLineCutShort) {
  const std::string path = TempPath("cut.jsonl");
  const std::string whole = "{\"id\":\"a\",\"text\":\"x\"}\n{\"id\":\"b\",\"text\":\"y\"}\n";
  WriteFile(path, whole + "{\"id\":\"c\",\"te");
  auto ids = ReadBatchResultIds(path);
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_THAT(*ids, ElementsAre("a", "b"));
  EXPECT_EQ(ReadFile(path), whole);  // ready to append to
}

TEST(BatchResultIdsTest, RefusesAFileThatIsNotResults) {
  const std::string path = TempPath("other.jsonl");
  WriteFile(path, "{\"id\":\"a\"}\nnot json\n");
  auto ids = ReadBatchResultIds(path);
  EXPECT_EQ(ids.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(ids.status().message(), HasSubstr("refusing to append"));
  EXPECT_EQ(ReadFile(path), "{\"id\":\"a\"}\nnot json\n");  // untouched
}

TEST(BatchDefaultsTest, OptionsBecomeEveryLinesDefaults) {
  BatchInputOptions o;
  o.defaults.context_tokens = 128;
  o.stop = {"END"};
  const auto options = nlohmann::json::parse(
      R"({"temperature": 0.5, "top_k": 7, "seed": 11, "max_tokens": 9, "stop": ["\n\n"]})");
  ASSERT_TRUE(ApplyBatchDefaults(options, &o, nullptr).ok());
  EXPECT_FLOAT_EQ(o.defaults.sampling.temperature, 0.5f);
  EXPECT_EQ(o.defaults.sampling.top_k, 7);
  EXPECT_EQ(o.defaults.sampling.seed, 11u);
  EXPECT_EQ(o.defaults.max_tokens, 9);
  EXPECT_THAT(o.stop, ElementsAre("END", "\n\n"));
}

TEST(BatchDefaultsTest, ABadOptionIsNamed) {
  BatchInputOptions o;
  std::string field;
  Status s = ApplyBatchDefaults(nlohmann::json::parse(R"({"temperature": -1})"), &o, &field);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(field, "options.temperature");
  s = ApplyBatchDefaults(nlohmann::json::parse(R"({"prompt": "x"})"), &o, &field);
  EXPECT_EQ(field, "options.prompt");
  EXPECT_THAT(s.message(), HasSubstr("unknown option"));
  s = ApplyBatchDefaults(nlohmann::json::parse("[1]"), &o, &field);
  EXPECT_EQ(field, "options");
}

}  // namespace
}  // namespace llmasos::api
