#include "model/chat/chat_template.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace llmasos::chat {
namespace {

// SmolLM2-135M-Instruct's tokenizer.chat_template (real newlines inside the literals).
constexpr std::string_view kSmolLm2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

std::vector<Message> Conv(std::initializer_list<std::pair<const char*, const char*>> turns) {
  std::vector<Message> out;
  for (const auto& [role, content] : turns) out.push_back({role, content});
  return out;
}

TEST(PythonStripTest, StripsAsciiAndUnicodeWhitespace) {
  EXPECT_EQ(PythonStrip("  \t\nhello world\r\n\v\f "), "hello world");
  EXPECT_EQ(PythonStrip("\x1c\x1d\x1e\x1fx\x1f"), "x");
  // U+00A0, U+3000, U+2028, U+0085 are whitespace to Python.
  EXPECT_EQ(PythonStrip("\u00a0\u3000hi\u2028\u0085"), "hi");
  EXPECT_EQ(PythonStrip("   "), "");
  EXPECT_EQ(PythonStrip(""), "");
}

TEST(PythonStripTest, KeepsNonWhitespaceAndInnerSpace) {
  EXPECT_EQ(PythonStrip("a  b"), "a  b");
  // U+200B (zero width space) is not whitespace to Python.
  EXPECT_EQ(PythonStrip("\u200bx\u200b"), "\u200bx\u200b");
  EXPECT_EQ(PythonStrip(" é "), "é");
}

TEST(PythonStripTest, InvalidUtf8IsNeverWhitespace) {
  // A lone continuation byte or a truncated sequence ends the stripping, never crashes.
  EXPECT_EQ(PythonStrip(" \x80 "), "\x80");
  EXPECT_EQ(PythonStrip(" \xc2"), "\xc2");
  EXPECT_EQ(PythonStrip("\xa0 x"), "\xa0 x");
}

TEST(ChatTemplateTest, FromNameKnowsEveryFamily) {
  const std::vector<std::pair<std::string, TemplateFamily>> names = {
      {"chatml", TemplateFamily::kChatMl}, {"llama3", TemplateFamily::kLlama3},
      {"llama2", TemplateFamily::kLlama2}, {"zephyr", TemplateFamily::kZephyr},
      {"gemma", TemplateFamily::kGemma}};
  for (const auto& [name, family] : names) {
    StatusOr<ChatTemplate> t = ChatTemplate::FromName(name);
    ASSERT_TRUE(t.ok()) << name << ": " << t.status().ToString();
    EXPECT_EQ(t->family(), family);
    EXPECT_EQ(t->name(), name);
    EXPECT_FALSE(t->EndOfTurnStrings().empty());
  }
}

TEST(ChatTemplateTest, FromNameRejectsUnknownNamesListingKnownOnes) {
  for (std::string_view bad : {"", "ChatML", "llama-3", "mistral"}) {
    StatusOr<ChatTemplate> t = ChatTemplate::FromName(bad);
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find("chatml, llama3"), std::string::npos);
  }
}

TEST(ChatTemplateTest, EmptyTemplateIsAClearError) {
  for (std::string_view empty : {"", "  \n\t"}) {
    StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(empty, "");
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), StatusCode::kNotFound);
    EXPECT_NE(t.status().message().find("no chat template"), std::string::npos);
  }
}

TEST(ChatTemplateTest, UnrecognisedTemplateIsUnimplementedAndQuotesIt) {
  StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(
      "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}", "");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(t.status().message().find("not recognised"), std::string::npos);
  EXPECT_NE(t.status().message().find("### {{ m['role'] }}"), std::string::npos);
}

TEST(ChatTemplateTest, TwoFamiliesMarkersAreRefused) {
  StatusOr<ChatTemplate> t = ChatTemplate::FromJinja("{{ '<|im_start|>' }}{{ '[INST]' }}", "");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(t.status().message().find("[INST]"), std::string::npos);
}

TEST(ChatTemplateTest, LookalikeVariantsAreRefusedByName) {
  struct Case {
    std::string jinja;
    std::string named;
  };
  const std::vector<Case> cases = {
      {"{{ bos_token }}{% for m in messages %}{{ '[INST] ' + m['content'] + ' [/INST]' }}"
       "{% endfor %}",
       "Mistral"},
      {"{{ '<|im_start|>' + m['role'] }}{{ '<think>\\n' }}", "Qwen3"},
      {"{{ '<|start_header_id|>' }}Cutting Knowledge Date: December 2023 | trim", "Llama-3.1"},
      {"{{ '<|user|>\\n' + m['content'] + '<|end|>\\n' }}", "Phi-3"},
      {"{{ '<start_of_turn>' }}{% set first_user_prefix = '' %}", "Gemma-3"},
  };
  for (const Case& c : cases) {
    StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(c.jinja, "");
    ASSERT_FALSE(t.ok()) << c.named;
    EXPECT_EQ(t.status().code(), StatusCode::kUnimplemented) << c.named;
    EXPECT_NE(t.status().message().find(c.named), std::string::npos) << t.status().message();
  }
}

