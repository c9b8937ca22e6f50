#include "services/registry/validate.h"

#include <cstdio>

namespace llmasos::registry {
namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsSegmentChar(char c) { return IsLowerAlnum(c) || c == '.' || c == '_' || c == '-'; }

std::string DescribeByte(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  char buf[16];
  if (u < 0x20 || u >= 0x7f) {
    std::snprintf(buf, sizeof(buf), "byte 0x%02x", u);
  } else {
    std::snprintf(buf, sizeof(buf), "'%c'", c);
  }
  return buf;
}

// Checks one segment of a name or a tag. `what` is "model name", "tag", ...
Status ValidateSegment(std::string_view what, std::string_view whole, std::string_view segment,
                       size_t offset) {
  if (segment.empty()) {
    return InvalidArgumentError(std::string(what) + " " + QuoteForMessage(whole) +
                                " has an empty part at byte " + std::to_string(offset));
  }
  if (!IsLowerAlnum(segment[0])) {
    return InvalidArgumentError(std::string(what) + " " + QuoteForMessage(whole) + " has " +
                                DescribeByte(segment[0]) + " at byte " + std::to_string(offset) +
                                "; each part must start with a lowercase letter or digit" +
                                ((segment[0] >= 'A' && segment[0] <= 'Z') ? " (use lowercase)" : ""));
  }
  for (size_t i = 0; i < segment.size(); ++i) {
    if (!IsSegmentChar(segment[i])) {
      std::string hint = (segment[i] >= 'A' && segment[i] <= 'Z') ? " (use lowercase)" : "";
      return InvalidArgumentError(std::string(what) + " " + QuoteForMessage(whole) + " has " +
                                  DescribeByte(segment[i]) + " at byte " +
                                  std::to_string(offset + i) +
                                  "; allowed are a-z, 0-9, '.', '_' and '-'" + hint);
    }
  }
  return OkStatus();
}

}  // namespace

std::string QuoteForMessage(std::string_view text) {
  constexpr size_t kMaxShown = 80;
  std::string out = "'";
  for (size_t i = 0; i < text.size() && i < kMaxShown; ++i) {
    unsigned char u = static_cast<unsigned char>(text[i]);
    if (u < 0x20 || u >= 0x7f || u == '\\' || u == '\'') {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", u);
      out += buf;
    } else {
      out += static_cast<char>(u);
    }
  }
  if (text.size() > kMaxShown) out += "...(" + std::to_string(text.size()) + " bytes)";
  out += "'";
  return out;
}

Status ValidateDigest(std::string_view digest) {
  if (digest.substr(0, kDigestPrefix.size()) != kDigestPrefix) {
    return InvalidArgumentError("digest " + QuoteForMessage(digest) +
                                " does not start with 'sha256:'");
  }
  std::string_view hex = digest.substr(kDigestPrefix.size());
  if (hex.size() != 64) {
    return InvalidArgumentError("digest " + QuoteForMessage(digest) + " has " +
                                std::to_string(hex.size()) +
                                " hex digits after 'sha256:'; a SHA-256 digest has 64");
  }
  for (size_t i = 0; i < hex.size(); ++i) {
    char c = hex[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return InvalidArgumentError("digest " + QuoteForMessage(digest) + " has " + DescribeByte(c) +
                                  " at byte " + std::to_string(kDigestPrefix.size() + i) +
                                  "; expected a lowercase hex digit");
    }
  }
  return OkStatus();
}

Status ValidateName(std::string_view name) {
  if (name.empty()) return InvalidArgumentError("model name is empty");
  if (name.size() > kMaxNameBytes) {
    return InvalidArgumentError("model name " + QuoteForMessage(name) + " is " +
                                std::to_string(name.size()) + " bytes; the limit is " +
                                std::to_string(kMaxNameBytes));
  }
  if (name.find("..") != std::string_view::npos) {
    return InvalidArgumentError("model name " + QuoteForMessage(name) + " contains '..'");
  }
  if (name[0] == '/') {
    return InvalidArgumentError("model name " + QuoteForMessage(name) +
                                " starts with '/'; names are not paths");
  }
  size_t slash = name.find('/');
  if (slash == std::string_view::npos) return ValidateSegment("model name", name, name, 0);
  if (name.find('/', slash + 1) != std::string_view::npos) {
    return InvalidArgumentError("model name " + QuoteForMessage(name) +
                                " has more than one '/'; at most one namespace is allowed");
  }
  RETURN_IF_ERROR(ValidateSegment("model name", name, name.substr(0, slash), 0));
  return ValidateSegment("model name", name, name.substr(slash + 1), slash + 1);
}

Status ValidateTag(std::string_view tag) {
  if (tag.empty()) return InvalidArgumentError("tag is empty");
  if (tag.size() > kMaxTagBytes) {
    return InvalidArgumentError("tag " + QuoteForMessage(tag) + " is " + std::to_string(tag.size()) +
                                " bytes; the limit is " + std::to_string(kMaxTagBytes));
  }
  if (tag.find("..") != std::string_view::npos) {
    return InvalidArgumentError("tag " + QuoteForMessage(tag) + " contains '..'");
  }
  return ValidateSegment("tag", tag, tag, 0);
}

std::string BlobFileName(std::string_view digest) {
  CHECK(ValidateDigest(digest).ok()) << "unvalidated digest";
  return "sha256-" + std::string(digest.substr(kDigestPrefix.size()));
}

}  // namespace llmasos::registry
