#include "shell/daemon_client.h"

#include <cstdio>
#include <cstdlib>
#include <span>

#include "services/registry/http_fetch.h"

namespace llmasos::shell {

using nlohmann::json;

namespace {

// The key the calls present: --api-key, else $LLMASOS_API_KEY, else "" (none).
std::string ApiKey(const DaemonFlags& f) {
  if (!f.api_key.empty()) return f.api_key;
  const char* env = std::getenv("LLMASOS_API_KEY");
  return env != nullptr ? env : "";
}

}  // namespace

std::string BaseUrl(const DaemonFlags& f) {
  std::string scheme = "http";
  std::string host = "127.0.0.1";
  int port = 8080;
  // "[SCHEME://]HOST[:PORT]": the scheme, if any, is taken off first.
  auto take_scheme = [&scheme](std::string v) {
    if (const size_t sep = v.find("://"); sep != std::string::npos) {
      scheme = v.substr(0, sep);
      v = v.substr(sep + 3);
    }
    return v;
  };
  if (const char* env = std::getenv("LLMASOS_HOST"); env != nullptr && *env != '\0') {
    std::string v = take_scheme(env);
    const size_t colon = v.rfind(':');
    if (colon != std::string::npos && colon + 1 < v.size()) {
      host = v.substr(0, colon);
      port = std::atoi(v.c_str() + colon + 1);
    } else {
      host = v;
    }
  }
  if (!f.host.empty()) host = take_scheme(f.host);
  if (f.port != 0) port = f.port;
  return scheme + "://" + host + ":" + std::to_string(port);
}

namespace {

class Collect : public registry::FetchSink {
 public:
  Status OnResponse(const registry::FetchResponse& r) override {
    status = r.status;
    return OkStatus();
  }
  Status OnBody(std::span<const uint8_t> bytes) override {
    if (body.size() + bytes.size() > (size_t{64} << 20)) return ResourceExhaustedError("answer over 64 MiB");
    body.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return OkStatus();
  }
  long status = 0;
  std::string body;
};

}  // namespace

namespace {

// The error message in a daemon's error body (OpenAI's or Ollama's shape), else the body.
std::string ErrorMessage(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error")) {
    if (j["error"].is_object()) return j["error"].value("message", "");
    if (j["error"].is_string()) return j["error"].get<std::string>();
  }
  return body.substr(0, 512);
}

}  // namespace

StatusOr<std::string> CallText(const DaemonFlags& f, const std::string& method, const std::string& path,
                               const std::string& body) {
  registry::FetchOptions o;
  const std::string base = BaseUrl(f);
  const bool https = base.starts_with("https://");
  if (!https && !base.starts_with("http://")) {
    return InvalidArgumentError("the daemon's address " + base + " (--host or LLMASOS_HOST) has a scheme other "
                                "than http:// or https://");
  }
  o.url = base + path;
  o.ca_file = f.cacert;
  if (o.ca_file.empty()) {
    if (const char* env = std::getenv("LLMASOS_CACERT"); env != nullptr) o.ca_file = env;
  }
  o.method = method;
  o.body = body;
  o.allow_private = true;  // the daemon is usually on loopback
  o.connect_timeout_s = 5;
  o.stall_timeout_s = 30;
  o.max_redirects = 0;
  const std::string key = ApiKey(f);
  // A key is one header line: a CR or LF in it would smuggle another header.
  if (key.find_first_of("\r\n") != std::string::npos) {
    return InvalidArgumentError("the API key (--api-key or LLMASOS_API_KEY) contains a line break");
  }
  if (!key.empty()) o.headers.push_back("Authorization: Bearer " + key);
  Collect sink;
  registry::FetchResult r = registry::Fetch(o, sink);
  if (!r.status.ok()) {
    return UnavailableError("cannot reach the daemon at " + base + " (is `llmasos serve` running there? " +
                            "--host/--port or LLMASOS_HOST=[https://]HOST:PORT say where" +
                            (https ? "; a certificate that is not signed by a system CA needs --cacert FILE or "
                                     "LLMASOS_CACERT=FILE"
                                   : "") +
                            "): " + r.status.message());
  }
  if (sink.status >= 400) {
    const std::string message = ErrorMessage(sink.body);
    if (sink.status == 401) {
      return PermissionDeniedError(
          "the daemon at " + base + " refused " +
          (key.empty() ? std::string("the call without an API key") : std::string("the API key")) +
          " (401: " + message + "); give an admin key with --api-key KEY or LLMASOS_API_KEY=KEY " +
          "(`llmasos keys create --scopes admin` makes one)");
    }
    if (sink.status == 403) {
      return PermissionDeniedError("the API key is not allowed " + method + " " + path + " (403: " + message +
                                   "); the /os routes need a key with the admin scope");
    }
    return UnavailableError(std::to_string(sink.status) + ": " + message);
  }
  return std::move(sink.body);
}

StatusOr<json> Call(const DaemonFlags& f, const std::string& method, const std::string& path, const std::string& body) {
  ASSIGN_OR_RETURN(std::string text, CallText(f, method, path, body));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return InternalError(method + " " + path + ": the daemon answered without JSON");
  return j;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "error: %s\n", s.message().c_str());
  return 1;
}

namespace {

std::string Age(double seconds) {
  char buf[32];
  if (seconds < 60) std::snprintf(buf, sizeof(buf), "%.1fs", seconds);
  else std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(seconds) / 60, static_cast<int>(seconds) % 60);
  return buf;
}

}  // namespace

std::string FormatProcessTable(const json& processes) {
  char line[512];
  std::snprintf(line, sizeof(line), "%-10s %-28s %-12s %-9s %5s %7s %7s %6s %8s\n", "ID", "MODEL", "TENANT", "STATE",
                "PRIO", "PROMPT", "GEN", "KV", "AGE");
  std::string out = line;
  if (!processes.is_array()) return out;
  for (const json& p : processes) {
    std::string model = p.value("model", "") + "@" + p.value("version", "");
    if (p.contains("adapter") && p["adapter"].is_string()) model += "+" + p["adapter"].get<std::string>();
    const json kv = p.value("kv_blocks", json::object());
    std::snprintf(line, sizeof(line), "%-10s %-28s %-12s %-9s %5d %7lld %7lld %6lld %8s\n", p.value("id", "").c_str(),
                  model.c_str(), p.value("tenant", "").c_str(), p.value("state", "").c_str(), p.value("priority", 0),
                  p.value("prompt_tokens", 0LL), p.value("generated_tokens", 0LL),
                  kv.value("resident", 0LL) + kv.value("swapped", 0LL), Age(p.value("age_seconds", 0.0)).c_str());
    out += line;
  }
  return out;
}

void AddDaemonFlags(CLI::App* cmd, DaemonFlags* f) {
  cmd->add_option("--host", f->host,
                  "the daemon's address, https://HOST for a daemon serving TLS (default: $LLMASOS_HOST, else "
                  "127.0.0.1)");
  cmd->add_option("--port", f->port, "the daemon's port (default: $LLMASOS_HOST's, else 8080)")->check(CLI::Range(1, 65535));
  cmd->add_option("--api-key", f->api_key, "the API key to send, with the admin scope (default: $LLMASOS_API_KEY)");
  cmd->add_option("--cacert", f->cacert,
                  "with an https:// --host: the CA certificate file that signed the daemon's certificate "
                  "(default: $LLMASOS_CACERT, else the system's CAs)")
      ->check(CLI::ExistingFile);
}

}  // namespace llmasos::shell
