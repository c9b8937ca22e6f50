#include "model/chat/jinja/strings.h"

#include <algorithm>

#include "model/chat/jinja/python_text.h"
#include "util/utf8.h"

namespace llmasos::chat::jinja {
namespace {

bool IsAsciiLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
char ToUpper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; }
char ToLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

uint32_t CodePointAt(std::string_view s, size_t begin, size_t end) {
  const Utf8Step step = ScanUtf8(s.substr(begin, end - begin));
  if (step.kind != Utf8Kind::kValid) return 0xFFFFFFFF;
  return DecodeUtf8(s.substr(begin), step.length);
}

}  // namespace

std::vector<size_t> CodePointStarts(std::string_view s) {
  std::vector<size_t> starts;
  size_t i = 0;
  while (i < s.size()) {
    starts.push_back(i);
    const Utf8Step step = ScanUtf8(s.substr(i));
    i += step.kind == Utf8Kind::kValid ? step.length : 1;
  }
  starts.push_back(s.size());
  return starts;
}

Text Strip(const Text& s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::string& str = s.str();
  if (!chars) {
    const size_t begin = left ? LeadingSpaceBytes(str) : 0;
    const size_t end = right ? str.size() - TrailingSpaceBytes(std::string_view(str).substr(begin)) : str.size();
    return s.Slice(begin, end - begin);
  }
  const std::vector<size_t> set_starts = CodePointStarts(*chars);
  auto in_set = [&](std::string_view cp) {
    for (size_t k = 0; k + 1 < set_starts.size(); ++k) {
      if (std::string_view(*chars).substr(set_starts[k], set_starts[k + 1] - set_starts[k]) == cp) return true;
    }
    return false;
  };
  const std::vector<size_t> starts = CodePointStarts(str);
  size_t b = 0, e = starts.size() - 1;  // code point indices [b, e)
  if (left) {
    while (b < e && in_set(std::string_view(str).substr(starts[b], starts[b + 1] - starts[b]))) ++b;
  }
  if (right) {
    while (e > b && in_set(std::string_view(str).substr(starts[e - 1], starts[e] - starts[e - 1]))) --e;
  }
  return s.Slice(starts[b], starts[e] - starts[b]);
}

std::vector<Text> Split(const Text& s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<Text> out;
  const std::string& str = s.str();
  if (sep) {
    size_t pos = 0;
    for (;;) {
      const size_t hit = (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit)
                             ? str.find(*sep, pos) : std::string::npos;
      if (hit == std::string::npos) {
        out.push_back(s.Slice(pos, str.size() - pos));
        return out;
      }
      out.push_back(s.Slice(pos, hit - pos));
      pos = hit + sep->size();
    }
  }
  const std::vector<size_t> starts = CodePointStarts(str);
  auto is_space = [&](size_t k) {
    return IsPythonSpace(CodePointAt(str, starts[k], starts[k + 1]));
  };
  size_t k = 0;
  const size_t n = starts.size() - 1;
  for (;;) {
    while (k < n && is_space(k)) ++k;
    if (k == n) return out;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      out.push_back(s.Slice(starts[k], str.size() - starts[k]));  // the rest, as it is
      return out;
    }
    const size_t word = k;
    while (k < n && !is_space(k)) ++k;
    out.push_back(s.Slice(starts[word], starts[k] - starts[word]));
  }
}

Text Replace(const Text& s, std::string_view old_text, const Text& new_text, int64_t count) {
  const std::string& str = s.str();
  Text out;
  if (old_text.empty()) {
    // Python inserts the replacement before every code point and at the end.
    const std::vector<size_t> starts = CodePointStarts(str);
    int64_t done = 0;
    for (size_t k = 0; k + 1 < starts.size(); ++k) {
      if (count < 0 || done < count) {
        out.Append(new_text);
        ++done;
      }
      out.AppendSlice(s, starts[k], starts[k + 1] - starts[k]);
    }
    if (count < 0 || done < count) out.Append(new_text);
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t hit = str.find(old_text, pos);
    if (hit == std::string::npos) break;
    out.AppendSlice(s, pos, hit - pos);
    out.Append(new_text);
    pos = hit + old_text.size();
    ++done;
  }
  out.AppendSlice(s, pos, str.size() - pos);
  return out;
}

std::vector<Text> SplitLines(const Text& s) {
  std::vector<Text> out;
  const std::string& str = s.str();
  const std::vector<size_t> starts = CodePointStarts(str);
  size_t line = 0;
  for (size_t k = 0; k + 1 < starts.size(); ++k) {
    const uint32_t cp = CodePointAt(str, starts[k], starts[k + 1]);
    const bool is_break = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C ||
                          cp == 0x1D || cp == 0x1E || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (!is_break) continue;
    out.push_back(s.Slice(line, starts[k] - line));
    line = starts[k + 1];
    if (cp == '\r' && line < str.size() && str[line] == '\n') {
      ++k;
      line = starts[k + 1];
    }
  }
  if (line < str.size()) out.push_back(s.Slice(line, str.size() - line));
  return out;
}

Text Upper(const Text& s) { return s.MapBytes(ToUpper); }
Text Lower(const Text& s) { return s.MapBytes(ToLower); }

Text Capitalize(const Text& s) {
  bool first = true;
  return s.MapBytes([&](char c) {
    const char r = first ? ToUpper(c) : ToLower(c);
    first = false;
    return r;
  });
}

Text TitleMethod(const Text& s) {
  bool prev_letter = false;
  return s.MapBytes([&](char c) {
    const char r = IsAsciiLetter(c) ? (prev_letter ? ToLower(c) : ToUpper(c)) : c;
    // Non-ASCII bytes (letters in other scripts) count as letters, as Python's are cased.
    prev_letter = IsAsciiLetter(c) || static_cast<unsigned char>(c) >= 0x80;
    return r;
  });
}

Text TitleFilter(const Text& s) {
  bool word_start = true;
  return s.MapBytes([&](char c) {
    const bool sep = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
                     c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) {
      word_start = true;
      return c;
    }
    const char r = word_start ? ToUpper(c) : ToLower(c);
    word_start = false;
    return r;
  });
}

}  // namespace llmasos::chat::jinja
