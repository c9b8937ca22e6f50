#include "model/chat/jinja/template.h"

#include "model/chat/jinja/lexer.h"
#include "model/chat/jinja/parser.h"
#include "model/chat/jinja/renderer.h"

namespace llmasos::chat::jinja {

StatusOr<Template> Template::Parse(std::string_view source) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  ASSIGN_OR_RETURN(Body body, jinja::Parse(tokens));
  Template t;
  t.body_ = std::make_shared<const Body>(std::move(body));
  return t;
}

StatusOr<Text> Template::Render(const Dict& variables, const RenderOptions& options) const {
  Renderer renderer(variables, options);
  return renderer.Run(*body_);
}

}  // namespace llmasos::chat::jinja
