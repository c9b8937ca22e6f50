#include "api/request.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace llmasos::api {
namespace {

using ::testing::HasSubstr;

// The parse of a chat completion body, which must succeed.
ParsedGeneration Chat(const std::string& fields) {
  auto r = ParseGeneration(Endpoint::kChatCompletions,
                           R"({"model": "m", "messages": [{"role": "user", "content": "hi"}])" +
                               (fields.empty() ? "" : ", " + fields) + "}");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : ParsedGeneration{};
}

// The error message of a body that must fail; `param` receives the field's path.
std::string ChatError(const std::string& fields, std::string* param) {
  auto r = ParseGeneration(Endpoint::kChatCompletions,
                           R"({"model": "m", "messages": [{"role": "user", "content": "hi"}], )" + fields + "}",
                           param);
  EXPECT_FALSE(r.ok()) << fields;
  return r.ok() ? "" : r.status().message();
}

StatusOr<ParsedGeneration> Ollama(Endpoint e, const std::string& body, std::string* param = nullptr) {
  return ParseGeneration(e, body, param);
}

TEST(JsonBodyTest, RefusesAnEmptyBody) {
  auto r = ParseJsonObject("  \n");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("empty"));
}

TEST(JsonBodyTest, ReportsInvalidUtf8WithItsOffset) {
  auto r = ParseJsonObject("{\"a\": \"x\xff\"}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "invalid UTF-8 at byte 8");
}

TEST(JsonBodyTest, ReportsALoneHighSurrogateAsSuch) {
  auto r = ParseJsonObject(R"({"prompt": "a\ud800b"})");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("lone UTF-16 surrogate \\ud800"));
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("not a JSON object")));
}

TEST(JsonBodyTest, ReportsALoneLowSurrogateAndAHighOneFollowedByANonSurrogate) {
  auto low = ParseJsonObject(R"({"prompt": "\uDC00"})");
  ASSERT_FALSE(low.ok());
  EXPECT_THAT(low.status().message(), HasSubstr("lone UTF-16 surrogate \\uDC00"));
  auto high = ParseJsonObject(R"({"prompt": "\ud83d\u0041"})");
  ASSERT_FALSE(high.ok());
  EXPECT_THAT(high.status().message(), HasSubstr("surrogate \\ud83d"));
}

TEST(JsonBodyTest, AcceptsASurrogatePair) {
  auto r = ParseJsonObject(R"({"prompt": "\ud83d\ude00 \\ud800"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["prompt"].get<std::string>(), "\xF0\x9F\x98\x80 \\ud800");  // the second is escaped text
}

TEST(JsonBodyTest, RefusesTenThousandLevelsOfNestingWithoutRecursing) {
  std::string deep = "{\"a\": " + std::string(10000, '[') + std::string(10000, ']') + "}";
  auto r = ParseJsonObject(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nested deeper than 64 levels"));
}

TEST(JsonBodyTest, AllowsExactlyTheMaximumDepth) {
  const int inner = kMaxJsonDepth - 1;  // the object itself is one level
  std::string ok = "{\"a\": " + std::string(inner, '[') + std::string(inner, ']') + "}";
  EXPECT_TRUE(ParseJsonObject(ok).ok());
  std::string over = "{\"a\": " + std::string(inner + 1, '[') + std::string(inner + 1, ']') + "}";
  EXPECT_FALSE(ParseJsonObject(over).ok());
}

TEST(JsonBodyTest, BracketsInsideStringsAreNotNesting) {
  std::string body = "{\"a\": \"" + std::string(1000, '[') + "\\\"" + std::string(1000, '{') + "\"}";
  EXPECT_TRUE(ParseJsonObject(body).ok());
}

TEST(JsonBodyTest, MalformedJsonSaysWhere) {
  auto r = ParseJsonObject("{\"a\": tru}");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("malformed JSON at line 1, column"));
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("json.exception")));
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("last read")));
}

TEST(JsonBodyTest, ANumberTooLargeForADoubleIsMalformed) {
  auto r = ParseJsonObject(R"({"top_k": 1e400})");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("number overflow"));
}

