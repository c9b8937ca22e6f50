#include "services/jobs/job_store.h"

#include <sqlite3.h>  // SQLITE_ROW, SQLITE_DONE

#include <algorithm>

#include "util/utf8.h"

namespace llmasos::jobs {
namespace {

using store::Stmt;

// Migrations of the jobs' tables; entry i brings the schema from version i to i + 1.
const char* const kMigrations[] = {
    R"sql(
    CREATE TABLE jobs(
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      kind TEXT NOT NULL,
      spec TEXT NOT NULL,
      state TEXT NOT NULL,
      step INTEGER NOT NULL DEFAULT 0,
      total_steps INTEGER NOT NULL DEFAULT 0,
      epoch REAL NOT NULL DEFAULT 0,
      loss REAL NOT NULL DEFAULT -1,
      eval_loss REAL NOT NULL DEFAULT -1,
      tokens_per_second REAL NOT NULL DEFAULT 0,
      seconds_left REAL NOT NULL DEFAULT -1,
      created INTEGER NOT NULL,
      started INTEGER,
      ended INTEGER,
      error TEXT NOT NULL DEFAULT '',
      result TEXT NOT NULL DEFAULT '');
    CREATE INDEX jobs_by_state ON jobs(state, id);
    CREATE TABLE job_log(
      job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
      seq INTEGER NOT NULL,
      at INTEGER NOT NULL,
      line TEXT NOT NULL,
      PRIMARY KEY(job_id, seq));
    )sql",
};

constexpr const char* kColumns =
    "id, kind, spec, state, step, total_steps, epoch, loss, eval_loss, tokens_per_second, seconds_left, "
    "created, started, ended, error, result";

constexpr JobState kAllStates[] = {JobState::kQueued,    JobState::kRunning, JobState::kPaused,
                                   JobState::kSucceeded, JobState::kFailed,  JobState::kCancelled};

JobRecord RowToRecord(const Stmt& s) {
  JobRecord r;
  r.id = s.Int(0);
  r.kind = s.Text(1);
  r.spec = s.Text(2);
  // The column only ever holds names this file wrote; an unknown one (a newer build's) reads
  // as failed rather than crashing.
  auto state = ParseJobState(s.Text(3));
  r.state = state.ok() ? *state : JobState::kFailed;
  r.progress = {.step = s.Int(4),
                .total_steps = s.Int(5),
                .epoch = s.Double(6),
                .loss = s.Double(7),
                .eval_loss = s.Double(8),
                .tokens_per_second = s.Double(9),
                .seconds_left = s.Double(10)};
  r.created_unix = s.Int(11);
  if (!s.IsNull(12)) r.started_unix = s.Int(12);
  if (!s.IsNull(13)) r.ended_unix = s.Int(13);
  r.error = s.Text(14);
  r.result = s.Text(15);
  return r;
}

}  // namespace

std::string_view JobStateName(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kPaused:
      return "paused";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "?";
}

StatusOr<JobState> ParseJobState(std::string_view name) {
  for (JobState s : kAllStates) {
    if (name == JobStateName(s)) return s;
  }
  return InvalidArgumentError("unknown job state '" + SanitizeUtf8(name.substr(0, 64)) +
                              "' (states: queued, running, paused, succeeded, failed, cancelled)");
}

bool IsTerminal(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

std::string JobIdText(int64_t id) { return "job-" + std::to_string(id); }

StatusOr<int64_t> ParseJobId(std::string_view text) {
  std::string_view digits = text;
  if (digits.starts_with("job-")) digits.remove_prefix(4);
  int64_t id = 0;
  bool ok = !digits.empty() && digits.size() <= 18;
  for (char c : digits) {
    if (c < '0' || c > '9') ok = false;
    if (ok) id = id * 10 + (c - '0');
  }
  if (!ok || id == 0) {
    return InvalidArgumentError("'" + std::string(text.substr(0, 64)) + "' is not a job id (job-N)");
  }
  return id;
}

StatusOr<std::unique_ptr<JobStore>> JobStore::Open(const std::string& path) {
  // Progress is written after every optimiser step: NORMAL makes those commits cost no fsync
  // and still survive the daemon being killed (WAL).
  ASSIGN_OR_RETURN(std::unique_ptr<store::Database> db, store::Database::Open(path, store::Durability::kNormal));
  RETURN_IF_ERROR(db->Migrate("jobs", kMigrations));
  return std::unique_ptr<JobStore>(new JobStore(std::move(db)));
}

StatusOr<JobRecord> JobStore::Submit(std::string_view kind, std::string_view spec, int64_t now_unix) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(*db_, "INSERT INTO jobs(kind, spec, state, created) VALUES(?, ?, 'queued', ?)");
  s.Bind(1, kind).Bind(2, spec).Bind(3, now_unix);
  RETURN_IF_ERROR(s.Run("storing a job"));
  return GetLocked(sqlite3_last_insert_rowid(db_->handle()));
}

StatusOr<JobRecord> JobStore::GetLocked(int64_t id) {
  const std::string sql = std::string("SELECT ") + kColumns + " FROM jobs WHERE id = ?";
  Stmt s(*db_, sql.c_str());
  s.Bind(1, id);
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return NotFoundError("no job " + JobIdText(id) + " (llmasos jobs list shows them)");
  if (rc != SQLITE_ROW) return db_->Error("reading a job");
  return RowToRecord(s);
}

StatusOr<JobRecord> JobStore::Get(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  return GetLocked(id);
}