TEST(ChatTemplateTest, SmolLm2DefaultSystemPromptIsInsertedOnlyWithoutASystemMessage) {
  StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(kSmolLm2, "<|im_start|>");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->family(), TemplateFamily::kChatMl);
  StatusOr<std::string> plain = t->Render(Conv({{"user", "Hi"}}), true);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(*plain,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  StatusOr<std::string> with_system = t->Render(Conv({{"system", "Be terse."}, {"user", "Hi"}}), false);
  ASSERT_TRUE(with_system.ok());
  EXPECT_EQ(*with_system, "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplateTest, DefaultSystemPromptIsReadThroughJinjaEscapes) {
  // The literal spells its newline and quote as escapes, as most tokenizer_config.json files do.
  StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(
      "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou\\'re \\u00e9\\x41."
      "<|im_end|>\\n' }}{% endif %}{{ '<|im_start|>' }}",
      "");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  StatusOr<std::string> r = t->Render(Conv({{"user", "x"}}), false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "<|im_start|>system\nYou're \u00e9A.<|im_end|>\n<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplateTest, DefaultSystemPromptInAJinjaCommentIsIgnored) {
  StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(
      "{# '<|im_start|>system\nold<|im_end|>' #}{{ '<|im_start|>' }}", "");
  ASSERT_TRUE(t.ok());
  StatusOr<std::string> r = t->Render(Conv({{"user", "x"}}), false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "<|im_start|>user\nx<|im_end|>\n");
}

TEST(ChatTemplateTest, EmptyConversationIsInvalid) {
  for (std::string_view name : {"chatml", "llama3", "llama2", "zephyr", "gemma"}) {
    StatusOr<std::string> r = ChatTemplate::FromName(name)->Render({}, true);
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(ChatTemplateTest, EmptyRoleIsInvalid) {
  StatusOr<std::string> r = ChatTemplate::FromName("chatml")->Render(Conv({{"", "x"}}), true);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("message 0 has an empty role"), std::string::npos);
}

TEST(ChatTemplateTest, RolesTheFamilyCannotHoldAreInvalid) {
  struct Case {
    std::string family;
    std::vector<Message> messages;
    std::string expect;  // in the message
  };
  const std::vector<Case> cases = {
      {"gemma", Conv({{"system", "s"}, {"user", "u"}}), "no system role"},
      {"gemma", Conv({{"user", "u"}, {"user", "u"}}), "message 1 has role 'user'"},
      {"gemma", Conv({{"assistant", "a"}}), "message 0 has role 'assistant'"},
      {"llama2", Conv({{"user", "u"}, {"tool", "t"}}), "message 1 has role 'tool'"},
      {"llama2", Conv({{"system", "s"}, {"assistant", "a"}}), "message 1 has role 'assistant'"},
      {"llama2", Conv({{"system", "s"}}), "needs a user message"},
      {"zephyr", Conv({{"user", "u"}, {"tool", "t"}}), "no role 'tool'"},
  };
  for (const Case& c : cases) {
    StatusOr<std::string> r = ChatTemplate::FromName(c.family)->Render(c.messages, true);
    ASSERT_FALSE(r.ok()) << c.family << " " << c.expect;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
  }
}

TEST(ChatTemplateTest, ChatMlAndLlama3PassOtherRolesThrough) {
  StatusOr<std::string> r = ChatTemplate::FromName("chatml")->Render(Conv({{"tool", "42"}}), false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "<|im_start|>tool\n42<|im_end|>\n");
  StatusOr<std::string> l = ChatTemplate::FromName("llama3")->Render(Conv({{"ipython", "42"}}), false);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(*l, "<|begin_of_text|><|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>");
}

TEST(ChatTemplateTest, TrimmingFamiliesStripContent) {
  const std::vector<Message> conv = Conv({{"user", " \n hi \u3000"}});
  EXPECT_EQ(*ChatTemplate::FromName("gemma")->Render(conv, false),
            "<bos><start_of_turn>user\nhi<end_of_turn>\n");
  EXPECT_EQ(*ChatTemplate::FromName("llama2")->Render(conv, false), "<s>[INST] hi [/INST]");
  EXPECT_EQ(*ChatTemplate::FromName("zephyr")->Render(conv, false),
            "<|user|>\n \n hi \u3000</s>\n");
}

TEST(ChatTemplateTest, EndOfTurnStringsPerFamily) {
  EXPECT_EQ(ChatTemplate::FromName("chatml")->EndOfTurnStrings(), std::vector<std::string>{"<|im_end|>"});
  EXPECT_EQ(ChatTemplate::FromName("llama3")->EndOfTurnStrings(), std::vector<std::string>{"<|eot_id|>"});
  EXPECT_EQ(ChatTemplate::FromName("gemma")->EndOfTurnStrings(), std::vector<std::string>{"<end_of_turn>"});
  EXPECT_EQ(ChatTemplate::FromName("llama2")->EndOfTurnStrings(), std::vector<std::string>{"</s>"});
}

}  // namespace
}  // namespace llmasos::chat
