// Fuzzes the Jinja lexer, parser and renderer on arbitrary template text, rendered with a small
// conversation, under tight limits: every input must end in output or an error with a message,
// never a crash, a hang or an unbounded allocation.
//
// Input layout: <template text> \0 <message content> (the content is optional).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/chat/jinja/json.h"
#include "model/chat/jinja/template.h"
#include "util/logging.h"

using namespace llmasos::chat::jinja;  // NOLINT: a fuzzer's single translation unit

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find('\0');
  const std::string_view source = input.substr(0, split);
  const std::string_view content = split == std::string_view::npos ? "hi" : input.substr(split + 1);

  llmasos::StatusOr<Template> t = Template::Parse(source);
  if (!t.ok()) {
    CHECK(!t.status().message().empty());
    return 0;
  }
  Dict vars;
  auto message = std::make_shared<Dict>();
  message->Set(Value::String("role"), Value::String("user"));
  message->Set(Value::String("content"), Value::String(std::string(content), /*is_content=*/true));
  vars.Set(Value::String("messages"), Value::MakeList({Value::MakeDict(message), Value::MakeDict(message)}));
  vars.Set(Value::String("add_generation_prompt"), Value::Bool(true));
  vars.Set(Value::String("bos_token"), Value::String("<s>"));
  RenderOptions options;
  options.now = 1;
  options.limits.max_steps = 200000;
  options.limits.max_output_bytes = 1 << 20;
  options.limits.max_string_bytes = 16 << 20;
  options.limits.max_call_depth = 32;
  llmasos::StatusOr<Text> out = t->Render(vars, options);
  if (!out.ok()) {
    CHECK(!out.status().message().empty());
    return 0;
  }
  CHECK(out->size() <= options.limits.max_output_bytes);
  // The content marks are sorted, disjoint ranges inside the text.
  size_t prev_end = 0;
  for (const auto& [b, e] : out->content_ranges()) {
    CHECK(b < e && e <= out->size() && (prev_end == 0 || b > prev_end));
    prev_end = e;
  }
  return 0;
}
