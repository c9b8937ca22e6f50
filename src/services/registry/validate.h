// Validation of everything that names a file in the store, done before any path is built.
//
//   digest  ^sha256:[0-9a-f]{64}$
//   name    one or two segments joined by '/' (a namespace), at most kMaxNameBytes; each
//           segment starts with [a-z0-9] and continues with [a-z0-9._-]; no "..".
//   tag     one segment of at most kMaxTagBytes, same characters, no "..".
// Errors are kInvalidArgument and quote the input with control characters and non-ASCII
// bytes escaped, so a hostile name cannot write to the user's terminal.
//
// Thread safety: pure functions.
#ifndef LLMASOS_SERVICES_REGISTRY_VALIDATE_H_
#define LLMASOS_SERVICES_REGISTRY_VALIDATE_H_

#include <string>
#include <string_view>

#include "util/status.h"

namespace llmasos::registry {

inline constexpr size_t kMaxNameBytes = 128;
inline constexpr size_t kMaxTagBytes = 64;
inline constexpr std::string_view kDigestPrefix = "sha256:";

Status ValidateDigest(std::string_view digest);
Status ValidateName(std::string_view name);
Status ValidateTag(std::string_view tag);

// 'text' in single quotes, with bytes outside printable ASCII as \xNN and anything past
// 80 bytes elided; for error messages.
std::string QuoteForMessage(std::string_view text);

// "sha256:<hex>" -> "sha256-<hex>", the blob's file name. REQUIRES: ValidateDigest(digest).ok().
std::string BlobFileName(std::string_view digest);

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_VALIDATE_H_
