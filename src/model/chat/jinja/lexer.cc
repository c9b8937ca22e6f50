#include "model/chat/jinja/lexer.h"

#include <algorithm>
#include <cstring>

#include "model/chat/jinja/python_text.h"

namespace llmasos::chat::jinja {
namespace {

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }
bool IsTagSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  StatusOr<std::vector<Token>> Run() {
    size_t pos = 0;
    bool line_starting = true;  // the previous tag's match ended with a newline (or no tag yet)
    while (pos < src_.size()) {
      size_t open = FindOpener(pos);
      std::string_view text = std::string_view(src_).substr(pos, open == std::string::npos
                                                                     ? std::string::npos
                                                                     : open - pos);
      if (open == std::string::npos) {
        Emit(TokenKind::kText, std::string(text), pos);
        break;
      }
      const char kind = src_[open + 1];
      const char sign = open + 2 < src_.size() ? src_[open + 2] : '\0';
      if (sign == '-') {
        text.remove_suffix(TrailingSpaceBytes(text));
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: whitespace between a line start and a block or comment tag goes.
        const size_t line_pos = text.rfind('\n') == std::string_view::npos ? 0 : text.rfind('\n') + 1;
        const std::string_view tail = text.substr(line_pos);
        if ((line_pos > 0 || line_starting) && !tail.empty() && LeadingSpaceBytes(tail) == tail.size()) {
          text = text.substr(0, line_pos);
        }
      }
      Emit(TokenKind::kText, std::string(text), pos);
      const bool has_sign = sign == '-' || (sign == '+' && kind != '{');
      size_t body = open + 2 + (has_sign ? 1 : 0);
      if (kind == '#') {
        const size_t end = src_.find("#}", body);
        if (end == std::string::npos) return Error(open, "unterminated comment: no '#}'");
        const char close_sign = end > body ? src_[end - 1] : '\0';
        pos = AfterClose(end + 2, close_sign, /*trims=*/true, &line_starting);
        continue;
      }
      if (kind == '%' && IsRawStart(body)) {
        ASSIGN_OR_RETURN(pos, LexRaw(open, body, &line_starting));
        continue;
      }
      Emit(kind == '{' ? TokenKind::kVarBegin : TokenKind::kBlockBegin, "", open);
      ASSIGN_OR_RETURN(pos, LexTag(open, body, kind == '{', &line_starting));
    }
    Emit(TokenKind::kEnd, "", src_.size());
    return std::move(tokens_);
  }

