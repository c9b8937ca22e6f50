// Text: a string that remembers which of its bytes came from message content.
//
// A chat template mixes its own text (whose special tokens, "<|im_start|>", must become special
// tokens) with text the caller supplied (message content, tool definitions), in which the same
// characters must stay plain text so a message cannot forge a turn. Every string value in the
// interpreter is a Text, and every operation keeps the marks: slicing, concatenation, strip,
// replace, split and join keep them byte for byte; an operation that rewrites characters
// (upper, title, ...) marks its whole result as content if any input byte was content, which
// errs on the side of plain text.
//
// Invariant: content_ holds sorted, disjoint, non-adjacent, non-empty [begin, end) byte ranges
// within str().
#ifndef LLMASOS_MODEL_CHAT_JINJA_TEXT_H_
#define LLMASOS_MODEL_CHAT_JINJA_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmasos::chat::jinja {

class Text {
 public:
  Text() = default;
  explicit Text(std::string s, bool is_content = false);

  const std::string& str() const { return s_; }
  size_t size() const { return s_.size(); }
  bool empty() const { return s_.empty(); }

  void Append(std::string_view s, bool is_content);
  void Append(const Text& other) { AppendSlice(other, 0, other.size()); }
  // Appends other.str().substr(pos, len) with its marks. REQUIRES: pos <= other.size().
  void AppendSlice(const Text& other, size_t pos, size_t len);
  Text Slice(size_t pos, size_t len) const;

  // The same text with every byte passed through f (a length-preserving rewrite such as ASCII
  // case mapping), marks unchanged.
  template <typename F>
  Text MapBytes(F&& f) const {
    Text out = *this;
    for (char& c : out.s_) c = f(c);
    return out;
  }

  bool AnyContent() const { return !content_.empty(); }
  // [begin, end) byte ranges of content.
  const std::vector<std::pair<size_t, size_t>>& content_ranges() const { return content_; }

  // Calls f(std::string_view run, bool is_content) for maximal runs of one kind, in order.
  template <typename F>
  void ForEachRun(F&& f) const {
    size_t pos = 0;
    for (const auto& [b, e] : content_) {
      if (b > pos) f(std::string_view(s_).substr(pos, b - pos), false);
      f(std::string_view(s_).substr(b, e - b), true);
      pos = e;
    }
    if (pos < s_.size()) f(std::string_view(s_).substr(pos), false);
  }

 private:
  void MarkContent(size_t begin, size_t end);

  std::string s_;
  std::vector<std::pair<size_t, size_t>> content_;
};

}  // namespace llmasos::chat::jinja

#endif  // LLMASOS_MODEL_CHAT_JINJA_TEXT_H_
