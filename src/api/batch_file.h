// A file of prompts through one engine: what `llmasos batch` (shell/cmd_batch.cc) runs in the
// foreground and a batch job (api/batch_job.h) runs on the daemon. One home for the input
// format, the results file and the loop between them, so both answer a line the same way.
//
// Input, one JSON object per line (blank lines skipped):
//   {"id": "q1", "prompt": "text"}                       the chat template is applied
//   {"id": "q2", "messages": [{"role": ..., "content": ...}, ...]}
//   {"id": "q3", "prompt": "text", "raw": true}          plain completion
// optional per line: max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
// presence_penalty, frequency_penalty, seed, stop (a string or a list), priority, tenant.
// "id" defaults to the line number. The fields are read by api/request.h (Endpoint::kBatchLine).
//
// Results, one line per finished prompt, in finishing order:
//   {"id", "text", "finish_reason" ("stop" | "length" | "error"), "prompt_tokens",
//    "completion_tokens", "error" (only for "error")}
// Each line is one write followed by a flush, so a crash cuts at most the last line, which
// ReadBatchResultIds drops; a rerun skips the ids already there.
//
// Thread safety: functions of their arguments; RunBatch uses the engine's thread-safe calls.
#ifndef LLMASOS_API_BATCH_FILE_H_
#define LLMASOS_API_BATCH_FILE_H_

#include <chrono>
#include <cstdio>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/request.h"
#include "kernel/engine_thread.h"
#include "model/chat/chat_template.h"
#include "model/tokenizer/tokenizer.h"
#include "util/status.h"

namespace llmasos::api {

inline constexpr size_t kMaxBatchLineBytes = 1 << 20;
inline constexpr size_t kMaxBatchPrompts = 1 << 20;
// Generated tokens for a line that gives no max_tokens (and no default was set).
inline constexpr int32_t kDefaultBatchMaxTokens = 256;

// One prompt of the file, ready to submit.
struct BatchLine {
  std::string id;
  size_t line_no = 0;     // 1-based
  size_t prompt_tokens = 0;
  kernel::ProcessSpec spec;          // stop strings not included
  std::vector<std::string> stop;     // the line's, the defaults' and the template's end of turn
};

struct BatchInputOptions {
  SpecDefaults defaults;           // sampling, max_tokens, context_tokens and vocab_size
  std::vector<std::string> stop;   // added to every line's (the CLI's --stop)
  // The model's template, for lines with messages or a non-raw prompt; null: such a line is
  // an error naming it.
  const chat::ChatTemplate* chat_template = nullptr;
  std::string chat_template_error;  // why there is none, for that error
};

struct BatchInput {
  std::vector<BatchLine> todo;  // the lines whose id is not done, in file order
  size_t num_prompts = 0;       // prompt lines in the file, done or not
  size_t num_done = 0;          // of them, already in the results
  std::set<std::string> ignored_fields;  // accepted and ignored (not part of the line format)
};

// Reads and validates every line of `path`, tokenizing the prompts of those whose id is not in
// `done`. Errors name the file (as `display_name`) and the line: "p.jsonl:3: temperature: ...".
StatusOr<BatchInput> ReadBatchInput(const std::string& path, const std::string& display_name,
                                    const tokenizer::Tokenizer& tok, const BatchInputOptions& options,
                                    const std::set<std::string>& done);

// Ids already in the results file `path` (none when it does not exist). A last line cut short
// by a crash is removed from the file; any other line that is not a result is DataLoss.
StatusOr<std::set<std::string>> ReadBatchResultIds(const std::string& path);

// The options of a batch job's spec ({"max_tokens", "temperature", ..., "stop"}), the same
// fields and ranges as a line's, applied to `options` as defaults for every line. Errors
// "options.FIELD: ..." with *bad_field set.
Status ApplyBatchDefaults(const nlohmann::json& object, BatchInputOptions* options, std::string* bad_field);

struct BatchRunOptions {
  // Processes submitted and not yet ended; more lines wait. >= 1.
  size_t max_in_flight = 16;
  // Priority of every process; nullopt: each line's own (or 0).
  std::optional<int32_t> priority;
  // Asked between events; true stops the run: the processes in flight are cancelled and
  // their lines stay undone (no result line).
  std::function<bool()> should_stop;
  // After each result line: results written so far in this run, and tokens generated.
  std::function<void(size_t num_written, size_t num_tokens)> on_result;
  // After every event (tokens too): for a progress display.
  std::function<void(size_t num_written, size_t num_tokens)> on_event;
  std::chrono::milliseconds poll{200};  // how long one wait for an event lasts
};

struct BatchRunResult {
  size_t num_written = 0;
  size_t num_tokens = 0;
  bool stopped = false;  // should_stop ended it early
};

// Runs `lines` through `engine`, appending one result line per prompt to `out`. An engine
// that is full (Unavailable) is waited for; a line the engine refuses gets an "error" result.
// Errors: a failed engine step (the engine's error), a write error. REQUIRES: out open.
StatusOr<BatchRunResult> RunBatch(kernel::EngineThread& engine, const std::vector<BatchLine>& lines, FILE* out,
                                  const BatchRunOptions& options);

}  // namespace llmasos::api

#endif  // LLMASOS_API_BATCH_FILE_H_