 private:
  size_t FindOpener(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  // After a tag's closing delimiter at `pos`: `-` strips all whitespace that follows;
  // otherwise trim_blocks drops one newline after a block or comment tag (not after `+`).
  size_t AfterClose(size_t pos, char close_sign, bool trims, bool* line_starting) {
    if (close_sign == '-') {
      const size_t n = LeadingSpaceBytes(std::string_view(src_).substr(pos));
      pos += n;
      *line_starting = n > 0 && src_[pos - 1] == '\n';
    } else if (trims && close_sign != '+' && pos < src_.size() && src_[pos] == '\n') {
      ++pos;
      *line_starting = true;
    } else {
      *line_starting = false;
    }
    return pos;
  }

  // `{% raw %}` (with optional signs): true if the tag at `body` is exactly that.
  bool IsRawStart(size_t body) const {
    size_t i = body;
    while (i < src_.size() && IsTagSpace(src_[i])) ++i;
    if (src_.compare(i, 3, "raw") != 0 || (i + 3 < src_.size() && IsNameChar(src_[i + 3]))) return false;
    i += 3;
    while (i < src_.size() && IsTagSpace(src_[i])) ++i;
    if (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) ++i;
    return src_.compare(i, 2, "%}") == 0;
  }

  StatusOr<size_t> LexRaw(size_t open, size_t body, bool* line_starting) {
    size_t i = src_.find("%}", body);
    const char close_sign = src_[i - 1];
    const size_t start = AfterClose(i + 2, close_sign, true, line_starting);
    // Find {% endraw %}.
    for (size_t j = src_.find("{%", start); j != std::string::npos; j = src_.find("{%", j + 2)) {
      size_t k = j + 2;
      const char sign = k < src_.size() ? src_[k] : '\0';
      if (sign == '-' || sign == '+') ++k;
      while (k < src_.size() && IsTagSpace(src_[k])) ++k;
      if (src_.compare(k, 6, "endraw") != 0) continue;
      k += 6;
      while (k < src_.size() && IsTagSpace(src_[k])) ++k;
      char end_sign = '\0';
      if (k < src_.size() && (src_[k] == '-' || src_[k] == '+')) end_sign = src_[k++];
      if (src_.compare(k, 2, "%}") != 0) continue;
      std::string_view text = std::string_view(src_).substr(start, j - start);
      if (sign == '-') text.remove_suffix(TrailingSpaceBytes(text));
      Emit(TokenKind::kText, std::string(text), start);
      return AfterClose(k + 2, end_sign, true, line_starting);
    }
    return Error(open, "unterminated raw block: no '{% endraw %}'");
  }

  // Lexes the inside of a {{ }} or {% %} tag starting at `pos`; returns the position after it.
  StatusOr<size_t> LexTag(size_t open, size_t pos, bool is_var, bool* line_starting) {
    int depth = 0;  // open brackets: a "}}" inside a dict literal does not end the tag
    for (;;) {
      while (pos < src_.size() && IsTagSpace(src_[pos])) ++pos;
      if (pos >= src_.size()) {
        return Error(open, is_var ? "unterminated '{{': no '}}'" : "unterminated '{%': no '%}'");
      }
      if (depth == 0) {
        const char* close = is_var ? "}}" : "%}";
        char close_sign = '\0';
        size_t at = pos;
        if ((src_[pos] == '-' || (!is_var && src_[pos] == '+')) && src_.compare(pos + 1, 2, close) == 0) {
          close_sign = src_[pos];
          at = pos + 1;
        }
        if (src_.compare(at, 2, close) == 0) {
          Emit(is_var ? TokenKind::kVarEnd : TokenKind::kBlockEnd, "", pos);
          return AfterClose(at + 2, close_sign, /*trims=*/!is_var, line_starting);
        }
      }
      const char c = src_[pos];
      if (IsNameStart(c)) {
        size_t end = pos;
        while (end < src_.size() && IsNameChar(src_[end])) ++end;
        Emit(TokenKind::kName, src_.substr(pos, end - pos), pos);
        pos = end;
      } else if (IsDigit(c)) {
        ASSIGN_OR_RETURN(pos, LexNumber(pos));
      } else if (c == '\'' || c == '"') {
        size_t end = pos + 1;
        while (end < src_.size() && src_[end] != c) end += src_[end] == '\\' ? 2 : 1;
        if (end >= src_.size()) return Error(pos, "unterminated string literal");
        Emit(TokenKind::kString, PythonUnescape(std::string_view(src_).substr(pos + 1, end - pos - 1)), pos);
        pos = end + 1;
      } else {
        static constexpr const char* kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* two : kTwo) {
          if (src_.compare(pos, 2, two) == 0) op = two;
        }
        if (op.empty()) {
          if (std::strchr("+-*/%~<>=()[]{},.:|", c) == nullptr || c == '\0') {
            return Error(pos, std::string("unexpected character '") + c + "' in a tag");
          }
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") ++depth;
        if (op == ")" || op == "]" || op == "}") {
          if (depth == 0) return Error(pos, "unbalanced '" + op + "'");
          --depth;
        }
        Emit(TokenKind::kOp, op, pos);
        pos += op.size();
      }
    }
  }

  StatusOr<size_t> LexNumber(size_t pos) {
    size_t end = pos;
    auto digits = [&] {
      while (end < src_.size() && (IsDigit(src_[end]) || (src_[end] == '_' && end + 1 < src_.size() && IsDigit(src_[end + 1])))) ++end;
    };
    digits();
    bool is_float = false;
    if (end + 1 < src_.size() && src_[end] == '.' && IsDigit(src_[end + 1])) {
      is_float = true;
      ++end;
      digits();
    }
    if (end < src_.size() && (src_[end] == 'e' || src_[end] == 'E')) {
      size_t e = end + 1;
      if (e < src_.size() && (src_[e] == '+' || src_[e] == '-')) ++e;
      if (e < src_.size() && IsDigit(src_[e])) {
        is_float = true;
        end = e;
        digits();
      }
    }
    std::string text;
    for (size_t i = pos; i < end; ++i) {
      if (src_[i] != '_') text.push_back(src_[i]);
    }
    Emit(is_float ? TokenKind::kFloat : TokenKind::kInt, std::move(text), pos);
    return end;
  }

  void Emit(TokenKind kind, std::string value, size_t offset) {
    if (kind == TokenKind::kText && value.empty()) return;
    Token t{kind, std::move(value), 1, 1};
    Locate(offset, &t.line, &t.column);
    tokens_.push_back(std::move(t));
  }

  void Locate(size_t offset, uint32_t* line, uint32_t* column) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    *line = static_cast<uint32_t>(it - line_starts_.begin()) + 1;
    *column = static_cast<uint32_t>(offset - (it == line_starts_.begin() ? 0 : *(it - 1))) + 1;
  }

  Status Error(size_t offset, const std::string& what) const {
    uint32_t line, column;
    Locate(offset, &line, &column);
    return InvalidArgumentError("line " + std::to_string(line) + ", column " +
                                std::to_string(column) + ": " + what);
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

StatusOr<std::vector<Token>> Tokenize(std::string_view source) {
  // As Jinja does: every newline sequence becomes "\n", and one trailing newline is dropped.
  std::string src;
  src.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      src.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      src.push_back(source[i]);
    }
  }
  if (!src.empty() && src.back() == '\n') src.pop_back();
  return Lexer(std::move(src)).Run();
}

}  // namespace llmasos::chat::jinja
