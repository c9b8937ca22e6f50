#include "services/jobs/job_runner.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "util/logging.h"

namespace llmasos::jobs {
namespace {

using nlohmann::json;

int64_t SystemNowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

JobRunner::JobRunner(JobStore* store, JobRunnerOptions options) : store_(store), options_(std::move(options)) {}

StatusOr<std::unique_ptr<JobRunner>> JobRunner::Start(JobStore* store, JobRunnerOptions options) {
  if (options.jobs_dir.empty()) return InvalidArgumentError("the job runner needs a directory for its jobs");
  std::error_code ec;
  std::filesystem::create_directories(options.jobs_dir, ec);
  if (ec) return IoError("creating '" + options.jobs_dir + "': " + ec.message());
  std::unique_ptr<JobRunner> runner(new JobRunner(store, std::move(options)));
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

StatusOr<JobRecord> JobRunner::Submit(const json& body, std::string* bad_field) {
  if (!body.is_object()) return InvalidArgumentError("a job is a JSON object");
  auto kind = body.find("kind");
  if (kind == body.end() || !kind->is_string() || *kind != "finetune") {
    if (bad_field != nullptr) *bad_field = "kind";
    return InvalidArgumentError("kind: must be \"finetune\" (the only kind of job so far)");
  }
  ASSIGN_OR_RETURN(FinetuneSpec spec, FinetuneSpecFromJson(body, bad_field));
  auto fail = [&](const std::string& field, const std::string& what) {
    if (bad_field != nullptr) *bad_field = field;
    return InvalidArgumentError(field + ": " + what);
  };
  std::error_code ec;
  if (!std::filesystem::path(spec.data).is_absolute()) {
    return fail("data", "must be an absolute path on the daemon's machine");
  }
  if (!std::filesystem::is_regular_file(spec.data, ec)) return fail("data", "no file '" + spec.data + "'");
  if (auto base = ResolveModelSource(spec.model); !base.ok()) return fail("model", base.status().message());
  JobRecord job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSIGN_OR_RETURN(job, store_->Submit("finetune", body.dump(), Now()));
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
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), options_.nice) != 0) {
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

void JobRunner::RunJob(const JobRecord& job) {
  const int64_t id = job.id;
  auto end = [&](JobState to, const std::string& error, const std::string& result, const std::string& line) {
    Log(id, line);
    if (auto s = store_->Transition(id, {JobState::kRunning}, to, Now(), error, result); !s.ok()) {
      LOG(kError) << "jobs: ending " << JobIdText(id) << ": " << s.status().ToString();
    }
  };
  const json body = json::parse(job.spec, nullptr, false);
  auto spec = FinetuneSpecFromJson(body);
  if (!spec.ok()) {
    end(JobState::kFailed, spec.status().message(), "", "failed: " + spec.status().message());
    return;
  }
  const std::string dir = JobDir(id);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    end(JobState::kFailed, "creating '" + dir + "': " + ec.message(), "", "failed: cannot create its directory");
    return;
  }
  spec->out = dir + "/adapter.gguf";
  spec->checkpoint = spec->out + ".ckpt";
  if (spec->train.checkpoint_every == 0) spec->train.checkpoint_every = options_.checkpoint_every;
  if (spec->threads == 0) spec->threads = options_.threads;
  Log(id, job.started_unix ? "running again (resumes from its checkpoint, if it has one)" : "running");

  const auto t0 = std::chrono::steady_clock::now();
  size_t first_step = 0;
  FinetuneHooks hooks;
  hooks.log = [&](const std::string& line) { Log(id, line); };
  hooks.on_step = [&](const train::StepReport& r) {
    if (first_step == 0) first_step = r.step;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per_step = secs / static_cast<double>(r.step - first_step + 1);
    JobProgress p{.step = static_cast<int64_t>(r.step),
                  .total_steps = static_cast<int64_t>(r.total_steps),
                  .epoch = static_cast<double>(r.epoch),
                  .loss = r.loss,
                  .eval_loss = r.eval_loss >= 0 ? r.eval_loss : job.progress.eval_loss,
                  .tokens_per_second = r.tokens_per_second,
                  .seconds_left = per_step * static_cast<double>(r.total_steps - r.step)};
    if (Status s = store_->SetProgress(id, p); !s.ok()) LOG(kWarning) << "jobs: " << s.ToString();
    Log(id, FormatStepReport(r));
    // Yield to inference before the next step; a stop request ends the wait.
    std::unique_lock<std::mutex> lock(mu_);
    while (stop_ == StopRequest::kNone && r.step < r.total_steps && options_.inference_busy &&
           options_.inference_busy()) {
      cv_.wait_for(lock, options_.yield_poll);
    }
    return stop_ == StopRequest::kNone;
  };
  auto run = RunFinetune(*spec, hooks);
  StopRequest stop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop = stop_;
  }
  if (!run.ok()) {
    end(JobState::kFailed, run.status().message(), "", "failed: " + run.status().message());
    return;
  }
  if (!run->result.completed) {
    switch (stop) {
      case StopRequest::kPause:
        end(JobState::kPaused, "", "", "paused after step " + std::to_string(run->result.steps) + " (checkpoint written)");
        return;
      case StopRequest::kCancel:
        end(JobState::kCancelled, "", "", "cancelled after step " + std::to_string(run->result.steps));
        std::filesystem::remove_all(dir, ec);
        return;
      case StopRequest::kShutdown:
      case StopRequest::kNone:
        end(JobState::kQueued, "", "",
            "stopped after step " + std::to_string(run->result.steps) + " as the daemon stops; queued to resume");
        return;
    }
  }
  auto manifest = RegisterMadeModel(run->adapter_path, run->adapter_name, spec->version, "finetune", run->lineage,
                                    "the adapter");
  if (!manifest.ok()) {
    end(JobState::kFailed, manifest.status().message(), "", "failed: " + manifest.status().message());
    return;
  }
  const train::TrainResult& r = run->result;
  const json result = {{"adapter", manifest->name + "@" + manifest->version},
                       {"adapter_digest", manifest->digest},
                       {"adapter_path", run->adapter_path},
                       {"base", run->base.ref},
                       {"steps", run->total_steps},
                       {"first_loss", r.first_loss},
                       {"final_loss", r.final_loss},
                       {"initial_eval_loss", r.initial_eval_loss},
                       {"final_eval_loss", r.final_eval_loss}};
  char line[256];
  std::snprintf(line, sizeof(line), "succeeded: %s@%s, loss %.4f -> %.4f", manifest->name.c_str(),
                manifest->version.c_str(), r.first_loss, r.final_loss);
  end(JobState::kSucceeded, "", result.dump(), line);
}

}  // namespace llmasos::jobs