TEST(JsonBodyTest, ValidJsonThatIsNotAnObject) {
  auto r = ParseJsonObject("[1, 2]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "not a JSON object (got a list)");
}

TEST(NumberTest, HugePriorityIsRefusedBeforeConversion) {
  std::string param;
  std::string s = ChatError(R"("priority": 1e308)", &param);
  EXPECT_EQ(param, "priority");
  EXPECT_THAT(s, HasSubstr("priority: must be an integer in -1000..1000, got 1e+308"));
}

TEST(NumberTest, HugeTopKIsRefusedBeforeConversion) {
  std::string param;
  std::string s = ChatError(R"("top_k": 1e20)", &param);
  EXPECT_EQ(param, "top_k");
  EXPECT_THAT(s, HasSubstr("top_k: must be an integer in 0..1000000"));
  ChatError(R"("top_k": 18446744073709551615)", &param);
  EXPECT_EQ(param, "top_k");
  ChatError(R"("top_k": -9223372036854775808)", &param);
  EXPECT_EQ(param, "top_k");
  ChatError(R"("top_k": -1e308)", &param);
  EXPECT_EQ(param, "top_k");
}

TEST(NumberTest, IntegersMayBeWrittenAsWholeFloatsButNotFractions) {
  EXPECT_EQ(Chat(R"("top_k": 5.0)").top_k, 5);
  std::string param;
  std::string s = ChatError(R"("top_k": 5.5)", &param);
  EXPECT_THAT(s, HasSubstr("got 5.5"));
}

TEST(NumberTest, NIsBounded) {
  EXPECT_EQ(Chat(R"("n": 16)").n, 16);
  std::string param;
  ChatError(R"("n": 1000000000)", &param);
  EXPECT_EQ(param, "n");
  ChatError(R"("n": 0)", &param);
  EXPECT_EQ(param, "n");
}

TEST(NumberTest, NegativeOrZeroMaxTokensIsRefused) {
  std::string param;
  ChatError(R"("max_tokens": -1)", &param);
  EXPECT_EQ(param, "max_tokens");
  ChatError(R"("max_completion_tokens": 0)", &param);
  EXPECT_EQ(param, "max_completion_tokens");
  EXPECT_EQ(Chat(R"("max_completion_tokens": 7)").max_tokens, 7);
  ChatError(R"("max_tokens": 5, "max_completion_tokens": 6)", &param);
  EXPECT_EQ(param, "max_completion_tokens");
}

TEST(NumberTest, FloatRangesDependOnTheApi) {
  std::string param;
  ChatError(R"("temperature": 3)", &param);
  EXPECT_EQ(param, "temperature");
  ChatError(R"("temperature": "hot")", &param);
  EXPECT_EQ(param, "temperature");
  auto ollama = Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "x", "options": {"temperature": 3}})");
  ASSERT_TRUE(ollama.ok()) << ollama.status().ToString();
  EXPECT_FLOAT_EQ(*ollama->temperature, 3.0f);
  ChatError(R"("top_p": 1.5)", &param);
  EXPECT_EQ(param, "top_p");
  ChatError(R"("presence_penalty": -2.5)", &param);
  EXPECT_EQ(param, "presence_penalty");
}

TEST(NumberTest, SeedCoversUint64AndMinusOneMeansRandom) {
  EXPECT_EQ(Chat(R"("seed": 18446744073709551615)").seed, UINT64_MAX);
  EXPECT_EQ(Chat(R"("seed": 42)").seed, 42u);
  EXPECT_FALSE(Chat(R"("seed": -1)").seed.has_value());
  EXPECT_FALSE(Chat(R"("seed": null)").seed.has_value());
  std::string param;
  ChatError(R"("seed": -2)", &param);
  EXPECT_EQ(param, "seed");
  ChatError(R"("seed": 1e20)", &param);
  EXPECT_EQ(param, "seed");
  ChatError(R"("seed": "42")", &param);
  EXPECT_EQ(param, "seed");
}

