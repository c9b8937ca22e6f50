#include "services/jobs/job_runner.h"

#include <chrono>
#include <filesystem>

#include "util/logging.h"
#include "util/thread_pool.h"

namespace llmasos::jobs {
namespace {

using nlohmann::json;

int64_t SystemNowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Status SpecFieldError(std::string* bad_field, const std::string& field, const std::string& what) {
  if (bad_field != nullptr) *bad_field = field;
  return InvalidArgumentError(field + ": " + what);
}

JobRunner::JobRunner(JobStore* store, JobRunnerOptions options, std::vector<std::unique_ptr<JobKind>> kinds)
    : store_(store), options_(std::move(options)), kinds_(std::move(kinds)) {}

StatusOr<std::unique_ptr<JobRunner>> JobRunner::Start(JobStore* store, JobRunnerOptions options,
                                                      std::vector<std::unique_ptr<JobKind>> kinds) {
  if (options.jobs_dir.empty()) return InvalidArgumentError("the job runner needs a directory for its jobs");
  std::error_code ec;
  std::filesystem::create_directories(options.jobs_dir, ec);
  if (ec) return IoError("creating '" + options.jobs_dir + "': " + ec.message());
  kinds.insert(kinds.begin(), NewFinetuneJobKind(options.checkpoint_every, options.threads));
  std::unique_ptr<JobRunner> runner(new JobRunner(store, std::move(options), std::move(kinds)));
  ASSIGN_OR_RETURN(std::vector<int64_t> requeued, store->RequeueInterrupted());
  for (int64_t id : requeued) runner->Log(id, "the daemon stopped while this job ran; queued again to resume");
  runner->thread_ = std::thread([r = runner.get()] { r->Loop(); });
  return runner;
}

JobRunner::~JobRunner() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    if (running_id_ != 0) stop_ = StopRequest::kShutdown;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t JobRunner::Now() const { return options_.now_unix ? options_.now_unix() : SystemNowUnix(); }

std::string JobRunner::JobDir(int64_t id) const { return options_.jobs_dir + "/" + JobIdText(id); }

void JobRunner::Log(int64_t id, const std::string& line) {
  if (Status s = store_->AppendLog(id, line, Now()); !s.ok()) {
    LOG(kWarning) << "jobs: could not log for " << JobIdText(id) << ": " << s.ToString();
  }
}

JobKind* JobRunner::FindKind(std::string_view name) const {
  for (const auto& k : kinds_) {
    if (k->name() == name) return k.get();
  }
  return nullptr;
}

std::string JobRunner::KindNames() const {
  std::string names;
  for (const auto& k : kinds_) names += (names.empty() ? "\"" : ", \"") + std::string(k->name()) + "\"";
  return names;
}

StatusOr<JobRecord> JobRunner::Submit(const json& body, std::string* bad_field) {
  if (!body.is_object()) return InvalidArgumentError("a job is a JSON object");
  auto kind_field = body.find("kind");
  JobKind* kind = nullptr;
  if (kind_field != body.end() && kind_field->is_string()) kind = FindKind(kind_field->get_ref<const std::string&>());
  if (kind == nullptr) return SpecFieldError(bad_field, "kind", "must be one of " + KindNames());
  RETURN_IF_ERROR(kind->Validate(body, bad_field));
  JobRecord job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(job, store_->Submit(kind->name(), body.dump(), Now()));
  }
  Log(job.id, "submitted: " + body.dump());
  cv_.notify_all();
  return job;
}

StatusOr<JobRecord> JobRunner::StopRunning(int64_t id, StopRequest why, std::unique_lock<std::mutex>& lock) {
  stop_ = why;
  cv_.notify_all();
  cv_.wait_for(lock, options_.ack_timeout, [&] { return running_id_ != id; });
  return store_->Get(id);
}

StatusOr<JobRecord> JobRunner::Pause(int64_t id) {
  std::unique_lock<std::mutex> lock(mu_);
  if (running_id_ == id) return StopRunning(id, StopRequest::kPause, lock);
  ASSIGN_OR_RETURN(JobRecord job, store_->Get(id));
  if (job.state == JobState::kPaused) return job;
  ASSIGN_OR_RETURN(job, store_->Transition(id, {JobState::kQueued}, JobState::kPaused, Now()));
  lock.unlock();
  Log(id, "paused before it started");
  return job;
}

StatusOr<JobRecord> JobRunner::Resume(int64_t id) {
  std::unique_lock<std::mutex> lock(mu_);
  ASSIGN_OR_RETURN(JobRecord job, store_->Get(id));
  if (job.state == JobState::kQueued || job.state == JobState::kRunning) return job;
  ASSIGN_OR_RETURN(job, store_->Transition(id, {JobState::kPaused}, JobState::kQueued, Now()));
  lock.unlock();
  Log(id, "resumed: queued again");
  cv_.notify_all();
  return job;
}

StatusOr<JobRecord> JobRunner::Cancel(int64_t id) {
  std::unique_lock<std::mutex> lock(mu_);
  if (running_id_ == id) return StopRunning(id, StopRequest::kCancel, lock);
  ASSIGN_OR_RETURN(JobRecord job, store_->Get(id));
  if (job.state == JobState::kCancelled) return job;
  ASSIGN_OR_RETURN(job, store_->Transition(id, {JobState::kQueued, JobState::kPaused}, JobState::kCancelled, Now()));
  lock.unlock();
  std::error_code ec;
  std::filesystem::remove_all(JobDir(id), ec);
  Log(id, "cancelled");
  return job;
}

void JobRunner::Loop() {
  // Training is the machine's background work: the job thread and the pool it makes (whose
  // threads inherit the niceness) give the CPU to anything else that wants it.
  if (!SetThisThreadNice(options_.nice)) {
    LOG(kWarning) << "jobs: could not lower the job thread's priority";
  }
  std::unique_lock<std::mutex> lock(mu_);
  while (!shutdown_) {
    auto next = store_->NextQueued();
    if (!next.ok()) {
      LOG(kError) << "jobs: reading the queue: " << next.status().ToString();
      cv_.wait_for(lock, std::chrono::seconds(5), [&] { return shutdown_; });
      continue;
    }
    if (!next->has_value()) {
      cv_.wait(lock);
      continue;
    }
    const int64_t id = (*next)->id;
    auto started = store_->Transition(id, {JobState::kQueued}, JobState::kRunning, Now());
    if (!started.ok()) {
      LOG(kError) << "jobs: starting " << JobIdText(id) << ": " << started.status().ToString();
      continue;
    }
    running_id_ = id;
    stop_ = StopRequest::kNone;
    lock.unlock();
    RunJob(*started);
    lock.lock();
    running_id_ = 0;
    stop_ = StopRequest::kNone;
    cv_.notify_all();
  }
}

// What the running job sees of its runner.
class JobRunner::Control : public JobControl {
 public:
  Control(JobRunner* runner, int64_t id, std::string dir) : runner_(runner), id_(id), dir_(std::move(dir)) {}
  const std::string& dir() const override { return dir_; }
  void Log(const std::string& line) override { runner_->Log(id_, line); }
  void SetProgress(const JobProgress& progress) override {
    if (Status s = runner_->store_->SetProgress(id_, progress); !s.ok()) LOG(kWarning) << "jobs: " << s.ToString();
  }
  bool StopRequested() override {
    std::lock_guard<std::mutex> lock(runner_->mu_);
    return runner_->stop_ != StopRequest::kNone;
  }
  bool YieldToInference() override {
    std::unique_lock<std::mutex> lock(runner_->mu_);
    const JobRunnerOptions& o = runner_->options_;
    while (runner_->stop_ == StopRequest::kNone && o.inference_busy && o.inference_busy()) {
      runner_->cv_.wait_for(lock, o.yield_poll);
    }
    return runner_->stop_ == StopRequest::kNone;
  }

