// The "batch" job kind: a file of prompts (api/batch_file.h's format, the one `llmasos batch`
// reads) answered by a model of the daemon, as a job of its job runner (services/jobs).
//
// Spec (the body of POST /os/jobs):
//   {"kind": "batch", "model": REF, "input": "/abs/prompts.jsonl", "output": "/abs/results.jsonl",
//    "options": {max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
//                presence_penalty, frequency_penalty, seed, stop}   (defaults for every line)
//    "parallel": 1..64 (default 2)}
// The paths are on the daemon's machine. The defaults a line and the options leave are
// `llmasos batch`'s (seed 0xC0FFEE, max_tokens 256, the CLI's sampling), so the same file gives
// the same answers.
//
// Running: the prompts go to the model's engine as processes of the lowest priority, at most
// `parallel` in flight, so interactive requests keep the engine's other slots and win under
// the priority policy. Each result is appended to the output as one line (with the input's
// id) as it finishes; progress is prompts answered / prompts in the file. A pause, a cancel or
// the daemon stopping cancels the prompts in flight; running again (resume, the next daemon)
// skips the ids already in the output. A bad line fails the job with its line number.
//
// Thread safety: as jobs::JobKind.
#ifndef LLMASOS_API_BATCH_JOB_H_
#define LLMASOS_API_BATCH_JOB_H_

#include <memory>

#include "services/jobs/job_kind.h"
#include "services/manager/model_manager.h"
#include "services/registry/registry.h"

namespace llmasos::api {

inline constexpr int64_t kDefaultBatchJobParallel = 2;
inline constexpr int64_t kMaxBatchJobParallel = 64;

// REQUIRES: `models` and `registry` outlive the kind.
std::unique_ptr<jobs::JobKind> NewBatchJobKind(manager::ModelManager* models, registry::Registry* registry);

}  // namespace llmasos::api

#endif  // LLMASOS_API_BATCH_JOB_H_
