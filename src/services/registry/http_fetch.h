// One HTTP(S) GET through libcurl, streamed to a sink, with the safety rails a pull needs:
// only http and https (also on redirects), a bounded number of redirects, a connect timeout,
// a stall timeout (no bytes for `stall_timeout_s` aborts), no proxies from the environment,
// and an address policy checked on every socket curl opens (address_policy.h), so neither a
// redirect nor a DNS answer that changes between lookups reaches a refused address.
//
// Thread safety: Fetch may run on several threads at once (one curl handle per call).
#ifndef LLMASOS_SERVICES_REGISTRY_HTTP_FETCH_H_
#define LLMASOS_SERVICES_REGISTRY_HTTP_FETCH_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace llmasos::registry {

// The parts of a URL a pull needs. kInvalidArgument for anything but an absolute http(s) URL
// with a host.
struct ParsedUrl {
  std::string scheme;     // "http" or "https"
  std::string host;
  std::string file_name;  // last path segment, percent-decoded; "" when the path ends in '/'
};
StatusOr<ParsedUrl> ParseHttpUrl(std::string_view url);

// "bytes first-last/total" (total may be "*") or, in a 416, "bytes */total".
struct ContentRange {
  std::optional<uint64_t> first, last;  // both set or both empty
  std::optional<uint64_t> total;
};
StatusOr<ContentRange> ParseContentRange(std::string_view value);

struct FetchOptions {
  std::string url;
  // > 0: ask for `Range: bytes=range_from-`, with `If-Range: if_range` when that is not empty.
  uint64_t range_from = 0;
  std::string if_range;
  bool allow_private = false;
  // Another method than GET (the shell's calls to a daemon: DELETE, PATCH, PUT, POST), its
  // body (sent as application/json when not empty) and extra "Name: value" headers.
  std::string method = "GET";
  std::string body;
  std::vector<std::string> headers;
  long connect_timeout_s = 30;
  long stall_timeout_s = 60;
  long max_redirects = 8;
  // https: the CA certificates to verify the server against ("" = the system's).
  std::string ca_file;
};

// The final response's status and headers (after redirects).
struct FetchResponse {
  long status = 0;
  std::optional<uint64_t> content_length;
  std::optional<ContentRange> content_range;  // set when the header was present and parsed
  std::string content_range_text;             // the raw header, for messages
  std::string etag;           // "" when absent or unusable as a validator (control bytes)
  std::string last_modified;
};

class FetchSink {
 public:
  virtual ~FetchSink() = default;
  // Called once, before any body byte, with the final response's headers. A non-OK status
  // stops the transfer and is what Fetch returns.
  virtual Status OnResponse(const FetchResponse& response) = 0;
  // The body, in order. A non-OK status stops the transfer and is what Fetch returns.
  virtual Status OnBody(std::span<const uint8_t> bytes) = 0;
};

// How a failed fetch may be retried.
enum class FetchFailure {
  kNone,
  kTransient,  // connection dropped, stalled, reset: worth resuming
  kPermanent,  // refused address, bad URL, TLS failure, too many redirects, sink error
};

struct FetchResult {
  Status status;
  FetchFailure failure = FetchFailure::kNone;
};

// Runs the request. OK when the whole body arrived (curl saw the end of the response); the
// sink has then seen OnResponse once (also for an empty body).
FetchResult Fetch(const FetchOptions& options, FetchSink& sink);

}  // namespace llmasos::registry

#endif  // LLMASOS_SERVICES_REGISTRY_HTTP_FETCH_H_
