#include "services/registry/http_fetch.h"

#include <curl/curl.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <mutex>

#include "services/registry/address_policy.h"

namespace llmasos::registry {
namespace {

void GlobalInitOnce() {
  static std::once_flag once;
  std::call_once(once, [] { CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK); });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// Only plain decimal digits: from_chars alone would accept a leading '-' or stop early.
std::optional<uint64_t> ParseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 20 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

struct CurlUrl {
  CURLU* h = curl_url();
  ~CurlUrl() { curl_url_cleanup(h); }
  std::optional<std::string> Get(CURLUPart part, unsigned flags = 0) const {
    char* out = nullptr;
    if (curl_url_get(h, part, &out, flags) != CURLUE_OK || out == nullptr) return std::nullopt;
    std::string s(out);
    curl_free(out);
    return s;
  }
};

// State shared with curl's callbacks for one transfer.
struct Transfer {
  FetchSink* sink = nullptr;
  bool allow_private = false;
  std::string refused;  // why a socket was refused, for the error message
  FetchResponse response;
  bool in_headers = false;
  bool has_location = false;
  bool delivered = false;
  Status sink_status;
};

curl_socket_t OpenSocket(void* clientp, curlsocktype purpose, curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(clientp);
  if (!t->allow_private) {
    auto cls = ClassifyAddress(&address->addr, address->addrlen);
    if (!cls.ok() || *cls != AddressClass::kPublic) {
      t->refused = AddressText(&address->addr, address->addrlen) + " (" +
                   (cls.ok() ? std::string(AddressClassName(*cls)) : cls.status().message()) + ")";
      return CURL_SOCKET_BAD;
    }
  }
  return ::socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

// A validator is sent back in If-Range, so anything that could break a header line (a stray
// CR, control bytes) or is implausibly long makes it no validator at all.
std::string Validator(std::string_view value, size_t max_bytes) {
  if (value.size() > max_bytes) return "";
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) return "";
  }
  return std::string(value);
}

size_t OnHeader(char* data, size_t size, size_t count, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  size_t bytes = size * count;
  std::string_view line(data, bytes);
  if (line.substr(0, 5) == "HTTP/") {
    // A new response (the first, or one after a redirect or a 100 Continue).
    t->response = FetchResponse{};
    t->has_location = false;
    t->in_headers = true;
    std::string_view rest = line.substr(line.find(' ') == std::string_view::npos ? line.size() : line.find(' ') + 1);
    auto code = ParseDecimal(Trim(rest.substr(0, 3)));
    t->response.status = code ? static_cast<long>(*code) : 0;
    return bytes;
  }
  if (!t->in_headers) return bytes;
  if (Trim(line).empty()) {
    t->in_headers = false;
    long s = t->response.status;
    // Interim and followed-redirect responses carry no body for us.
    bool interim = (s >= 100 && s < 200) || (s >= 300 && s < 400 && t->has_location);
    if (!interim && !t->delivered) {
      t->delivered = true;
      t->sink_status = t->sink->OnResponse(t->response);
      if (!t->sink_status.ok()) return 0;  // aborts the transfer
    }
    return bytes;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return bytes;
  std::string_view name = Trim(line.substr(0, colon));
  std::string_view value = Trim(line.substr(colon + 1));
  if (EqualsIgnoreCase(name, "content-length")) {
    t->response.content_length = ParseDecimal(value);
  } else if (EqualsIgnoreCase(name, "content-range")) {
    t->response.content_range_text = std::string(value.substr(0, 200));
    auto cr = ParseContentRange(value);
    if (cr.ok()) t->response.content_range = *cr;
  } else if (EqualsIgnoreCase(name, "etag")) {
    t->response.etag = Validator(value, 1024);
  } else if (EqualsIgnoreCase(name, "last-modified")) {
    t->response.last_modified = Validator(value, 256);
  } else if (EqualsIgnoreCase(name, "location")) {
    t->has_location = true;
  }
  return bytes;
}

size_t OnWrite(char* data, size_t size, size_t count, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  size_t bytes = size * count;
  if (!t->delivered) {
    // Headers should have ended first; be safe if curl reports them differently.
    t->delivered = true;
    t->sink_status = t->sink->OnResponse(t->response);
    if (!t->sink_status.ok()) return 0;
  }
  t->sink_status = t->sink->OnBody({reinterpret_cast<const uint8_t*>(data), bytes});
  return t->sink_status.ok() ? bytes : 0;
}

bool IsTransient(CURLcode rc) {
  switch (rc) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

}  // namespace

StatusOr<ParsedUrl> ParseHttpUrl(std::string_view url) {
  GlobalInitOnce();
  std::string text(url);
  if (text.empty() || text.size() > 8192 ||
      std::any_of(text.begin(), text.end(), [](unsigned char c) { return c <= 0x20 || c == 0x7f; })) {
    return InvalidArgumentError("not a usable URL: " + std::string(text.empty() ? "''" : "'" + text.substr(0, 200) + "'") +
                                " (no spaces or control characters, at most 8192 bytes)");
  }
  CurlUrl u;
  if (u.h == nullptr) return InternalError("curl_url failed");
  // No default scheme: "example.com/x.gguf" is refused rather than guessed.
  if (CURLUcode rc = curl_url_set(u.h, CURLUPART_URL, text.c_str(), 0); rc != CURLUE_OK) {
    return InvalidArgumentError("not a valid URL '" + text + "': " + curl_url_strerror(rc));
  }
  ParsedUrl out;
  out.scheme = u.Get(CURLUPART_SCHEME).value_or("");
  std::transform(out.scheme.begin(), out.scheme.end(), out.scheme.begin(), ::tolower);
  if (out.scheme != "http" && out.scheme != "https") {
    return InvalidArgumentError("URL '" + text + "' has scheme '" + out.scheme +
                                "'; only http and https are supported");
  }
  out.host = u.Get(CURLUPART_HOST).value_or("");
  if (out.host.empty()) return InvalidArgumentError("URL '" + text + "' has no host");
  std::string path = u.Get(CURLUPART_PATH, CURLU_URLDECODE).value_or("/");
  size_t slash = path.rfind('/');
  out.file_name = slash == std::string::npos ? path : path.substr(slash + 1);
  return out;
}

StatusOr<ContentRange> ParseContentRange(std::string_view value) {
  auto bad = [&] {
    return InvalidArgumentError("malformed Content-Range '" + std::string(value.substr(0, 100)) + "'");
  };
  value = Trim(value);
  if (value.substr(0, 6) != "bytes ") return bad();
  value.remove_prefix(6);
  size_t slash = value.find('/');
  if (slash == std::string_view::npos) return bad();
  std::string_view range = Trim(value.substr(0, slash));
  std::string_view total = Trim(value.substr(slash + 1));
  ContentRange cr;
  if (total != "*") {
    cr.total = ParseDecimal(total);
    if (!cr.total) return bad();
  }
  if (range == "*") {
    if (!cr.total) return bad();  // "bytes */*" says nothing
    return cr;
  }
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) return bad();
  cr.first = ParseDecimal(range.substr(0, dash));
  cr.last = ParseDecimal(range.substr(dash + 1));
  if (!cr.first || !cr.last || *cr.last < *cr.first) return bad();
  if (cr.total && *cr.last >= *cr.total) return bad();
  return cr;
}

FetchResult Fetch(const FetchOptions& options, FetchSink& sink) {
  GlobalInitOnce();
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return {InternalError("curl_easy_init failed"), FetchFailure::kPermanent};
  struct Cleanup {
    CURL* curl;
    curl_slist* headers = nullptr;
    ~Cleanup() {
      curl_slist_free_all(headers);
      curl_easy_cleanup(curl);
    }
  } cleanup{curl};

  Transfer t;
  t.sink = &sink;
  t.allow_private = options.allow_private;
  char errbuf[CURL_ERROR_SIZE] = "";
  std::string range;
  curl_easy_setopt(curl, CURLOPT_URL, options.url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, options.max_redirects);
  // A proxy would be the address connected to, hiding the real one from the policy.
  curl_easy_setopt(curl, CURLOPT_PROXY, "");
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, options.stall_timeout_s);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "llmasos-pull/1");
  if (!options.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, OpenSocket);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &t);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnWrite);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  std::vector<std::string> headers = options.headers;
  if (options.range_from > 0) {
    range = std::to_string(options.range_from) + "-";
    curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
    if (!options.if_range.empty()) headers.push_back("If-Range: " + options.if_range);
  }
  if (options.method != "GET") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, options.method.c_str());
  if (!options.body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, options.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(options.body.size()));
    headers.push_back("Content-Type: application/json");
  }
  for (const std::string& h : headers) cleanup.headers = curl_slist_append(cleanup.headers, h.c_str());
  if (cleanup.headers != nullptr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, cleanup.headers);

  CURLcode rc = curl_easy_perform(curl);
  if (!t.sink_status.ok()) return {t.sink_status, FetchFailure::kPermanent};
  if (!t.refused.empty() && rc != CURLE_OK) {
    return {FailedPreconditionError("refusing to connect to " + t.refused + " for '" + options.url +
                                    "': only public addresses are allowed unless --allow-private is given"),
            FetchFailure::kPermanent};
  }
  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    Status s = UnavailableError("fetching '" + options.url + "': " + detail);
    return {s, IsTransient(rc) ? FetchFailure::kTransient : FetchFailure::kPermanent};
  }
  if (!t.delivered) {
    t.delivered = true;
    if (Status s = sink.OnResponse(t.response); !s.ok()) return {s, FetchFailure::kPermanent};
  }
  return {OkStatus(), FetchFailure::kNone};
}

}  // namespace llmasos::registry
