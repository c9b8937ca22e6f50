#include "model/chat/jinja/text.h"

#include <algorithm>

namespace llmasos::chat::jinja {

Text::Text(std::string s, bool is_content) : s_(std::move(s)) {
  if (is_content && !s_.empty()) content_.emplace_back(0, s_.size());
}

void Text::MarkContent(size_t begin, size_t end) {
  if (begin >= end) return;
  // Appends only ever extend the string, so a new range starts at or after the last one.
  if (!content_.empty() && content_.back().second >= begin) {
    content_.back().second = std::max(content_.back().second, end);
  } else {
    content_.emplace_back(begin, end);
  }
}

void Text::Append(std::string_view s, bool is_content) {
  const size_t begin = s_.size();
  s_.append(s);
  if (is_content) MarkContent(begin, s_.size());
}

void Text::AppendSlice(const Text& other, size_t pos, size_t len) {
  if (&other == this) {
    const Text copy = other;
    AppendSlice(copy, pos, len);
    return;
  }
  len = std::min(len, other.size() - pos);
  const size_t base = s_.size();
  s_.append(other.s_, pos, len);
  const size_t end = pos + len;
  for (const auto& [b, e] : other.content_) {
    if (e <= pos) continue;
    if (b >= end) break;
    MarkContent(base + std::max(b, pos) - pos, base + std::min(e, end) - pos);
  }
}

Text Text::Slice(size_t pos, size_t len) const {
  Text out;
  if (pos <= s_.size()) out.AppendSlice(*this, pos, len);
  return out;
}

}  // namespace llmasos::chat::jinja