TEST(ModelTest, IsRequired) {
  std::string param;
  auto r = ParseGeneration(Endpoint::kChatCompletions, R"({"messages": [{"role": "user", "content": "x"}]})", &param);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(param, "model");
  r = ParseGeneration(Endpoint::kChatCompletions, R"({"model": 5, "messages": []})", &param);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(param, "model");
}

TEST(MessagesTest, RolesAndContentParts) {
  auto r = ParseGeneration(Endpoint::kChatCompletions, R"({"model": "m", "messages": [
      {"role": "developer", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
      {"role": "assistant", "content": "ok", "name": "bot"}]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->messages.size(), 3u);
  EXPECT_TRUE(r->use_chat_template);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->messages[1].content, "a\nb");
  EXPECT_EQ(r->ignored_fields, std::vector<std::string>{"messages[2].name"});
}

TEST(MessagesTest, BadMessagesNameThePath) {
  struct Case {
    const char* messages;
    const char* param;
    const char* text;
  } cases[] = {
      {R"([])", "messages", "non-empty"},
      {R"("hi")", "messages", "list"},
      {R"([{"role": "user"}])", "messages[0].content", "required"},
      {R"([{"role": "wizard", "content": "x"}])", "messages[0].role", "unknown role 'wizard'"},
      {R"([{"role": "tool", "content": "x"}])", "messages[0].role", "not supported"},
      {R"([{"content": "x"}])", "messages[0].role", "required"},
      {R"([{"role": "user", "content": "x"}, 3])", "messages[1]", "object"},
      {R"([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}])", "messages[0].content[0].type",
       "'image_url' is not supported"},
      {R"([{"role": "user", "content": []}])", "messages[0].content", "empty"},
      {R"([{"role": "user", "content": [{"type": "text"}]}])", "messages[0].content[0].text", "required"},
      {R"([{"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}])", "messages[0].tool_calls",
       "not supported"},
  };
  for (const Case& c : cases) {
    std::string param;
    auto r = ParseGeneration(Endpoint::kChatCompletions,
                             std::string(R"({"model": "m", "messages": )") + c.messages + "}", &param);
    ASSERT_FALSE(r.ok()) << c.messages;
    EXPECT_EQ(param, c.param) << c.messages;
    EXPECT_THAT(r.status().message(), HasSubstr(c.text)) << c.messages;
    EXPECT_EQ(r.status().message().rfind(std::string(c.param) + ": ", 0), 0u) << r.status().message();
  }
}

TEST(UnsupportedTest, NamedUnlessNeutral) {
  std::string param;
  std::string s = ChatError(R"("tools": [{"type": "function"}])", &param);
  EXPECT_EQ(param, "tools");
  EXPECT_THAT(s, HasSubstr("tools: is not supported"));
  Chat(R"("tools": [], "tool_choice": "none", "parallel_tool_calls": true)");
  ChatError(R"("response_format": {"type": "json_object"})", &param);
  EXPECT_EQ(param, "response_format.type");
  Chat(R"("response_format": {"type": "text"})");
  ChatError(R"("modalities": ["text", "audio"])", &param);
  EXPECT_EQ(param, "modalities");
  Chat(R"("modalities": ["text"])");
}

TEST(UnsupportedTest, UnknownFieldsAreIgnoredAndListed) {
  ParsedGeneration r = Chat(R"("service_tier": "auto", "frobnicate": 1, "user": "u1")");
  EXPECT_EQ(r.user, "u1");
  EXPECT_EQ(r.ignored_fields, (std::vector<std::string>{"frobnicate", "service_tier"}));
}

