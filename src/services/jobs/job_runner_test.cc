#include "services/jobs/job_runner.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "model/arch/tiny_model.h"
#include "services/registry/registry.h"
#include "services/registry/test_home.h"

namespace llmasos::jobs {
namespace {

using nlohmann::json;
using registry::TempHome;

// A home with a tiny model file and a small data set; LLMASOS_HOME points at it, so the
// adapters are registered there.
class JobRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("LLMASOS_HOME", home_.path().c_str(), 1);
    auto bytes = arch::MakeTinyModel(arch::TinyModelSpec{.seed = 3});
    ASSERT_TRUE(bytes.ok());
    model_ = home_.path() + "/tiny.gguf";
    registry::WriteBytes(model_, *bytes);
    data_ = home_.path() + "/d.jsonl";
    std::ofstream out(data_);
    for (int i = 0; i < 8; ++i) {
      out << json{{"prompt", "code of " + std::to_string(i) + "?"}, {"completion", "code " + std::to_string(i * 7)}}
                 .dump()
          << "\n";
    }
    out.close();
    auto store = JobStore::Open(home_.path() + "/state.db");
    ASSERT_TRUE(store.ok());
    store_ = std::move(store).value();
  }
  void TearDown() override { unsetenv("LLMASOS_HOME"); }

