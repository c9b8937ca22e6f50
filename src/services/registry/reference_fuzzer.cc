// Fuzzes reference, version and range parsing and the validators: nothing crashes, every
// accepted reference prints to text that parses back to the same reference, and every
// accepted name or digest is one the store could use as a file name component.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "services/registry/reference.h"
#include "services/registry/validate.h"
#include "util/logging.h"

using namespace llmasos::registry;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ref = ParseReference(text);
  if (ref.ok()) {
    CHECK(ValidateName(ref->name).ok());
    CHECK(ref->name.find("..") == std::string::npos);
    CHECK(ref->name.empty() || ref->name[0] != '/');
    if (ref->kind == Reference::Kind::kTag) CHECK(ValidateTag(ref->tag).ok());
    auto again = ParseReference(ref->ToString());
    CHECK(again.ok()) << again.status().ToString();
    CHECK(again->ToString() == ref->ToString());
  }
  auto v = ParseVersion(text);
  if (v.ok()) {
    auto again = ParseVersion(v->ToString());
    CHECK(again.ok() && ComparePrecedence(*v, *again) == 0 && again->ToString() == text);
    auto exact = VersionRange::Exactly(*v);
    CHECK(exact.Matches(*v));
  }
  auto range = VersionRange::Parse(text);
  (void)range;
  if (ValidateDigest(text).ok()) {
    std::string file = BlobFileName(text);
    CHECK(file.find('/') == std::string::npos && file.size() == 7 + 64);
  }
  (void)QuoteForMessage(text);
  return 0;
}
