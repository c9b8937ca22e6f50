// A kind of job the job runner (job_runner.h) runs: "finetune" (finetune.h) here, "batch"
// (api/batch_job.h) from the layer that owns inference. A kind validates the body of
// POST /os/jobs before the job is queued and runs (or resumes) a job; the runner owns the
// states, the log, pausing and cancelling.
//
// Thread safety: Validate may be called from any thread while Run runs on the job thread.
#ifndef LLMASOS_SERVICES_JOBS_JOB_KIND_H_
#define LLMASOS_SERVICES_JOBS_JOB_KIND_H_

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "services/jobs/job_store.h"
#include "util/status.h"

namespace llmasos::jobs {

// What a running job sees of its runner. Used on the job thread only.
class JobControl {
 public:
  virtual ~JobControl() = default;
  // The job's own directory (created), for its checkpoints and files.
  virtual const std::string& dir() const = 0;
  virtual void Log(const std::string& line) = 0;
  virtual void SetProgress(const JobProgress& progress) = 0;
  // True once the job was asked to stop (pause, cancel, the daemon stopping): it returns from
  // Run at its next safe point with completed = false, able to resume later.
  virtual bool StopRequested() = 0;
  // Waits while inference has work (the runner's inference_busy), for a job that competes
  // with inference for the CPU; returns false at once when a stop was asked.
  virtual bool YieldToInference() = 0;
};

struct JobOutcome {
  // false: it stopped on a stop request before finishing; Run again resumes it.
  bool completed = false;
  nlohmann::json result;  // what it made (a JSON object; GET /os/jobs/{id} shows it)
  std::string summary;    // the last line of its log: "succeeded: ..."
  std::string stopped_at; // completed false: where it stopped ("step 12", "40 of 100 prompts")
};

// The error for a bad field of a job's spec: InvalidArgument "FIELD: WHAT", with *bad_field
// (optional) set to FIELD, as Validate and the runner report it.
Status SpecFieldError(std::string* bad_field, const std::string& field, const std::string& what);

class JobKind {
 public:
  virtual ~JobKind() = default;
  // "finetune", "batch": the body's "kind".
  virtual std::string_view name() const = 0;
  // Validates the body of POST /os/jobs (its "kind" already matched): InvalidArgument
  // "FIELD: ..." with *bad_field set (optional) for a bad field, a missing file, a model that
  // does not resolve.
  virtual Status Validate(const nlohmann::json& body, std::string* bad_field) = 0;
  // Runs the job `job` (its spec validated at submission), from its start or from where it
  // stopped before. An error fails the job with its message.
  virtual StatusOr<JobOutcome> Run(const JobRecord& job, JobControl& control) = 0;
};

}  // namespace llmasos::jobs

#endif  // LLMASOS_SERVICES_JOBS_JOB_KIND_H_
