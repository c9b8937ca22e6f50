// llmasos top: a live view of a running daemon's processes, memory and throughput, from
// GET /os/processes, GET /os/memory and GET /metrics (throughput: the difference of
// llmasos_engine_generated_tokens_total, which each engine counts per step, between two
// samples). On a terminal it redraws the whole screen every --interval seconds (ANSI, in the
// alternate screen) and quits on `q`, with the terminal's mode restored on exit and on SIGINT
// or SIGTERM; when stdout is not a terminal it prints one snapshot (throughput measured over one
// interval) and exits.
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "shell/commands.h"
#include "shell/daemon_client.h"

namespace llmasos::shell {
namespace {

using nlohmann::json;
using SteadyTime = std::chrono::steady_clock::time_point;

struct TopFlags {
  DaemonFlags daemon;
  double interval_s = 1.0;
};

// Generated tokens per model ("name@version") as /metrics counts them now.
struct TokenSample {
  SteadyTime at;
  std::map<std::string, double> tokens;
};

// llmasos_engine_generated_tokens_total{model="..."} N lines of a Prometheus exposition.
std::map<std::string, double> ParseGeneratedTokens(const std::string& text) {
  static constexpr std::string_view kName = "llmasos_engine_generated_tokens_total{";
  std::map<std::string, double> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (line.substr(0, kName.size()) != kName) continue;
    const size_t label = line.find("model=\"");
    const size_t close = line.find("} ");
    if (label == std::string_view::npos || close == std::string_view::npos) continue;
    const size_t value_start = label + 7;
    const size_t value_end = line.find('"', value_start);
    if (value_end == std::string_view::npos || value_end > close) continue;
    const std::string number(line.substr(close + 2));
    out[std::string(line.substr(value_start, value_end - value_start))] += std::strtod(number.c_str(), nullptr);
  }
  return out;
}

StatusOr<TokenSample> SampleTokens(const DaemonFlags& f) {
  ASSIGN_OR_RETURN(std::string text, CallText(f, "GET", "/metrics"));
  return TokenSample{std::chrono::steady_clock::now(), ParseGeneratedTokens(text)};
}

// Tokens per second per model between two samples; a model absent from `before` (loaded since)
// or whose counter went back (loaded again) counts from 0.
std::map<std::string, double> Throughput(const TokenSample& before, const TokenSample& after) {
  std::map<std::string, double> out;
  const double seconds = std::chrono::duration<double>(after.at - before.at).count();
  if (seconds <= 0) return out;
  for (const auto& [model, now] : after.tokens) {
    auto it = before.tokens.find(model);
    const double then = it == before.tokens.end() || it->second > now ? 0.0 : it->second;
    out[model] = (now - then) / seconds;
  }
  return out;
}

// One screen: the summary, the instances and the process table. `throughput` is empty until two
// samples exist.
std::string Render(const std::string& base, const json& processes, const json& memory,
                   const std::optional<std::map<std::string, double>>& throughput) {
  char line[512];
  std::string out;
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char clock[16];
  std::strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
  std::snprintf(line, sizeof(line), "llmasos top  %s  %s\n", base.c_str(), clock);
  out += line;

  std::map<std::string, int> states;
  const json rows = processes.value("processes", json::array());
  for (const json& p : rows) states[p.value("state", "")]++;
  double total_tps = 0;
  if (throughput) {
    for (const auto& [model, tps] : *throughput) total_tps += tps;
  }
  std::snprintf(line, sizeof(line), "processes: %zu (%d running, %d queued, %d preempted)   throughput: %s\n",
                rows.size(), states["running"], states["queued"], states["preempted"],
                throughput ? (std::to_string(static_cast<long long>(std::llround(total_tps))) + " tokens/s").c_str()
                           : "measuring...");
  out += line;
  const uint64_t budget = memory.value("budget_bytes", uint64_t{0});
  std::snprintf(line, sizeof(line), "memory: %s used of %s\n\n", HumanBytes(memory.value("used_bytes", uint64_t{0})).c_str(),
                budget > 0 ? (HumanBytes(budget) + " budget").c_str() : "no budget");
  out += line;

  std::snprintf(line, sizeof(line), "%-5s %-28s %10s %15s %6s %8s %11s %9s\n", "INST", "MODEL", "RESIDENT",
                "KV USED/TOTAL", "KV%", "PREFIX%", "SWAP", "TOK/S");
  out += line;
  for (const json& i : memory.value("instances", json::array())) {
    const std::string model = i.value("model", "") + "@" + i.value("version", "");
    const json kv = i.value("kv", json::object());
    const json prefix = i.value("prefix_cache", json::object());
    const json swap = i.value("swap", json::object());
    const std::string blocks = std::to_string(kv.value("used_blocks", 0LL)) + "/" + std::to_string(kv.value("total_blocks", 0LL));
    const std::string swapped = std::to_string(swap.value("used_blocks", 0LL)) + "/" + std::to_string(swap.value("capacity_blocks", 0LL));
    const double total = kv.value("total_blocks", 0.0);
    std::string tps = "-";
    if (throughput) {
      auto it = throughput->find(model);
      char t[32];
      std::snprintf(t, sizeof(t), "%.1f", it == throughput->end() ? 0.0 : it->second);
      tps = t;
    }
    std::snprintf(line, sizeof(line), "%-5llu %-28s %10s %15s %5.1f%% %7.1f%% %11s %9s\n", i.value("instance", 0ULL),
                  model.c_str(), HumanBytes(i.value("resident_bytes", uint64_t{0})).c_str(), blocks.c_str(),
                  total > 0 ? 100.0 * kv.value("used_blocks", 0.0) / total : 0.0,
                  100.0 * prefix.value("hit_rate", 0.0), swapped.c_str(), tps.c_str());
    out += line;
  }
  out += "\n" + FormatProcessTable(rows);
  return out;
}

// What one screen needs from the daemon.
struct Frame {
  json processes, memory;
  TokenSample tokens;
};

StatusOr<Frame> Fetch(const DaemonFlags& f) {
  Frame fr;
  ASSIGN_OR_RETURN(fr.processes, Call(f, "GET", "/os/processes"));
  ASSIGN_OR_RETURN(fr.memory, Call(f, "GET", "/os/memory"));
  ASSIGN_OR_RETURN(fr.tokens, SampleTokens(f));
  return fr;
}

int Snapshot(const TopFlags& flags) {
  auto first = SampleTokens(flags.daemon);
  if (!first.ok()) return Fail(first.status());
  std::this_thread::sleep_for(std::chrono::duration<double>(flags.interval_s));
  auto fr = Fetch(flags.daemon);
  if (!fr.ok()) return Fail(fr.status());
  std::fputs(Render(BaseUrl(flags.daemon), fr->processes, fr->memory, Throughput(*first, fr->tokens)).c_str(), stdout);
  return 0;
}

volatile sig_atomic_t g_stop = 0;
void OnStopSignal(int) { g_stop = 1; }

// The terminal while top runs: stdin without line buffering or echo (so `q` arrives at once),
// the alternate screen, no cursor; all put back by the destructor, and the signal handlers too.
class TerminalSession {
 public:
  TerminalSession() {
    raw_ = isatty(STDIN_FILENO) == 1 && tcgetattr(STDIN_FILENO, &saved_) == 0;
    if (raw_) {
      termios t = saved_;
      t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
      t.c_cc[VMIN] = 0;
      t.c_cc[VTIME] = 0;
      tcsetattr(STDIN_FILENO, TCSANOW, &t);
    }
    struct sigaction sa {};
    sa.sa_handler = OnStopSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: poll returns EINTR, and the loop ends
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
    Write("\x1b[?1049h\x1b[?25l");
  }
  ~TerminalSession() {
    Write("\x1b[?25h\x1b[?1049l");
    if (raw_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  TerminalSession(const TerminalSession&) = delete;
  TerminalSession& operator=(const TerminalSession&) = delete;

  bool reads_keys() const { return raw_; }

  static void Write(const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
      const ssize_t n = write(STDOUT_FILENO, s.data() + done, s.size() - done);
      if (n <= 0) {
        if (n < 0 && errno == EINTR) continue;
        return;
      }
      done += static_cast<size_t>(n);
    }
  }

 private:
  bool raw_ = false;
  termios saved_{};
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

// `text` cut to the terminal: at most `rows` lines of at most `cols` bytes, each ending with
// "clear to end of line" so a shorter frame leaves nothing of the last one.
std::string Fit(const std::string& text, size_t rows, size_t cols) {
  std::string out;
  size_t pos = 0, n = 0;
  while (pos < text.size() && n < rows) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    out += text.substr(pos, std::min(end - pos, cols));
    out += "\x1b[K";
    if (++n < rows) out += "\r\n";
    pos = end + 1;
  }
  return out;
}

int Live(const TopFlags& flags) {
  g_stop = 0;
  TerminalSession term;
  const std::string base = BaseUrl(flags.daemon);
  std::optional<TokenSample> last;
  const int wait_ms = static_cast<int>(std::lround(flags.interval_s * 1000));
  while (!g_stop) {
    std::string screen;
    auto fr = Fetch(flags.daemon);
    if (fr.ok()) {
      std::optional<std::map<std::string, double>> tps;
      if (last) tps = Throughput(*last, fr->tokens);
      last = fr->tokens;
      screen = Render(base, fr->processes, fr->memory, tps);
    } else {
      screen = "llmasos top  " + base + "\n\nerror: " + fr.status().message() + "\n(retrying; q quits)\n";
    }
    winsize ws{};
    size_t rows = 24, cols = 80;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
      rows = ws.ws_row;
      cols = ws.ws_col;
    }
    TerminalSession::Write("\x1b[H\x1b[2J" + Fit(screen, rows, cols));
    // Wait for the next frame, or a key.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
    while (!g_stop) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd in{STDIN_FILENO, POLLIN, 0};
      const int ready = poll(term.reads_keys() ? &in : nullptr, term.reads_keys() ? 1 : 0, static_cast<int>(left.count()));
      if (ready <= 0) continue;  // EINTR (a signal: g_stop) or the time is up
      char keys[64];
      const ssize_t n = read(STDIN_FILENO, keys, sizeof(keys));
      if (n <= 0) break;  // stdin closed: stop reading keys, keep refreshing
      for (ssize_t i = 0; i < n; ++i) {
        if (keys[i] == 'q' || keys[i] == 'Q') g_stop = 1;
      }
    }
  }
  return 0;
}

}  // namespace

void AddTopCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<TopFlags>();
  CLI::App* top = app.add_subcommand(
      "top", "a live view of the running daemon's processes, memory and throughput (q quits; one snapshot "
             "when stdout is not a terminal)");
  AddDaemonFlags(top, &flags->daemon);
  top->add_option("--interval", flags->interval_s, "seconds between refreshes (default 1)")->check(CLI::Range(0.1, 3600.0));
  top->callback([flags, exit_code] {
    *exit_code = isatty(STDOUT_FILENO) == 1 ? Live(*flags) : Snapshot(*flags);
  });
}

}  // namespace llmasos::shell
