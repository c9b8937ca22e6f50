// The registry commands: import, list, show, rm, cp, tag, history, diff, rollback, verify,
// and pull. Each opens the registry under $LLMASOS_HOME, which runs startup
// recovery first, and reports what recovery removed on stderr.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>

#include <nlohmann/json.hpp>

#include "services/registry/pull.h"
#include "services/registry/registry.h"
#include "services/registry/validate.h"
#include "shell/commands.h"

namespace llmasos::shell {
namespace {

using registry::FieldDiff;
using registry::Manifest;
using registry::ModelEntry;
using registry::Registry;

StatusOr<std::unique_ptr<Registry>> OpenRegistry() {
  registry::RecoveryReport report;
  auto r = Registry::Open(registry::DefaultHome(), {}, &report);
  if (!r.ok()) return r.status();
  if (report.temp_files_removed > 0 || !report.orphan_blobs_removed.empty()) {
    std::fprintf(stderr, "llmasos: recovery removed %zu unfinished temp file(s) and %zu orphan blob(s)\n",
                 report.temp_files_removed, report.orphan_blobs_removed.size());
  }
  if (report.derived_blobs_removed > 0) {
    std::fprintf(stderr, "llmasos: recovery removed %zu derived file(s) of missing blobs\n",
                 report.derived_blobs_removed);
  }
  return r;
}

std::string HumanCount(uint64_t n) {
  char buf[32];
  if (n >= 1000000000) {
    std::snprintf(buf, sizeof(buf), "%.1fB", n / 1e9);
  } else if (n >= 1000000) {
    std::snprintf(buf, sizeof(buf), "%.1fM", n / 1e6);
  } else if (n >= 1000) {
    std::snprintf(buf, sizeof(buf), "%.1fK", n / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(n));
  }
  return buf;
}

std::string Join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : ",") + i;
  return s.empty() ? "-" : s;
}