StatusOr<std::vector<JobRecord>> JobStore::List(std::optional<JobState> state) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string sql = std::string("SELECT ") + kColumns + " FROM jobs" + (state ? " WHERE state = ?" : "") +
                          " ORDER BY id DESC";
  Stmt s(*db_, sql.c_str());
  if (state) s.Bind(1, JobStateName(*state));
  std::vector<JobRecord> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back(RowToRecord(s));
  if (rc != SQLITE_DONE) return db_->Error("listing jobs");
  return out;
}

StatusOr<std::optional<JobRecord>> JobStore::NextQueued() {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string sql = std::string("SELECT ") + kColumns + " FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1";
  Stmt s(*db_, sql.c_str());
  const int rc = s.Step();
  if (rc == SQLITE_DONE) return std::optional<JobRecord>();
  if (rc != SQLITE_ROW) return db_->Error("reading the job queue");
  return std::optional<JobRecord>(RowToRecord(s));
}

StatusOr<JobRecord> JobStore::Transition(int64_t id, std::initializer_list<JobState> from, JobState to,
                                         int64_t now_unix, std::string_view error, std::string_view result) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(db_->Begin());
  auto fail = [&](Status s) {
    db_->Rollback();
    return s;
  };
  const std::string error_text = SanitizeUtf8(error);
  error = error_text;
  auto current = GetLocked(id);
  if (!current.ok()) return fail(current.status());
  if (std::find(from.begin(), from.end(), current->state) == from.end()) {
    return fail(FailedPreconditionError(JobIdText(id) + " is " + std::string(JobStateName(current->state)) +
                                        ", so it cannot become " + std::string(JobStateName(to))));
  }
  Stmt s(*db_,
         "UPDATE jobs SET state = ?, started = CASE WHEN ? AND started IS NULL THEN ? ELSE started END, "
         "ended = CASE WHEN ? THEN ? ELSE NULL END, error = CASE WHEN ? = '' THEN error ELSE ? END, "
         "result = CASE WHEN ? = '' THEN result ELSE ? END WHERE id = ?");
  s.Bind(1, JobStateName(to)).Bind(2, int64_t{to == JobState::kRunning}).Bind(3, now_unix);
  s.Bind(4, int64_t{IsTerminal(to)}).Bind(5, now_unix).Bind(6, error).Bind(7, error).Bind(8, result).Bind(9, result);
  s.Bind(10, id);
  if (Status st = s.Run("updating a job"); !st.ok()) return fail(st);
  auto updated = GetLocked(id);
  if (!updated.ok()) return fail(updated.status());
  RETURN_IF_ERROR(db_->Commit());
  return updated;
}

Status JobStore::SetProgress(int64_t id, const JobProgress& p) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt s(*db_,
         "UPDATE jobs SET step = ?, total_steps = ?, epoch = ?, loss = ?, eval_loss = ?, tokens_per_second = ?, "
         "seconds_left = ? WHERE id = ?");
  s.Bind(1, p.step).Bind(2, p.total_steps).BindDouble(3, p.epoch).BindDouble(4, p.loss).BindDouble(5, p.eval_loss);
  s.BindDouble(6, p.tokens_per_second).BindDouble(7, p.seconds_left).Bind(8, id);
  return s.Run("recording a job's progress");
}

StatusOr<std::vector<int64_t>> JobStore::RequeueInterrupted() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<int64_t> ids;
  {
    Stmt q(*db_, "SELECT id FROM jobs WHERE state = 'running' ORDER BY id");
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) ids.push_back(q.Int(0));
    if (rc != SQLITE_DONE) return db_->Error("reading interrupted jobs");
  }
  Stmt s(*db_, "UPDATE jobs SET state = 'queued' WHERE state = 'running'");
  RETURN_IF_ERROR(s.Run("queueing interrupted jobs again"));
  return ids;
}

Status JobStore::AppendLog(int64_t id, std::string_view text, int64_t now_unix) {
  // Stored as well-formed UTF-8 (a character cut at the limit becomes U+FFFD), so that every
  // reader can put it in JSON.
  const std::string line = SanitizeUtf8(text.substr(0, kMaxLogLineBytes));
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(db_->Begin());
  Stmt add(*db_,
           "INSERT INTO job_log(job_id, seq, at, line) "
           "VALUES(?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_log WHERE job_id = ?1), ?2, ?3)");
  add.Bind(1, id).Bind(2, now_unix).Bind(3, line);
  if (Status s = add.Run("appending to a job's log"); !s.ok()) {
    db_->Rollback();
    return s;
  }
  Stmt trim(*db_,
            "DELETE FROM job_log WHERE job_id = ?1 AND seq <= (SELECT MAX(seq) FROM job_log WHERE job_id = ?1) - ?2");
  trim.Bind(1, id).Bind(2, static_cast<int64_t>(kMaxLogLines));
  if (Status s = trim.Run("trimming a job's log"); !s.ok()) {
    db_->Rollback();
    return s;
  }
  return db_->Commit();
}

StatusOr<std::vector<LogLine>> JobStore::Log(int64_t id, int64_t after_seq, size_t limit) {
  std::lock_guard<std::mutex> lock(mu_);
  RETURN_IF_ERROR(GetLocked(id).status());
  Stmt s(*db_, "SELECT seq, at, line FROM job_log WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?");
  s.Bind(1, id).Bind(2, after_seq).Bind(3, static_cast<int64_t>(std::min(limit, kMaxLogLines)));
  std::vector<LogLine> out;
  int rc;
  while ((rc = s.Step()) == SQLITE_ROW) out.push_back({.seq = s.Int(0), .at_unix = s.Int(1), .line = s.Text(2)});
  if (rc != SQLITE_DONE) return db_->Error("reading a job's log");
  return out;
}

}  // namespace llmasos::jobs
