#include "model/chat/jinja/python_text.h"

#include <gtest/gtest.h>

namespace llmasos::chat {
namespace {

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

TEST(PythonUnescapeTest, DecodesAsPythonsUnicodeEscapeCodec) {
  EXPECT_EQ(PythonUnescape(R"(a\nb\t\'\"\\)"), "a\nb\t'\"\\");
  EXPECT_EQ(PythonUnescape(R"(\u00e9\x41\101\U0001F600)"), "\u00e9AA\U0001F600");
  // Unknown or malformed escapes keep their backslash.
  EXPECT_EQ(PythonUnescape(R"(\q\x4)"), "\\q\\x4");
}

}  // namespace
}  // namespace llmasos::chat