// Text that came from a model file, made safe for a terminal: control characters (other
// than newline and tab when `multiline`) are escaped.
std::string Printable(const std::string& text, bool multiline = false) {
  std::string out;
  for (unsigned char c : text) {
    if ((c < 0x20 && !(multiline && (c == '\n' || c == '\t'))) || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

nlohmann::json EntryJson(const ModelEntry& e) {
  nlohmann::json j = registry::ManifestToJson(e.manifest);
  j["tags"] = e.tags;
  j["loaded"] = e.loaded;
  return j;
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

void PrintEntries(const std::vector<ModelEntry>& entries, bool with_lineage) {
  std::vector<std::vector<std::string>> rows;
  if (with_lineage) {
    rows.push_back({"VERSION", "TAGS", "DIGEST", "QUANT", "CREATED", "FROM", "COMMAND", "NOTES"});
  } else {
    rows.push_back({"NAME", "VERSION", "TAGS", "QUANT", "PARAMS", "SIZE", "CREATED"});
  }
  for (const ModelEntry& e : entries) {
    const Manifest& m = e.manifest;
    std::string tags = Join(e.tags) + (e.loaded ? " (loaded)" : "");
    if (with_lineage) {
      rows.push_back({m.version, tags, m.digest.substr(7, 12), m.quantization, m.lineage.created,
                      m.lineage.parent_version.empty() ? "-" : m.lineage.parent_version,
                      m.lineage.command, Printable(m.lineage.notes)});
    } else {
      rows.push_back({m.name, m.version, tags, m.quantization, HumanCount(m.parameter_count),
                      HumanBytes(m.size_bytes), m.lineage.created});
    }
  }
  PrintTable(rows);
}

// The derived blobs (the weights repacked for a CPU target, ...) of `digest`.
std::vector<registry::DerivedBlob> DerivedBlobsOf(const Registry& r, const std::string& digest) {
  std::vector<registry::DerivedBlob> out;
  auto all = r.blobs().ListDerived();
  if (!all.ok()) return out;  // a listing that fails shows none; the model itself is fine
  for (registry::DerivedBlob& d : *all) {
    if (d.digest == digest) out.push_back(std::move(d));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.kind < b.kind; });
  return out;
}

void PrintManifest(const ModelEntry& e, const std::string& blob_path,
                   const std::vector<registry::DerivedBlob>& derived) {
  const Manifest& m = e.manifest;
  auto line = [](const char* key, const std::string& value) {
    std::printf("  %-16s %s\n", key, value.c_str());
  };
  std::printf("%s@%s\n", m.name.c_str(), m.version.c_str());
  line("tags", Join(e.tags));
  line("loaded", e.loaded ? "yes" : "no");
  line("digest", m.digest);
  line("blob", blob_path);
  for (const registry::DerivedBlob& d : derived) {
    line("derived", d.kind + ", " + std::to_string(d.size_bytes) + " bytes (" + HumanBytes(d.size_bytes) + ")");
  }
  line("size", std::to_string(m.size_bytes) + " bytes (" + HumanBytes(m.size_bytes) + ")");
  line("format", m.format);
  line("architecture", Printable(m.architecture));
  line("quantization", m.quantization);
  line("parameters", std::to_string(m.parameter_count) + " (" + HumanCount(m.parameter_count) + ")");
  line("context length", std::to_string(m.context_length));
  line("license", m.license.empty() ? "-" : Printable(m.license));
  line("chat template", m.chat_template.empty() ? "none"
                                                : std::to_string(m.chat_template.size()) + " bytes");
  std::printf("lineage\n");
  line("parent version", m.lineage.parent_version.empty() ? "-" : m.lineage.parent_version);
  line("source", Printable(m.lineage.source));
  line("created", m.lineage.created);
  line("command", m.lineage.command);
  line("notes", m.lineage.notes.empty() ? "-" : Printable(m.lineage.notes, true));
  const registry::TrainingLineage& t = m.lineage.training;
  if (!t.base.empty()) {
    std::printf("training\n");
    line("base", Printable(t.base));
    line("base digest", t.base_digest);
    line("data", Printable(t.data));
    line("data digest", t.data_digest);
    line("parameters", Printable(t.parameters));
  }
}

// Long values (chat templates) are summarized in the text diff; --json has them whole.
std::string DiffValue(const std::string& v) {
  constexpr size_t kMax = 72;
  std::string p = Printable(v);
  if (p.size() <= kMax) return p.empty() ? "\"\"" : p;
  return p.substr(0, kMax) + "... (" + std::to_string(v.size()) + " bytes)";
}

// Pull progress on stderr: a bar redrawn in place on a terminal; otherwise a plain line when
// the status changes and at most every 5 s while downloading. Bytes, rate and ETA.
class PullProgressPrinter {
 public:
  explicit PullProgressPrinter(bool quiet) : quiet_(quiet), tty_(isatty(STDERR_FILENO) != 0) {}

  void Print(const registry::PullProgress& p) {
    if (quiet_) return;
    auto now = std::chrono::steady_clock::now();
    bool downloading = p.status == "downloading";
    if (downloading && !started_) {
      // The rate counts from the first bytes of this run (a resumed pull starts part way).
      started_ = true;
      start_ = now;
      start_bytes_ = p.completed;
    }
    bool changed = p.status != last_status_;
    bool done = downloading && p.total > 0 && p.completed == p.total;
    double since_print = std::chrono::duration<double>(now - last_print_).count();
    if (!changed && !done && since_print < (tty_ ? 0.2 : 5.0)) return;
    if (!downloading) {
      if (tty_ && bar_shown_) std::fputc('\n', stderr);
      bar_shown_ = false;
      std::fprintf(stderr, "%s\n", p.status.c_str());
    } else {
      double seconds = std::chrono::duration<double>(now - start_).count();
      double rate = seconds > 0.2 ? (p.completed - start_bytes_) / seconds : 0;
      std::string line = "downloading " + HumanBytes(p.completed);
      if (p.total > 0) {
        int pct = static_cast<int>(100.0 * p.completed / p.total);
        if (tty_) {
          int filled = pct / 5;
          line = "[" + std::string(filled, '#') + std::string(20 - filled, ' ') + "] " + line;
        }
        line += " / " + HumanBytes(p.total) + " (" + std::to_string(pct) + "%)";
      }
      if (rate > 0) line += ", " + HumanBytes(static_cast<uint64_t>(rate)) + "/s";
      if (p.total > 0 && rate > 0 && !done) {
        auto eta = static_cast<long>((p.total - p.completed) / rate);
        char buf[32];
        std::snprintf(buf, sizeof(buf), ", ETA %ld:%02ld", eta / 60, eta % 60);
        line += buf;
      }
      std::fprintf(stderr, tty_ ? "\r%s\x1b[K" : "%s\n", line.c_str());
      bar_shown_ = tty_;
    }
    std::fflush(stderr);
    last_status_ = p.status;
    last_print_ = now;
  }

  ~PullProgressPrinter() {
    if (tty_ && bar_shown_) std::fputc('\n', stderr);
  }

 private:
  bool quiet_;
  bool tty_;
  bool started_ = false;
  bool bar_shown_ = false;
  std::chrono::steady_clock::time_point start_, last_print_;
  uint64_t start_bytes_ = 0;
  std::string last_status_;
};

// Runs `body` with an open registry, turning errors into the exit code.
template <typename F>
void Bind(CLI::App* cmd, int* exit_code, F body) {
  cmd->callback([exit_code, body] {
    auto reg = OpenRegistry();
    if (!reg.ok()) {
      *exit_code = ReportError(reg.status());
      return;
    }
    Status s = body(**reg);
    *exit_code = s.ok() ? 0 : ReportError(s);
  });
}

}  // namespace

void AddRegistryCommands(CLI::App& app, int* exit_code) {
  {
    struct Flags {
      registry::ImportOptions options;
      std::string version;
      bool no_latest = false;
    };
    auto f = std::make_shared<Flags>();
    CLI::App* cmd = app.add_subcommand("import", "copy a .gguf file into the registry as a new version");
    cmd->add_option("file", f->options.file, "the .gguf file")->required();
    cmd->add_option("--name", f->options.name, "model name (lowercase a-z 0-9 . _ -, one optional '/')")
        ->required();
    cmd->add_option("--version", f->version, "semantic version (default 1.0.0, then the next minor)");
    cmd->add_option("--notes", f->options.notes, "release notes, kept in the manifest");
    cmd->add_option("--tag", f->options.tags, "also point this tag at the new version (repeatable)");
    cmd->add_flag("--no-latest", f->no_latest, "do not move the 'latest' tag to the new version");
    Bind(cmd, exit_code, [f](Registry& r) -> Status {
      if (!f->version.empty()) f->options.version = f->version;
      f->options.move_latest = !f->no_latest;
      ASSIGN_OR_RETURN(Manifest m, r.Import(f->options));
      std::printf("imported %s@%s %s (%s, %s, %s)\n", m.name.c_str(), m.version.c_str(),
                  m.digest.c_str(), HumanBytes(m.size_bytes).c_str(), Printable(m.architecture).c_str(),
                  m.quantization.c_str());
      return OkStatus();
    });
  }
  {
    auto json = std::make_shared<bool>(false);
    CLI::App* cmd = app.add_subcommand("list", "list every model version in the registry");
    cmd->add_flag("--json", *json, "print JSON");
    Bind(cmd, exit_code, [json](Registry& r) -> Status {
      ASSIGN_OR_RETURN(auto entries, r.List());
      if (*json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& e : entries) out.push_back(EntryJson(e));
        std::printf("%s\n", out.dump(2).c_str());
      } else if (entries.empty()) {
        std::printf("no models; add one with: llmasos import FILE --name NAME\n");
      } else {
        PrintEntries(entries, false);
      }
      return OkStatus();
    });
  }
  {
    struct Flags {
      std::string ref;
      bool json = false;
    };
    auto f = std::make_shared<Flags>();
    CLI::App* cmd = app.add_subcommand("show", "show a model version's manifest");
    cmd->add_option("ref", f->ref, "name, name:tag, name@version or name@range")->required();
    cmd->add_flag("--json", f->json, "print the manifest as JSON");
    Bind(cmd, exit_code, [f](Registry& r) -> Status {
      ASSIGN_OR_RETURN(ModelEntry e, r.Show(f->ref));
      ASSIGN_OR_RETURN(std::string blob, r.blobs().PathFor(e.manifest.digest));
      const std::vector<registry::DerivedBlob> derived = DerivedBlobsOf(r, e.manifest.digest);
      if (f->json) {
        nlohmann::json j = EntryJson(e);
        j["blob_path"] = blob;
        j["derived_blobs"] = nlohmann::json::array();
        for (const registry::DerivedBlob& d : derived) {
          j["derived_blobs"].push_back({{"kind", d.kind}, {"size_bytes", d.size_bytes}});
        }
        std::printf("%s\n", j.dump(2).c_str());
      } else {
        PrintManifest(e, blob, derived);
      }
      return OkStatus();
    });
  }
  {
    struct Flags {
      std::string ref;
      bool force = false;
    };
    auto f = std::make_shared<Flags>();
    CLI::App* cmd = app.add_subcommand("rm", "remove a model version (and its blob when unused)");
    cmd->add_option("ref", f->ref, "the version to remove (name means name:latest)")->required();
    cmd->add_flag("-f,--force", f->force, "remove it even if it is marked loaded");
    Bind(cmd, exit_code, [f](Registry& r) -> Status {
      ASSIGN_OR_RETURN(auto removed, r.Remove(f->ref, f->force));
      std::printf("removed %s@%s\n", removed.name.c_str(), removed.version.c_str());
      for (const auto& d : removed.blobs_removed) std::printf("deleted blob %s\n", d.c_str());
      return OkStatus();
    });
  }
  {
    struct Flags {
      std::string src, dst;
    };
    auto f = std::make_shared<Flags>();
    CLI::App* cmd = app.add_subcommand("cp", "copy a model version under another name (shares the blob)");
    cmd->add_option("src", f->src, "the version to copy")->required();
    cmd->add_option("dst", f->dst, "NAME, NAME:TAG or NAME@VERSION")->required();
    Bind(cmd, exit_code, [f](Registry& r) -> Status {
      ASSIGN_OR_RETURN(Manifest m, r.Copy(f->src, f->dst));
      std::printf("copied to %s@%s\n", m.name.c_str(), m.version.c_str());
      return OkStatus();
    });
  }
  {
    struct Flags {
      std::string ref, tag;
    };
    auto f = std::make_shared<Flags>();
    CLI::App* cmd = app.add_subcommand("tag", "point a tag at a model version (moving it if it exists)");
    cmd->add_option("ref", f->ref, "the version to tag")->required();
    cmd->add_option("tag", f->tag, "the tag (e.g. stable)")->required();
    Bind(cmd, exit_code, [f](Registry& r) -> Status {
      ASSIGN_OR_RETURN(Manifest m, r.Tag(f->ref, f->tag));
      std::printf("%s:%s -> %s\n", m.name.c_str(), f->tag.c_str(), m.version.c_str());
      return OkStatus();
    });
  }
  {
    struct Flags {
      std::string name;
      bool json = false;
    };
    auto f = std::make_shared<Flags>();
    CLI::App* cmd = app.add_subcommand("history", "every version of a model, newest first, with lineage");
    cmd->add_option("name", f->name, "model name")->required();
    cmd->add_flag("--json", f->json, "print JSON");
    Bind(cmd, exit_code, [f](Registry& r) -> Status {
      ASSIGN_OR_RETURN(auto entries, r.History(f->name));
      if (f->json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& e : entries) out.push_back(EntryJson(e));
        std::printf("%s\n", out.dump(2).c_str());
      } else {
        PrintEntries(entries, true);
      }
      return OkStatus();
    });
  }
  {
    struct Flags {
      std::string a, b;
      bool json = false;
    };
    auto f = std::make_shared<Flags>();
    CLI::App* cmd = app.add_subcommand("diff", "what differs between two versions' manifests");
    cmd->add_option("a", f->a, "first reference")->required();
    cmd->add_option("b", f->b, "second reference")->required();
    cmd->add_flag("--json", f->json, "print JSON: [{field, a, b}]");
    Bind(cmd, exit_code, [f](Registry& r) -> Status {
      ASSIGN_OR_RETURN(std::vector<FieldDiff> diffs, r.Diff(f->a, f->b));
      if (f->json) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& d : diffs) out.push_back({{"field", d.field}, {"a", d.a}, {"b", d.b}});
        std::printf("%s\n", out.dump(2).c_str());
      } else if (diffs.empty()) {
        std::printf("no differences\n");
      } else {
        for (const auto& d : diffs) {
          std::printf("%s:\n  - %s\n  + %s\n", d.field.c_str(), DiffValue(d.a).c_str(),
                      DiffValue(d.b).c_str());
        }
      }
      return OkStatus();
    });
  }
  {
    struct Flags {
      std::string name, to;
    };
    auto f = std::make_shared<Flags>();
    CLI::App* cmd = app.add_subcommand(
        "rollback", "move 'latest' back to the previous release, or to --to VERSION");
    cmd->add_option("name", f->name, "model name")->required();
    cmd->add_option("--to", f->to, "the version 'latest' should point to");
    Bind(cmd, exit_code, [f](Registry& r) -> Status {
      std::optional<std::string> to;
      if (!f->to.empty()) to = f->to;
      ASSIGN_OR_RETURN(Manifest m, r.Rollback(f->name, to));
      std::printf("%s:latest -> %s\n", m.name.c_str(), m.version.c_str());
      return OkStatus();
    });
  }
  {
    auto ref = std::make_shared<std::string>();
    CLI::App* cmd = app.add_subcommand("verify", "re-hash a version's blob against its digest");
    cmd->add_option("ref", *ref, "the version to verify")->required();
    Bind(cmd, exit_code, [ref](Registry& r) -> Status {
      ASSIGN_OR_RETURN(ModelEntry e, r.Show(*ref));
      RETURN_IF_ERROR(r.Verify(*ref));
      std::printf("ok %s@%s %s\n", e.manifest.name.c_str(), e.manifest.version.c_str(),
                  e.manifest.digest.c_str());
      return OkStatus();
    });
  }
  {
    struct Flags {
      registry::PullRequest request;
      std::string version, digest, max_size;
      bool quiet = false;
    };
    auto f = std::make_shared<Flags>();
    CLI::App* cmd = app.add_subcommand("pull", "download a .gguf model over HTTP(S) into the registry");
    cmd->add_option("url", f->request.url, "http:// or https:// URL of a .gguf file")->required();
    cmd->add_option("--name", f->request.name, "model name (default: from the URL's file name)");
    cmd->add_option("--version", f->version, "semantic version (default 1.0.0, then the next minor)");
    cmd->add_option("--digest", f->digest, "expected sha256:HEX; a download that differs is deleted");
    cmd->add_flag("--allow-private", f->request.allow_private,
                  "allow loopback, private and link-local addresses (refused by default)");
    cmd->add_option("--max-size", f->max_size, "refuse files larger than this (bytes, or e.g. 8G; default 256G)");
    cmd->add_option("--stall-timeout", f->request.stall_timeout_s,
                    "seconds without a byte before the connection is dropped and resumed (default 60)")
        ->check(CLI::Range(1L, 3600L));
    cmd->add_flag("-q,--quiet", f->quiet, "no progress output");
    Bind(cmd, exit_code, [f](Registry& r) -> Status {
      registry::PullRequest& req = f->request;
      if (!f->version.empty()) req.version = f->version;
      if (!f->digest.empty()) req.expected_digest = f->digest;
      if (!f->max_size.empty()) {
        ASSIGN_OR_RETURN(req.max_bytes, registry::ParseByteSize(f->max_size));
      }
      // Crash tests: stop dead between storing the blob and recording its version.
      if (const char* crash = std::getenv("LLMASOS_TEST_PULL_CRASH");
          crash != nullptr && std::string(crash) == "after-blob") {
        req.after_blob_stored = [] { ::_exit(86); };
      }
      auto pulled = [&] {
        PullProgressPrinter printer(f->quiet);  // ends its line before anything else prints
        return registry::Pull(r, req, [&](const registry::PullProgress& p) { printer.Print(p); });
      }();
      if (!pulled.ok()) return pulled.status();
      const registry::PullResult& result = *pulled;
      const Manifest& m = result.manifest;
      if (result.already_present) {
        std::printf("%s@%s already has %s; nothing added\n", m.name.c_str(), m.version.c_str(),
                    m.digest.c_str());
      } else {
        std::printf("pulled %s@%s %s (%s, %s, %s)\n", m.name.c_str(), m.version.c_str(), m.digest.c_str(),
                    HumanBytes(m.size_bytes).c_str(), Printable(m.architecture).c_str(),
                    m.quantization.c_str());
      }
      return OkStatus();
    });
  }
}

}  // namespace llmasos::shell
