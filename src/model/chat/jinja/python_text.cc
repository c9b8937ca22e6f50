#include "model/chat/jinja/python_text.h"

#include <algorithm>
#include <array>

#include "util/utf8.h"

namespace llmasos::chat {
namespace {

// Decodes the code point starting at text[pos]; returns its byte length, or 0 if the bytes
// there are not valid UTF-8.
size_t DecodeAt(std::string_view text, size_t pos, uint32_t* cp) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t c = b(pos);
  size_t len;
  uint32_t v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    len = 2;
    v = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    v = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    v = c & 0x07;
  } else {
    return 0;
  }
  if (pos + len > text.size()) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((b(pos + i) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(pos + i) & 0x3F);
  }
  static constexpr std::array<uint32_t, 5> kMin = {0, 0, 0x80, 0x800, 0x10000};
  if (v < kMin[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool IsPythonSpace(uint32_t cp) {
  if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F)) return true;
  if (cp < 0x80) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

size_t LeadingSpaceBytes(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    uint32_t cp;
    const size_t len = DecodeAt(text, begin, &cp);
    if (len == 0 || !IsPythonSpace(cp)) break;
    begin += len;
  }
  return begin;
}

size_t TrailingSpaceBytes(std::string_view text) {
  size_t end = text.size();
  while (end > 0) {
    // Step back to the start of the last code point (at most 4 bytes).
    size_t start = end - 1;
    while (start > 0 && end - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) {
      --start;
    }
    uint32_t cp;
    const size_t len = DecodeAt(text, start, &cp);
    if (len != end - start || !IsPythonSpace(cp)) break;
    end = start;
  }
  return text.size() - end;
}

std::string PythonStrip(std::string_view text) {
  const size_t begin = LeadingSpaceBytes(text);
  text.remove_prefix(begin);
  text.remove_suffix(TrailingSpaceBytes(text));
  return std::string(text);
}

std::string PythonUnescape(std::string_view body) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 == body.size()) {
      out.push_back(body[i]);
      continue;
    }
    const char e = body[++i];
    switch (e) {
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case 'r': out.push_back('\r'); break;
      case 'a': out.push_back('\a'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'v': out.push_back('\v'); break;
      case '\\': out.push_back('\\'); break;
      case '\'': out.push_back('\''); break;
      case '"': out.push_back('"'); break;
      case '\n': break;  // line continuation
      case 'x':
      case 'u':
      case 'U': {
        const size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        uint32_t cp = 0;
        bool ok = i + digits < body.size();
        for (size_t k = 1; ok && k <= digits; ++k) {
          const int h = HexValue(body[i + k]);
          if (h < 0) ok = false;
          cp = cp * 16 + static_cast<uint32_t>(std::max(h, 0));
        }
        if (!ok || cp > 0x10FFFF) {
          out.push_back('\\');
          out.push_back(e);
          break;
        }
        AppendUtf8(cp, &out);
        i += digits;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = 0;
          size_t k = 0;
          while (k < 3 && i + k < body.size() && body[i + k] >= '0' && body[i + k] <= '7') {
            cp = cp * 8 + static_cast<uint32_t>(body[i + k] - '0');
            ++k;
          }
          AppendUtf8(cp, &out);
          i += k - 1;
        } else {
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}


}  // namespace llmasos::chat