TEST(StreamTest, StreamOptionsNeedStream) {
  std::string param;
  ChatError(R"("stream_options": {"include_usage": true})", &param);
  EXPECT_EQ(param, "stream_options");
  ParsedGeneration r = Chat(R"("stream": true, "stream_options": {"include_usage": true})");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(StopTest, StringOrListBounded) {
  EXPECT_EQ(Chat(R"("stop": "x")").stop, std::vector<std::string>{"x"});
  EXPECT_EQ(Chat(R"("stop": ["a", "b"])").stop, (std::vector<std::string>{"a", "b"}));
  std::string param;
  ChatError(R"("stop": ["a", ""])", &param);
  EXPECT_EQ(param, "stop[1]");
  ChatError(R"("stop": [1])", &param);
  EXPECT_EQ(param, "stop[0]");
  ChatError(R"("stop": ["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"])", &param);
  EXPECT_EQ(param, "stop");
}

TEST(LogitBiasTest, SortedAndChecked) {
  ParsedGeneration r = Chat(R"("logit_bias": {"50": -100, "7": 2.5})");
  ASSERT_EQ(r.logit_bias.size(), 2u);
  EXPECT_EQ(r.logit_bias[0].first, 7);
  EXPECT_FLOAT_EQ(r.logit_bias[0].second, 2.5f);
  std::string param;
  ChatError(R"("logit_bias": {"x": 1})", &param);
  EXPECT_EQ(param, "logit_bias");
  ChatError(R"("logit_bias": {"99999999999": 1})", &param);
  EXPECT_EQ(param, "logit_bias");
  ChatError(R"("logit_bias": {"5": 101})", &param);
  EXPECT_EQ(param, "logit_bias.5");
  ChatError(R"("logit_bias": {"5": 1, "05": 2})", &param);
  EXPECT_EQ(param, "logit_bias");
}

TEST(LogprobsTest, ChatAndCompletionForms) {
  ParsedGeneration r = Chat(R"("logprobs": true, "top_logprobs": 3)");
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 3);
  std::string param;
  ChatError(R"("top_logprobs": 3)", &param);
  EXPECT_EQ(param, "top_logprobs");
  ChatError(R"("logprobs": true, "top_logprobs": 21)", &param);
  EXPECT_EQ(param, "top_logprobs");
  auto c = ParseGeneration(Endpoint::kCompletions, R"({"model": "m", "prompt": "x", "logprobs": 0})");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->logprobs);
  EXPECT_EQ(c->top_logprobs, 0);
}

TEST(CompletionTest, PromptForms) {
  auto r = ParseGeneration(Endpoint::kCompletions, R"({"model": "m", "prompt": ["once"], "max_tokens": 3})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->use_chat_template);
  EXPECT_EQ(r->prompt, "once");
  EXPECT_EQ(r->penalty_mode, sampling::PenaltyMode::kOpenAi);
  std::string param;
  EXPECT_FALSE(ParseGeneration(Endpoint::kCompletions, R"({"model": "m", "prompt": ["a", "b"]})", &param).ok());
  EXPECT_EQ(param, "prompt");
  auto tokens = ParseGeneration(Endpoint::kCompletions, R"({"model": "m", "prompt": [1, 2]})", &param);
  ASSERT_FALSE(tokens.ok());
  EXPECT_THAT(tokens.status().message(), HasSubstr("token ids"));
  EXPECT_FALSE(ParseGeneration(Endpoint::kCompletions, R"({"model": "m", "prompt": "x", "echo": true})", &param).ok());
  EXPECT_EQ(param, "echo");
  EXPECT_TRUE(ParseGeneration(Endpoint::kCompletions, R"({"model": "m", "prompt": "x", "best_of": 1})").ok());
}

TEST(OllamaTest, GenerateForms) {
  auto r = Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "hi", "system": "s"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->stream);  // Ollama's default
  EXPECT_TRUE(r->use_chat_template);
  ASSERT_EQ(r->messages.size(), 2u);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->messages[1].content, "hi");
  EXPECT_EQ(r->penalty_mode, sampling::PenaltyMode::kLlamaCpp);

  r = Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "hi", "raw": true, "stream": false})");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->use_chat_template);
  EXPECT_EQ(r->prompt, "hi");
  EXPECT_FALSE(r->stream);

  r = Ollama(Endpoint::kOllamaGenerate, R"({"model": "m"})");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->load_only);
  r = Ollama(Endpoint::kOllamaChat, R"({"model": "m", "messages": []})");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->load_only);
}

