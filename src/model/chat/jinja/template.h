// A Jinja template as chat templates use it: parsed once, rendered many times with Python
// semantics matching jinja2 under Hugging Face's settings (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loop controls, transformers' tojson).
//
// Supported: {{ }}, {% if/elif/else %}, {% for %} (loop.*, else, `if` filter, break/continue),
// {% set %} (names, tuples, ns.attr, block form), {% macro %} and calls, {% generation %},
// {% raw %}, comments, whitespace control; the filters, tests, string and dict methods and
// globals listed in docs/chat-templates.md. Anything else is refused with an error naming the
// line and column, never guessed.
//
// Rendering is bounded (RenderLimits): output size, bytes of strings built, evaluation steps
// and macro call depth, so a hostile template cannot hang or exhaust memory.
//
// Thread safety: a Template is immutable; Render may be called from several threads at once.
#ifndef LLMASOS_MODEL_CHAT_JINJA_TEMPLATE_H_
#define LLMASOS_MODEL_CHAT_JINJA_TEMPLATE_H_

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string_view>

#include "model/chat/jinja/ast.h"
#include "model/chat/jinja/text.h"
#include "model/chat/jinja/value.h"
#include "util/status.h"

namespace llmasos::chat::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{32} << 20;
  size_t max_string_bytes = size_t{512} << 20;  // total bytes of all strings built
  uint64_t max_steps = 20'000'000;              // expressions evaluated + statements run
  int max_call_depth = 64;                      // nested macro calls
};

struct RenderOptions {
  RenderLimits limits;
  // The time strftime_now() formats (local time); 0 means the current time.
  std::time_t now = 0;
};

class Template {
 public:
  // InvalidArgument naming the line and column of a syntax error or unsupported construct.
  static StatusOr<Template> Parse(std::string_view source);

  // Renders with `variables` (string keys: messages, add_generation_prompt, bos_token, ...)
  // on top of the globals (range, namespace, dict, raise_exception, strftime_now).
  // InvalidArgument naming the line and column for an error the template hits (including its
  // own raise_exception), ResourceExhausted when a limit is reached.
  StatusOr<Text> Render(const Dict& variables, const RenderOptions& options = {}) const;

 private:
  std::shared_ptr<const Body> body_;
};

}  // namespace llmasos::chat::jinja

#endif  // LLMASOS_MODEL_CHAT_JINJA_TEMPLATE_H_
