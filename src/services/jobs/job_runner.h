// The daemon's job runner: one job thread that works through the queued jobs of a JobStore,
// oldest first, one at a time. What a job does is its kind's (job_kind.h): "finetune" always,
// others as the daemon adds them (a batch of prompts, api/batch_job.h).
//
// A fine-tune runs at a low priority. Its thread (and the thread pool it trains on, whose threads
// inherit it) has the niceness `nice`, and between two optimiser steps it yields to inference:
// while `inference_busy` says some engine has processes waiting or running, the job waits
// before its next step. So a request waits for at most the one step under way.
//
// A fine-tune's files live in jobs_dir/job-N/: adapter.gguf (when it succeeds) and
// adapter.gguf.ckpt, its LoRA parameters and AdamW moments, written every checkpoint_every
// steps (the spec's "checkpoint_every", else the option). A job that was running when the daemon
// stopped (killed or not) is queued again at Start and resumes from its last checkpoint.
//
// Pause, resume and cancel: a queued job pauses or is cancelled at once; a running one stops
// at its next safe point (a fine-tune after its current step, with a checkpoint) and the call
// waits for that, up to ack_timeout. Resume queues a paused job again; it continues from where
// it stopped. Cancelling removes the job's directory.
//
// Thread safety: every public method may be called from any thread.
#ifndef LLMASOS_SERVICES_JOBS_JOB_RUNNER_H_
#define LLMASOS_SERVICES_JOBS_JOB_RUNNER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "services/jobs/finetune.h"
#include "services/jobs/job_kind.h"
#include "services/jobs/job_store.h"
#include "util/status.h"

namespace llmasos::jobs {

struct JobRunnerOptions {
  std::string jobs_dir;          // usually $LLMASOS_HOME/jobs
  size_t checkpoint_every = 10;  // for specs that do not say
  size_t threads = 0;            // for specs that do not say; 0: all cores
  int nice = 19;                 // the job thread's niceness (0..19)
  // True while inference has work: the job waits before its next step. May be empty.
  std::function<bool()> inference_busy;
  std::chrono::milliseconds yield_poll{5};
  std::chrono::milliseconds ack_timeout{30000};
  // Seconds since the Unix epoch; tests replace it.
  std::function<int64_t()> now_unix;
};

class JobRunner {
 public:
  // Queues again the jobs a stopped daemon left running and starts the job thread, which
  // runs fine-tunes and the jobs of `kinds`. REQUIRES: store outlives the runner.
  static StatusOr<std::unique_ptr<JobRunner>> Start(JobStore* store, JobRunnerOptions options,
                                                    std::vector<std::unique_ptr<JobKind>> kinds = {});
  // Stops the job thread: a running job stops after its current step, with a checkpoint, and
  // is queued again for the next daemon.
  ~JobRunner();
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Validates and queues a job from the body of POST /os/jobs: {"kind": "finetune", ...}
  // (FinetuneSpecFromJson), {"kind": "batch", ...}. InvalidArgument "FIELD: ..." with
  // *bad_field set for an unknown kind or what its kind's Validate refuses.
  StatusOr<JobRecord> Submit(const nlohmann::json& body, std::string* bad_field = nullptr);
  StatusOr<JobRecord> Pause(int64_t id);
  StatusOr<JobRecord> Resume(int64_t id);
  StatusOr<JobRecord> Cancel(int64_t id);

  JobStore& store() { return *store_; }
  // The job's directory (adapter and checkpoint).
  std::string JobDir(int64_t id) const;

 private:
  enum class StopRequest { kNone, kPause, kCancel, kShutdown };
  class Control;

  JobRunner(JobStore* store, JobRunnerOptions options, std::vector<std::unique_ptr<JobKind>> kinds);
  JobKind* FindKind(std::string_view name) const;
  std::string KindNames() const;  // "\"finetune\", \"batch\""
  void Loop();
  void RunJob(const JobRecord& job);
  // Asks the running job `id` to stop and waits until it did (or ack_timeout passed).
  StatusOr<JobRecord> StopRunning(int64_t id, StopRequest why, std::unique_lock<std::mutex>& lock);
  int64_t Now() const;
  void Log(int64_t id, const std::string& line);

  JobStore* const store_;
  const JobRunnerOptions options_;
  const std::vector<std::unique_ptr<JobKind>> kinds_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_ = false;               // GUARDED_BY(mu_)
  int64_t running_id_ = 0;              // GUARDED_BY(mu_); 0: none
  StopRequest stop_ = StopRequest::kNone;  // GUARDED_BY(mu_): for running_id_
  std::thread thread_;
};

}  // namespace llmasos::jobs

#endif  // LLMASOS_SERVICES_JOBS_JOB_RUNNER_H_
