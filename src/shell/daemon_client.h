// The shell's client of a running daemon (llmasos ps, kill, renice, sched, jobs, top), over
// the project's one HTTP client (registry::Fetch, libcurl). The daemon is found at
// --host/--port, else $LLMASOS_HOST ([https://]HOST:PORT), else 127.0.0.1:8080; one that cannot
// be reached is a clear error naming the address. An https:// address (a daemon started with
// --tls-cert) is verified against --cacert FILE, else $LLMASOS_CACERT, else the system's CAs. Every call carries the API key of --api-key,
// else $LLMASOS_API_KEY, as "Authorization: Bearer KEY"; a 401 or 403 is an error that says
// which (no key, a bad key, or a key without the admin scope) and how to give one.
//
// Thread safety: functions over values; each call is its own transfer.
#ifndef LLMASOS_SHELL_DAEMON_CLIENT_H_
#define LLMASOS_SHELL_DAEMON_CLIENT_H_

#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "util/status.h"

namespace llmasos::shell {

struct DaemonFlags {
  std::string host;     // "" = $LLMASOS_HOST or 127.0.0.1
  int port = 0;         // 0 = $LLMASOS_HOST's or 8080
  std::string api_key;  // "" = $LLMASOS_API_KEY, else none
  std::string cacert;   // "" = $LLMASOS_CACERT, else the system's CAs (https:// only)
};
// --host, --port, --api-key and --cacert on `cmd`, into *f.
void AddDaemonFlags(CLI::App* cmd, DaemonFlags* f);
// "http://HOST:PORT" (or https://, when the address names it) as the flags and the environment say.
std::string BaseUrl(const DaemonFlags& f);

// The body of a 2xx answer to one call (the body, when given, sent as JSON), or an error
// naming the daemon's address, the refused key (401, 403) or the daemon's error message.
StatusOr<std::string> CallText(const DaemonFlags& f, const std::string& method, const std::string& path,
                               const std::string& body = "");
// As CallText, parsed as JSON (an answer that is not JSON is an error).
StatusOr<nlohmann::json> Call(const DaemonFlags& f, const std::string& method, const std::string& path,
                              const std::string& body = "");

// Prints "error: MESSAGE" on stderr; returns the exit code 1.
int Fail(const Status& s);

// GET /os/processes' rows as `llmasos ps` prints them: a header line, then one line per process.
std::string FormatProcessTable(const nlohmann::json& processes);

}  // namespace llmasos::shell

#endif  // LLMASOS_SHELL_DAEMON_CLIENT_H_