 private:
  JobRunner* const runner_;
  const int64_t id_;
  const std::string dir_;
};

void JobRunner::RunJob(const JobRecord& job) {
  const int64_t id = job.id;
  auto end = [&](JobState to, const std::string& error, const std::string& result, const std::string& line) {
    Log(id, line);
    if (auto s = store_->Transition(id, {JobState::kRunning}, to, Now(), error, result); !s.ok()) {
      LOG(kError) << "jobs: ending " << JobIdText(id) << ": " << s.status().ToString();
    }
  };
  JobKind* kind = FindKind(job.kind);
  if (kind == nullptr) {
    const std::string error = "this daemon runs no jobs of kind '" + job.kind + "' (it runs " + KindNames() + ")";
    end(JobState::kFailed, error, "", "failed: " + error);
    return;
  }
  const std::string dir = JobDir(id);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    end(JobState::kFailed, "creating '" + dir + "': " + ec.message(), "", "failed: cannot create its directory");
    return;
  }
  Log(id, job.started_unix ? "running again (resumes where it stopped)" : "running");
  Control control(this, id, dir);
  auto outcome = kind->Run(job, control);
  StopRequest stop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop = stop_;
  }
  if (!outcome.ok()) {
    end(JobState::kFailed, outcome.status().message(), "", "failed: " + outcome.status().message());
    return;
  }
  if (!outcome->completed) {
    switch (stop) {
      case StopRequest::kPause:
        end(JobState::kPaused, "", "", "paused after " + outcome->stopped_at);
        return;
      case StopRequest::kCancel:
        end(JobState::kCancelled, "", "", "cancelled after " + outcome->stopped_at);
        std::filesystem::remove_all(dir, ec);
        return;
      case StopRequest::kShutdown:
      case StopRequest::kNone:
        end(JobState::kQueued, "", "", "stopped after " + outcome->stopped_at + " as the daemon stops; queued to resume");
        return;
    }
  }
  end(JobState::kSucceeded, "", outcome->result.is_null() ? "" : outcome->result.dump(), outcome->summary);
}

}  // namespace llmasos::jobs