TEST(OllamaTest, Options) {
  auto r = Ollama(Endpoint::kOllamaChat, R"({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "options": {"num_predict": 12, "num_ctx": 2048, "top_k": 5, "top_p": 0.5, "min_p": 0.1,
                  "repeat_penalty": 1.1, "repeat_last_n": -1, "seed": 7, "stop": ["\n"], "num_gpu": 99,
                  "mirostat": 0}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->max_tokens, 12);
  EXPECT_EQ(r->num_ctx, 2048);
  EXPECT_EQ(r->top_k, 5);
  EXPECT_EQ(r->repeat_last_n, -1);
  EXPECT_EQ(r->seed, 7u);
  EXPECT_EQ(r->stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(r->ignored_fields, std::vector<std::string>{"options.num_gpu"});

  r = Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "x", "options": {"num_predict": -1}})");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->max_tokens.has_value());
  std::string param;
  EXPECT_FALSE(Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "x", "options": {"num_predict": 0}})",
                      &param).ok());
  EXPECT_EQ(param, "options.num_predict");
  EXPECT_FALSE(Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "x", "options": {"top_k": 1e20}})",
                      &param).ok());
  EXPECT_EQ(param, "options.top_k");
  EXPECT_FALSE(Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "x", "options": {"mirostat": 2}})",
                      &param).ok());
  EXPECT_EQ(param, "options.mirostat");
  EXPECT_FALSE(Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "x", "format": "json"})", &param).ok());
  EXPECT_EQ(param, "format");
  EXPECT_FALSE(
      Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "x", "raw": true, "system": "s"})", &param).ok());
  EXPECT_EQ(param, "system");
  EXPECT_FALSE(Ollama(Endpoint::kOllamaChat, R"({"model": "m", "messages": [{"role": "user", "content": "x",
      "images": ["aGk="]}]})", &param).ok());
  EXPECT_EQ(param, "messages[0].images");
}

TEST(OllamaTest, KeepAlive) {
  auto ka = [](const std::string& v) {
    return Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "keep_alive": )" + v + "}");
  };
  EXPECT_EQ(ka(R"("5m")")->keep_alive, std::chrono::minutes(5));
  EXPECT_EQ(ka(R"("1h30m")")->keep_alive, std::chrono::minutes(90));
  EXPECT_EQ(ka(R"("250ms")")->keep_alive, std::chrono::milliseconds(250));
  EXPECT_EQ(ka("300")->keep_alive, std::chrono::minutes(5));
  EXPECT_EQ(ka("0")->keep_alive, std::chrono::milliseconds(0));
  EXPECT_LT(ka(R"("-1")")->keep_alive->count(), 0);
  EXPECT_LT(ka("-1")->keep_alive->count(), 0);
  EXPECT_FALSE(ka("1e308").ok());
  EXPECT_FALSE(ka(R"("5 minutes")").ok());
  EXPECT_FALSE(ka(R"("")").ok());
  EXPECT_FALSE(ka("true").ok());
}

