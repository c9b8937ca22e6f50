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

TEST(ChatTemplateTest, Llama3DefaultSystemPromptIsFoundToo) {
  StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(
      "{{ bos_token }}{% if messages[0]['role'] != 'system' %}"
      "{{ '<|start_header_id|>system<|end_header_id|>"
      "\\n\\nBe kind.<|eot_id|>' }}{% endif %}{{ message['content'] | trim }}",
      "<B>");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->family(), TemplateFamily::kLlama3);
  EXPECT_EQ(*t->Render(Conv({{"user", " x "}}), false),
            "<B><|start_header_id|>system<|end_header_id|>\n\nBe kind.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>");
}

TEST(ChatTemplateTest, TwoDifferentDefaultSystemPromptsAreRefused) {
  StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(
      "{{ '<|im_start|>system\nA<|im_end|>' }}{{ '<|im_start|>system\nB<|im_end|>' }}", "");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnimplemented);
}

TEST(ChatTemplateTest, ToolResponsesFoldIntoOneUserTurnWhereTheTemplateSaysSo) {
  StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(
      "{{ '<|im_start|>user' }}{{ '\\n<tool_response>\\n' }}", "");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t->Render(Conv({{"user", "q"}, {"tool", "1"}, {"tool", "2"}, {"user", "ok"}}), false),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>user\n<tool_response>\n1\n"
            "</tool_response>\n<tool_response>\n2\n</tool_response><|im_end|>\n"
            "<|im_start|>user\nok<|im_end|>\n");
  // Plain ChatML keeps the role as written.
  EXPECT_EQ(*ChatTemplate::FromName("chatml")->Render(Conv({{"tool", "1"}}), false),
            "<|im_start|>tool\n1<|im_end|>\n");
}

TEST(ChatTemplateTest, BosIsWrittenOnlyWhereTheTemplateWritesIt) {
  const std::vector<Message> conv = Conv({{"user", "x"}});
  const std::string turn = "<|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>";
  StatusOr<ChatTemplate> with_var = ChatTemplate::FromJinja(
      "{{ bos_token }}{{ '<|start_header_id|>' + m['content'] | trim }}", "<|begin_of_text|>");
  StatusOr<ChatTemplate> with_text = ChatTemplate::FromJinja(
      "{{ '<|begin_of_text|>' }}{{ '<|start_header_id|>' + m['content'] | trim }}",
      "<|begin_of_text|>");
  StatusOr<ChatTemplate> without = ChatTemplate::FromJinja(
      "{{ '<|start_header_id|>' + m['content'] | trim }}", "<|begin_of_text|>");
  ASSERT_TRUE(with_var.ok() && with_text.ok() && without.ok());
  EXPECT_EQ(*with_var->Render(conv, false), "<|begin_of_text|>" + turn);
  EXPECT_EQ(*with_text->Render(conv, false), "<|begin_of_text|>" + turn);
  EXPECT_EQ(*without->Render(conv, false), turn);
}

std::string Concat(const std::vector<RenderedPiece>& pieces) {
  std::string out;
  for (const RenderedPiece& p : pieces) out += p.text;
  return out;
}

std::vector<std::string> ContentPieces(const std::vector<RenderedPiece>& pieces) {
  std::vector<std::string> out;
  for (const RenderedPiece& p : pieces) {
    if (p.is_content) out.push_back(p.text);
  }
  return out;
}

TEST(ChatTemplateTest, PiecesConcatenateToTheRenderingAndMarkContent) {
  const std::vector<Message> conv = Conv({{"system", " s "}, {"user", "<|im_end|> u\n"},
                                          {"assistant", "<|eot_id|>"}, {"user", " q"}});
  for (std::string_view name : {"chatml", "llama3", "zephyr", "llama2"}) {
    const ChatTemplate t = *ChatTemplate::FromName(name);
    for (bool agp : {false, true}) {
      StatusOr<std::vector<RenderedPiece>> pieces = t.RenderPieces(conv, agp);
      ASSERT_TRUE(pieces.ok()) << name;
      EXPECT_EQ(Concat(*pieces), *t.Render(conv, agp)) << name;
      for (size_t i = 0; i < pieces->size(); ++i) {
        EXPECT_FALSE((*pieces)[i].text.empty()) << name;
        if (i > 0) EXPECT_NE((*pieces)[i].is_content, (*pieces)[i - 1].is_content) << name;
      }
    }
  }
  // Content arrives as written (chatml, zephyr) or stripped (llama3), never as template text,
  // so the special-token text inside it stays plain text.
  const std::vector<std::string> as_written = {" s ", "<|im_end|> u\n", "<|eot_id|>", " q"};
  const std::vector<std::string> stripped = {"s", "<|im_end|> u", "<|eot_id|>", "q"};
  EXPECT_EQ(ContentPieces(*ChatTemplate::FromName("chatml")->RenderPieces(conv, true)), as_written);
  EXPECT_EQ(ContentPieces(*ChatTemplate::FromName("zephyr")->RenderPieces(conv, true)), as_written);
  EXPECT_EQ(ContentPieces(*ChatTemplate::FromName("llama3")->RenderPieces(conv, true)), stripped);
  // Llama-2 strips the system block and the first user message together: the system content
  // and the user's leading space stay.
  EXPECT_EQ(ContentPieces(*ChatTemplate::FromName("llama2")->RenderPieces(conv, true)),
            (std::vector<std::string>{" s ", "<|im_end|> u", "<|eot_id|>", "q"}));
}

TEST(ChatTemplateTest, Llama2StripsAcrossTheSystemBlockWhenTheUserMessageIsBlank) {
  const ChatTemplate t = *ChatTemplate::FromName("llama2");
  const std::vector<Message> conv = Conv({{"system", "S"}, {"user", " \n "}});
  EXPECT_EQ(*t.Render(conv, true), "<s>[INST] <<SYS>>\nS\n<</SYS>> [/INST]");
  EXPECT_EQ(ContentPieces(*t.RenderPieces(conv, true)), std::vector<std::string>{"S"});
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
