// Jobs in $LLMASOS_HOME/state.db: what the daemon's job runner (job_runner.h) works through and
// what `/os/jobs` and `llmasos jobs` show. A job is a kind of process of the operating system
// that outlives a request and a restart of the daemon: a LoRA fine-tune today.
//
// Tables (component "jobs", services/store/sqlite.h):
//   jobs(id INTEGER PRIMARY KEY, kind, spec (JSON), state, step, total_steps, epoch, loss,
//        eval_loss, tokens_per_second, seconds_left, created, started, ended, error,
//        result (JSON), updated)
//   job_log(job_id, seq, at, line): the job's log, one row per line, at most kMaxLogLines
//        per job (the oldest go first).
//
// A job's id is "job-<N>" outside (the API, the shell) and N inside.
//
// States: queued -> running -> succeeded | failed | cancelled; running -> paused (it stopped
// after a checkpoint) -> queued (resumed); queued | paused -> cancelled. A job that was
// running when the daemon stopped is found running by the next daemon, which queues it again
// (RequeueInterrupted): it resumes from its checkpoint.
//
// Thread safety: a JobStore serializes its calls (one connection behind a mutex); the shell and
// the daemon may open the same file.
#ifndef LLMASOS_SERVICES_JOBS_JOB_STORE_H_
#define LLMASOS_SERVICES_JOBS_JOB_STORE_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/store/sqlite.h"
#include "util/status.h"

namespace llmasos::jobs {

enum class JobState { kQueued, kRunning, kPaused, kSucceeded, kFailed, kCancelled };

std::string_view JobStateName(JobState s);
// InvalidArgument naming the unknown state and the known ones.
StatusOr<JobState> ParseJobState(std::string_view name);
// succeeded, failed and cancelled: nothing changes the job any more.
bool IsTerminal(JobState s);

inline constexpr size_t kMaxLogLines = 2000;
inline constexpr size_t kMaxLogLineBytes = 4096;  // longer lines are cut

struct JobProgress {
  int64_t step = 0;          // optimiser steps done
  int64_t total_steps = 0;   // 0: not known yet
  double epoch = 0.0;
  double loss = -1.0;        // the last step's training loss; -1: none yet
  double eval_loss = -1.0;   // the last held-out loss; -1: none yet
  double tokens_per_second = 0.0;
  double seconds_left = -1.0;  // -1: not known
};

struct JobRecord {
  int64_t id = 0;
  std::string kind;  // "finetune"
  std::string spec;  // the validated spec as JSON
  JobState state = JobState::kQueued;
  JobProgress progress;
  int64_t created_unix = 0;
  std::optional<int64_t> started_unix;  // first time it ran
  std::optional<int64_t> ended_unix;    // when it reached a terminal state
  std::string error;                    // why it failed
  std::string result;                   // JSON (the adapter made, losses); "" until it ends
};

// "job-7" for 7.
std::string JobIdText(int64_t id);
// "job-7" or "7" -> 7; InvalidArgument for anything else.
StatusOr<int64_t> ParseJobId(std::string_view text);

struct LogLine {
  int64_t seq = 0;  // 1, 2, ... per job
  int64_t at_unix = 0;
  std::string line;
};

class JobStore {
 public:
  // Opens (creating) `path`, usually $LLMASOS_HOME/state.db, and migrates the jobs' tables.
  static StatusOr<std::unique_ptr<JobStore>> Open(const std::string& path);

  // A new queued job. REQUIRES: spec validated by the caller.
  StatusOr<JobRecord> Submit(std::string_view kind, std::string_view spec, int64_t now_unix);
  // NotFound naming the id.
  StatusOr<JobRecord> Get(int64_t id);
  // Every job, newest first; `state` filters when set.
  StatusOr<std::vector<JobRecord>> List(std::optional<JobState> state = std::nullopt);
  // The oldest queued job, if any.
  StatusOr<std::optional<JobRecord>> NextQueued();

  // Moves job `id` from one of `from` to `to`, setting started (first run) and ended (terminal)
  // times; `error` and `result` are stored when non-empty. FailedPrecondition naming the
  // job's state when it is in none of `from`; NotFound for an unknown id.
  StatusOr<JobRecord> Transition(int64_t id, std::initializer_list<JobState> from, JobState to, int64_t now_unix,
                                 std::string_view error = {}, std::string_view result = {});
  Status SetProgress(int64_t id, const JobProgress& progress);
  // Jobs found running (their daemon stopped): queued again, oldest first. Returns their ids.
  StatusOr<std::vector<int64_t>> RequeueInterrupted();

  // Appends a line to the job's log (cut at kMaxLogLineBytes, made well-formed UTF-8),
  // dropping its oldest lines past kMaxLogLines. Errors are stored as well-formed UTF-8 too.
  Status AppendLog(int64_t id, std::string_view line, int64_t now_unix);
  // The job's lines with seq > after_seq, oldest first, at most `limit`.
  StatusOr<std::vector<LogLine>> Log(int64_t id, int64_t after_seq = 0, size_t limit = kMaxLogLines);

 private:
  explicit JobStore(std::unique_ptr<store::Database> db) : db_(std::move(db)) {}
  StatusOr<JobRecord> GetLocked(int64_t id);

  std::mutex mu_;
  std::unique_ptr<store::Database> db_;  // GUARDED_BY(mu_)
};

}  // namespace llmasos::jobs

#endif  // LLMASOS_SERVICES_JOBS_JOB_STORE_H_