TEST(EmbeddingTest, OpenAiInputs) {
  auto r = ParseEmbedding(Endpoint::kEmbeddings, R"({"model": "m", "input": "hello"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->inputs, std::vector<std::string>{"hello"});
  EXPECT_FALSE(r->input_is_list);
  EXPECT_FALSE(r->truncate);
  r = ParseEmbedding(Endpoint::kEmbeddings, R"({"model": "m", "input": ["a", "b"], "encoding_format": "base64"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->inputs.size(), 2u);
  EXPECT_EQ(r->encoding, EmbeddingEncoding::kBase64);
  std::string param;
  EXPECT_FALSE(ParseEmbedding(Endpoint::kEmbeddings, R"({"model": "m", "input": []})", &param).ok());
  EXPECT_EQ(param, "input");
  EXPECT_FALSE(ParseEmbedding(Endpoint::kEmbeddings, R"({"model": "m", "input": ["a", ""]})", &param).ok());
  EXPECT_EQ(param, "input[1]");
  EXPECT_FALSE(ParseEmbedding(Endpoint::kEmbeddings, R"({"model": "m", "input": [[1, 2]]})", &param).ok());
  EXPECT_EQ(param, "input");
  EXPECT_FALSE(
      ParseEmbedding(Endpoint::kEmbeddings, R"({"model": "m", "input": "a", "encoding_format": "int8"})", &param)
          .ok());
  EXPECT_EQ(param, "encoding_format");
  EXPECT_FALSE(ParseEmbedding(Endpoint::kEmbeddings, R"({"model": "m", "input": "a", "dimensions": 8})", &param).ok());
  EXPECT_EQ(param, "dimensions");
}

TEST(EmbeddingTest, OllamaInputs) {
  auto r = ParseEmbedding(Endpoint::kOllamaEmbed, R"({"model": "m", "input": ["a", "b"], "keep_alive": "1m"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->inputs.size(), 2u);
  EXPECT_TRUE(r->truncate);
  EXPECT_EQ(r->keep_alive, std::chrono::minutes(1));
  r = ParseEmbedding(Endpoint::kOllamaEmbed, R"({"model": "m", "truncate": false})");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->inputs.empty());
  EXPECT_FALSE(r->truncate);
  r = ParseEmbedding(Endpoint::kOllamaEmbeddings, R"({"model": "m", "prompt": "hi", "options": {"num_ctx": 64}})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->inputs, std::vector<std::string>{"hi"});
  EXPECT_EQ(r->num_ctx, 64);
  std::string param;
  EXPECT_FALSE(ParseEmbedding(Endpoint::kOllamaEmbeddings, R"({"model": "m", "prompt": ["a"]})", &param).ok());
  EXPECT_EQ(param, "prompt");
}

TEST(BatchLineTest, PromptRawMessagesAndTenant) {
  auto r = ParseGeneration(Endpoint::kBatchLine, R"({"id": "q", "prompt": "hi", "tenant": "t", "priority": 3})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->use_chat_template);
  ASSERT_EQ(r->messages.size(), 1u);
  EXPECT_EQ(r->messages[0].role, "user");
  EXPECT_EQ(r->tenant, "t");
  EXPECT_EQ(r->priority, 3);
  EXPECT_TRUE(r->ignored_fields.empty());
  r = ParseGeneration(Endpoint::kBatchLine, R"({"prompt": "hi", "raw": true, "stop": "x"})");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->use_chat_template);
  EXPECT_EQ(r->prompt, "hi");
  std::string param;
  EXPECT_FALSE(ParseGeneration(Endpoint::kBatchLine, R"({"prompt": "hi", "priority": 1e308})", &param).ok());
  EXPECT_EQ(param, "priority");
  EXPECT_FALSE(ParseGeneration(Endpoint::kBatchLine, R"({"prompt": "hi", "top_k": 1e20})", &param).ok());
  EXPECT_EQ(param, "top_k");
  EXPECT_FALSE(ParseGeneration(Endpoint::kBatchLine, R"({"id": "x"})", &param).ok());
  EXPECT_EQ(param, "prompt");
  EXPECT_FALSE(
      ParseGeneration(Endpoint::kBatchLine, R"({"prompt": "a", "messages": [{"role": "user", "content": "b"}]})", &param)
          .ok());
  EXPECT_EQ(param, "prompt");
}

SpecDefaults Defaults() {
  SpecDefaults d;
  d.context_tokens = 100;
  d.vocab_size = 1000;
  d.max_tokens = 50;
  d.sampling.seed = 99;
  return d;
}

TEST(ToProcessSpecTest, AppliesTheRequestOverTheDefaults) {
  ParsedGeneration r = Chat(R"("temperature": 0, "top_k": 3, "seed": 5, "priority": 7, "max_tokens": 20)");
  auto spec = ToProcessSpec(r, {1, 2, 3}, Defaults());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->prompt, (std::vector<sampling::TokenId>{1, 2, 3}));
  EXPECT_EQ(spec->limits.max_tokens, 20);
  EXPECT_EQ(spec->sampling.temperature, 0.0f);
  EXPECT_EQ(spec->sampling.top_k, 3);
  EXPECT_EQ(spec->sampling.top_p, SpecDefaults{}.sampling.top_p);
  EXPECT_EQ(spec->sampling.seed, 5u);
  EXPECT_EQ(spec->priority, 7);
  EXPECT_EQ(spec->tenant, "default");
}

TEST(ToProcessSpecTest, DefaultsFillTheRest) {
  auto spec = ToProcessSpec(Chat(""), std::vector<sampling::TokenId>(80, 1), Defaults());
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->limits.max_tokens, 20);  // the default 50, capped by the room left
  EXPECT_EQ(spec->sampling.seed, 99u);
  SpecDefaults unlimited = Defaults();
  unlimited.max_tokens = -1;
  spec = ToProcessSpec(Chat(""), {1}, unlimited);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->limits.max_tokens, 99);
}