  std::unique_ptr<JobRunner> StartRunner() {
    JobRunnerOptions o;
    o.jobs_dir = home_.path() + "/jobs";
    o.threads = 1;
    o.nice = 0;
    o.inference_busy = [this] {
      ++busy_calls_;
      return busy_.load();
    };
    auto runner = JobRunner::Start(store_.get(), o);
    EXPECT_TRUE(runner.ok()) << runner.status().ToString();
    return std::move(runner).value();
  }
  json Body(int steps = 4) const {
    return {{"kind", "finetune"}, {"model", model_}, {"data", data_}, {"steps", steps}, {"rank", 2},
            {"lr", 0.01},         {"max_len", 64},  {"checkpoint_every", 1}, {"name", "tiny-tuned"}};
  }
  // Waits (bounded, for a hang) until `done` holds for job `id`.
  JobRecord WaitFor(int64_t id, const std::function<bool(const JobRecord&)>& done) {
    for (int i = 0; i < 60000; ++i) {
      auto job = store_->Get(id);
      if (job.ok() && done(*job)) return *job;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ADD_FAILURE() << "job " << id << " never got there";
    return *store_->Get(id);
  }
  JobRecord WaitUntilEnded(int64_t id) {
    return WaitFor(id, [](const JobRecord& j) { return IsTerminal(j.state); });
  }
  // Waits until the running job sits between steps, held by busy inference.
  void WaitUntilHeld() {
    const int64_t before = busy_calls_.load();
    for (int i = 0; i < 60000 && busy_calls_.load() < before + 3; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_GE(busy_calls_.load(), before + 3);
  }
  std::string LogText(int64_t id) {
    std::string text;
    auto log = store_->Log(id);
    EXPECT_TRUE(log.ok());
    for (const LogLine& l : *log) text += l.line + "\n";
    return text;
  }

  TempHome home_;
  std::string model_, data_;
  std::unique_ptr<JobStore> store_;
  std::atomic<bool> busy_{false};
  std::atomic<int64_t> busy_calls_{0};
};

TEST_F(JobRunnerTest, SubmitNamesTheBadField) {
  auto runner = StartRunner();
  struct Case {
    json patch;
    std::string field;
  };
  const Case cases[] = {{{{"kind", "batch"}}, "kind"},
                        {{{"data", "relative.jsonl"}}, "data"},
                        {{{"data", home_.path() + "/missing.jsonl"}}, "data"},
                        {{{"model", "no-such-model"}}, "model"},
                        {{{"rank", -2}}, "rank"}};
  for (const Case& c : cases) {
    json body = Body();
    body.merge_patch(c.patch);
    std::string field;
    auto job = runner->Submit(body, &field);
    ASSERT_FALSE(job.ok()) << body.dump();
    EXPECT_EQ(job.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(field, c.field) << job.status().message();
  }
  EXPECT_TRUE(store_->List()->empty());
}

TEST_F(JobRunnerTest, AJobRunsToSucceededAndRegistersItsAdapter) {
  auto runner = StartRunner();
  auto job = runner->Submit(Body());
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  const JobRecord done = WaitUntilEnded(job->id);
  ASSERT_EQ(done.state, JobState::kSucceeded) << done.error << "\n" << LogText(job->id);
  EXPECT_EQ(done.progress.step, 4);
  EXPECT_EQ(done.progress.total_steps, 4);
  EXPECT_GT(done.progress.loss, 0.0);
  EXPECT_TRUE(done.started_unix.has_value() && done.ended_unix.has_value());
  const json result = json::parse(done.result);
  EXPECT_EQ(result["adapter"], "tiny-tuned@1.0.0");
  EXPECT_TRUE(std::filesystem::exists(result["adapter_path"].get<std::string>()));
  EXPECT_FALSE(std::filesystem::exists(result["adapter_path"].get<std::string>() + ".ckpt"));
  auto reg = registry::Registry::Open(home_.path(), {});
  ASSERT_TRUE(reg.ok());
  auto resolved = (*reg)->Resolve("tiny-tuned@1.0.0");
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(resolved->manifest.digest, result["adapter_digest"]);
  const std::string log = LogText(job->id);
  EXPECT_NE(log.find("step 4/4"), std::string::npos) << log;
  EXPECT_NE(log.find("succeeded: tiny-tuned@1.0.0"), std::string::npos) << log;
}

TEST_F(JobRunnerTest, BusyInferenceHoldsTheJobBetweenStepsAndPauseResumeContinuesFromTheCheckpoint) {
  busy_ = true;
  auto runner = StartRunner();
  const int64_t id = runner->Submit(Body())->id;
  WaitUntilHeld();
  // While inference is busy the job cannot start its second step.
  EXPECT_EQ(store_->Get(id)->progress.step, 1);
  EXPECT_EQ(store_->Get(id)->state, JobState::kRunning);
  auto paused = runner->Pause(id);
  ASSERT_TRUE(paused.ok()) << paused.status().ToString();
  EXPECT_EQ(paused->state, JobState::kPaused);
  EXPECT_TRUE(std::filesystem::exists(runner->JobDir(id) + "/adapter.gguf.ckpt"));
  busy_ = false;
  auto resumed = runner->Resume(id);
  ASSERT_TRUE(resumed.ok());
  const JobRecord done = WaitUntilEnded(id);
  ASSERT_EQ(done.state, JobState::kSucceeded) << done.error;
  EXPECT_NE(LogText(id).find("resumed from the checkpoint at step 1"), std::string::npos) << LogText(id);
}

TEST_F(JobRunnerTest, CancelStopsARunningJobAndAQueuedOneAndRemovesTheirFiles) {
  busy_ = true;
  auto runner = StartRunner();
  const int64_t running = runner->Submit(Body())->id;
  const int64_t queued = runner->Submit(Body())->id;
  WaitUntilHeld();
  auto c1 = runner->Cancel(queued);
  ASSERT_TRUE(c1.ok());
  EXPECT_EQ(c1->state, JobState::kCancelled);
  auto c2 = runner->Cancel(running);
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2->state, JobState::kCancelled);
  EXPECT_FALSE(std::filesystem::exists(runner->JobDir(running)));
  // A cancelled job stays cancelled: it cannot be resumed.
  EXPECT_EQ(runner->Resume(running).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(runner->Cancel(999).status().code(), StatusCode::kNotFound);
}

TEST_F(JobRunnerTest, ARunningJobStoppedWithTheRunnerResumesInTheNextOne) {
  busy_ = true;
  int64_t id = 0;
  {
    auto runner = StartRunner();
    id = runner->Submit(Body())->id;
    WaitUntilHeld();
  }  // the daemon stops
  EXPECT_EQ(store_->Get(id)->state, JobState::kQueued);
  busy_ = false;
  auto runner = StartRunner();
  const JobRecord done = WaitUntilEnded(id);
  ASSERT_EQ(done.state, JobState::kSucceeded) << done.error;
  EXPECT_NE(LogText(id).find("resumed from the checkpoint at step 1"), std::string::npos) << LogText(id);
}

}  // namespace
}  // namespace llmasos::jobs

namespace llmasos::jobs {
namespace {

// A kind that counts to its spec's "n", one count every millisecond, stopping when asked; it
// resumes from the count its progress holds (what a batch job does with its results file).
class CountingKind : public JobKind {
 public:
  std::string_view name() const override { return "count"; }
  Status Validate(const nlohmann::json& body, std::string* bad_field) override {
    if (!body.contains("n") || !body["n"].is_number_integer()) return SpecFieldError(bad_field, "n", "is required");
    return OkStatus();
  }
  StatusOr<JobOutcome> Run(const JobRecord& job, JobControl& control) override {
    const int64_t n = nlohmann::json::parse(job.spec)["n"].get<int64_t>();
    JobOutcome outcome;
    for (int64_t i = job.progress.step; i < n; ++i) {
      if (control.StopRequested()) {
        outcome.stopped_at = std::to_string(i) + " of " + std::to_string(n);
        return outcome;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      control.SetProgress({.step = i + 1, .total_steps = n});
    }
    outcome.completed = true;
    outcome.result = {{"counted", n}};
    outcome.summary = "succeeded: counted";
    return outcome;
  }
};

TEST_F(JobRunnerTest, OtherKindsRunBesideFinetunesAndPauseAndResumeWhereTheyStopped) {
  JobRunnerOptions o;
  o.jobs_dir = home_.path() + "/jobs";
  o.nice = 0;
  std::vector<std::unique_ptr<JobKind>> kinds;
  kinds.push_back(std::make_unique<CountingKind>());
  auto runner = JobRunner::Start(store_.get(), o, std::move(kinds));
  ASSERT_TRUE(runner.ok()) << runner.status().ToString();

  std::string field;
  auto bad = (*runner)->Submit({{"kind", "count"}}, &field);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(field, "n");
  auto unknown = (*runner)->Submit({{"kind", "bake"}}, &field);
  EXPECT_EQ(field, "kind");
  EXPECT_NE(unknown.status().message().find("\"finetune\", \"count\""), std::string::npos)
      << unknown.status().message();

  auto job = (*runner)->Submit({{"kind", "count"}, {"n", 100000}});
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->kind, "count");
  WaitFor(job->id, [](const JobRecord& j) { return j.progress.step >= 3; });
  auto paused = (*runner)->Pause(job->id);
  ASSERT_TRUE(paused.ok());
  EXPECT_EQ(paused->state, JobState::kPaused);
  const int64_t at = paused->progress.step;
  auto log = store_->Log(job->id);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->back().line, "paused after " + std::to_string(at) + " of 100000");
  ASSERT_TRUE((*runner)->Cancel(job->id).ok());

  auto small = (*runner)->Submit({{"kind", "count"}, {"n", 5}});
  ASSERT_TRUE(small.ok());
  JobRecord done = WaitUntilEnded(small->id);
  EXPECT_EQ(done.state, JobState::kSucceeded);
  EXPECT_EQ(done.progress.step, 5);
  EXPECT_EQ(nlohmann::json::parse(done.result)["counted"], 5);
}

}  // namespace
}  // namespace llmasos::jobs
