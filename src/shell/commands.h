// The llmasos shell's subcommands. Each Add*Command registers a subcommand on the app whose
// callback runs it and stores the process exit code in *exit_code.
#ifndef LLMASOS_SHELL_COMMANDS_H_
#define LLMASOS_SHELL_COMMANDS_H_

#include <CLI/CLI.hpp>

#include "shell/session.h"

namespace llmasos::shell {

void AddRunCommand(CLI::App& app, int* exit_code);
void AddChatCommand(CLI::App& app, int* exit_code);
void AddEmbedCommand(CLI::App& app, int* exit_code);
void AddBenchCommand(CLI::App& app, int* exit_code);
void AddPerplexityCommand(CLI::App& app, int* exit_code);
void AddInspectCommand(CLI::App& app, int* exit_code);
void AddEvalCommand(CLI::App& app, int* exit_code);
void AddQuantizeCommand(CLI::App& app, int* exit_code);
void AddBatchedBenchCommand(CLI::App& app, int* exit_code);
void AddBatchCommand(CLI::App& app, int* exit_code);
void AddKernelBenchCommand(CLI::App& app, int* exit_code);
void AddServeCommand(CLI::App& app, int* exit_code);
void AddFinetuneCommand(CLI::App& app, int* exit_code);
void AddMergeCommand(CLI::App& app, int* exit_code);
// keys create, list, revoke (cmd_keys.cc).
void AddKeysCommand(CLI::App& app, int* exit_code);
// ps, kill, renice, sched, jobs: the /os surface of a running daemon (cmd_os.cc).
void AddOsCommands(CLI::App& app, int* exit_code);
// top: a live view of a running daemon (cmd_top.cc).
void AddTopCommand(CLI::App& app, int* exit_code);
// import, list, show, rm, cp, tag, history, diff, rollback, verify, pull (cmd_registry.cc).
void AddRegistryCommands(CLI::App& app, int* exit_code);

// A size for people: "512 B", "1.5 KiB", ..., "3.2 TiB" (powers of 1024).
std::string HumanBytes(uint64_t bytes);

// A flag's check for a real number: finite (CLI::Range lets "nan" through, since no comparison
// with NaN fails) and within [lo, hi].
CLI::Validator FiniteRange(double lo, double hi);

// -t/--threads, -c/--ctx-size and -b/--batch-size, range-checked alike in every command that
// sizes an engine; a null pointer leaves that flag out. The help says what each means there.
// --threads 0 means all cores everywhere (what --print-config writes for the default).
struct EngineSizeFlags {
  size_t* num_threads = nullptr;
  std::string threads_help = "threads to use (default 0: all cores)";
  size_t* context_tokens = nullptr;
  std::string context_help = "context size in tokens (KV cache capacity; clamped to the model's)";
  size_t* batch_tokens = nullptr;
  std::string batch_help = "tokens per forward pass during prefill";
  // --cache-type-k / --cache-type-v (f32, f16, q8_0): both or neither.
  cpu::KvType* cache_type_k = nullptr;
  cpu::KvType* cache_type_v = nullptr;
};
void AddEngineSizeFlags(CLI::App& cmd, const EngineSizeFlags& flags);
// Flags every model-running command shares: MODEL, --threads, --ctx-size, --batch-size,
// --cache-type-k, --cache-type-v.
void AddLoadFlags(CLI::App& cmd, LoadOptions* options);
// Sampling flags: --temp, --top-k, --top-p, --min-p, penalties, --seed, -n, --stop.
void AddSamplingFlags(CLI::App& cmd, GenerateOptions* options);

// Parses "1,2,3" (a flag's value): each item a whole number in [lo, hi], at least one.
// InvalidArgument naming the flag and the bad item.
StatusOr<std::vector<int64_t>> ParseIntList(const std::string& text, const std::string& flag,
                                            int64_t lo, int64_t hi);

// Loads a session, printing a clear error to stderr on failure (returns null then).
std::unique_ptr<Session> LoadSessionOrReport(const LoadOptions& options);
// Prints "llmasos: <status>" to stderr and returns the exit code for it.
int ReportError(const Status& status);

}  // namespace llmasos::shell

#endif  // LLMASOS_SHELL_COMMANDS_H_