TEST(ToProcessSpecTest, PromptAndMaxTokensMustFitTheContext) {
  std::string param;
  auto spec = ToProcessSpec(Chat(""), std::vector<sampling::TokenId>(100, 1), Defaults(), &param);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(param, "messages");
  EXPECT_THAT(spec.status().message(), HasSubstr("is 100 tokens; the context holds 100"));
  spec = ToProcessSpec(Chat(R"("max_tokens": 11)"), std::vector<sampling::TokenId>(90, 1), Defaults(), &param);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(param, "max_tokens");
  EXPECT_THAT(spec.status().message(), HasSubstr("asks for 11 tokens, but the prompt's 90 tokens leave room for 10"));
  EXPECT_FALSE(ToProcessSpec(Chat(""), {}, Defaults(), &param).ok());
  EXPECT_EQ(param, "messages");
}

TEST(ToProcessSpecTest, TopPZeroKeepsOnlyTheMostLikelyToken) {
  auto spec = ToProcessSpec(Chat(R"("top_p": 0)"), {1}, Defaults());
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->sampling.top_k, 1);
  EXPECT_EQ(spec->sampling.top_p, 1.0f);
}

TEST(ToProcessSpecTest, PenaltiesFollowTheirApi) {
  auto openai = ToProcessSpec(Chat(R"("presence_penalty": 0.5)"), {1}, Defaults());
  ASSERT_TRUE(openai.ok()) << openai.status().ToString();
  EXPECT_EQ(openai->sampling.penalty_mode, sampling::PenaltyMode::kOpenAi);
  EXPECT_FLOAT_EQ(openai->sampling.presence_penalty, 0.5f);
  auto r = Ollama(Endpoint::kOllamaGenerate, R"({"model": "m", "prompt": "x",
      "options": {"presence_penalty": 0.5, "repeat_last_n": -1}})");
  ASSERT_TRUE(r.ok());
  auto spec = ToProcessSpec(*r, {1}, Defaults());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_FLOAT_EQ(spec->sampling.presence_penalty, 0.5f);
  EXPECT_EQ(spec->sampling.penalty_last_n, 100);
  EXPECT_EQ(spec->sampling.penalty_mode, sampling::PenaltyMode::kLlamaCpp);
}

TEST(ToProcessSpecTest, LogitBiasAndLogprobsReachTheKernel) {
  std::string param;
  auto spec = ToProcessSpec(Chat(R"("logit_bias": {"5000": 1})"), {1}, Defaults(), &param);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(param, "logit_bias");
  EXPECT_THAT(spec.status().message(), HasSubstr("outside the vocabulary"));
  spec = ToProcessSpec(Chat(R"("logit_bias": {"5": 1})"), {1}, Defaults());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  ASSERT_EQ(spec->sampling.logit_bias.size(), 1u);
  EXPECT_EQ(spec->sampling.logit_bias[0].first, 5);
  spec = ToProcessSpec(Chat(R"("logprobs": true, "top_logprobs": 4)"), {1}, Defaults());
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_TRUE(spec->sampling.logprobs);
  EXPECT_EQ(spec->sampling.top_logprobs, 4);
}

TEST(ToProcessSpecTest, BatchTenantIsKept) {
  auto r = ParseGeneration(Endpoint::kBatchLine, R"({"prompt": "x", "tenant": "acme"})");
  ASSERT_TRUE(r.ok());
  auto spec = ToProcessSpec(*r, {1}, Defaults());
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->tenant, "acme");
}

}  // namespace
}  // namespace llmasos::api
