// Pull: download a GGUF model over HTTP(S) into the registry, resumably and safely.
//
// The download lives in `<home>/downloads/<key>.part` (key = a hash of the URL), never in
// blobs/, with a sidecar `<key>.json` recording the URL, the server's validators (ETag,
// Last-Modified) and the expected digest. A later pull of the same URL resumes with
// `Range: bytes=N-` and `If-Range`; it starts again from zero when the server answers 200, the
// ETag changed, the Content-Range is not the one asked for, or the server says 416. A dropped
// or stalled connection is resumed a few times within one pull.
//
// The file is hashed as it arrives; when complete it is checked against the expected digest
// (a mismatch deletes the download and registers nothing), fsynced, parsed as a GGUF, and then
// moved into blobs/ and recorded as a version in one step under the registry lock
// (Registry::AdoptFile), so no reader ever sees an unverified blob and recovery never sees a
// blob without its version.
//
// `<key>.lock` (flock) serializes pulls of the same URL: a second pull waits (bounded) and,
// when the first finished, uses its blob instead of downloading again.
//
// Thread safety: Pull may run concurrently from threads or processes; each call is independent.
#ifndef LLMASOS_SERVICES_REGISTRY_PULL_H_
#define LLMASOS_SERVICES_REGISTRY_PULL_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "services/registry/manifest.h"
#include "services/registry/registry.h"
#include "util/status.h"

namespace llmasos::registry {

inline constexpr uint64_t kDefaultPullMaxBytes = uint64_t{256} << 30;  // 256 GiB

struct PullRequest {
  std::string url;                     // http:// or https://
  std::string name;                    // "" = from the URL's file name (see NameFromUrl)
  std::optional<std::string> version;  // SemVer; default as for import
  std::optional<std::string> expected_digest;  // "sha256:<hex>"
  bool allow_private = false;  // allow loopback, private and link-local addresses
  uint64_t max_bytes = kDefaultPullMaxBytes;
  long connect_timeout_s = 30;
  long stall_timeout_s = 60;  // no byte for this long: the connection is dropped and resumed
  int max_attempts = 5;       // transfers per pull, counting resumes; restarts from zero
                              // (at most 3: a file that keeps changing) are not counted
  long lock_wait_s = 3600;    // how long to wait for another pull of the same URL
  // For crash tests: runs after the blob is in blobs/ and before its version is recorded.
  std::function<void()> after_blob_stored;
};

// For Ollama's /api/pull stream: {"status", "digest", "total", "completed"}.
struct PullProgress {
  std::string status;  // "waiting for another pull", "downloading", "resuming at N bytes",
                       // "restarting", "verifying sha256 digest", "writing manifest",
                       // "already present", "success"
  std::string digest;  // the expected digest while downloading (if given), then the real one
  uint64_t total = 0;  // bytes; 0 while unknown
  uint64_t completed = 0;
};
using PullProgressFn = std::function<void(const PullProgress&)>;

struct PullResult {
  Manifest manifest;
  bool already_present = false;  // a version of `name` already held this blob; nothing added
  uint64_t bytes_downloaded = 0;  // in this call (0 when resumed at the end or not needed)
};

// Downloads `request.url` and registers it as a new version of the name; `progress` is called
// on this thread. Errors: kInvalidArgument (URL, name, version, digest, not a GGUF),
// kFailedPrecondition (refused address, version exists), kDataLoss (digest mismatch, a server
// that keeps changing the file), kResourceExhausted (size limit, full disk; the path is
// named), kUnavailable (network, HTTP status, another pull of the URL still running after
// lock_wait_s). After kDataLoss, kResourceExhausted or kInvalidArgument nothing of the
// download is kept; after a network error the part file stays for the next pull to resume.
StatusOr<PullResult> Pull(Registry& registry, const PullRequest& request,
                          const PullProgressFn& progress = nullptr);

// The model name a URL suggests: its file name, lowercased, without ".gguf", with characters
// outside [a-z0-9._-] replaced by '-'. kInvalidArgument when nothing valid remains.
StatusOr<std::string> NameFromUrl(std::string_view url);

// Sizes for --max-size: bytes, or a whole number with K, M, G or T (binary multiples, an
// optional B or iB after it). kInvalidArgument for anything else, 0, or an overflow.
StatusOr<uint64_t> ParseByteSize(std::string_view text);

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_PULL_H_
