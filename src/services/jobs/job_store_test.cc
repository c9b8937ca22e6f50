#include "services/jobs/job_store.h"

#include <gtest/gtest.h>

#include <sqlite3.h>

#include "services/registry/test_home.h"

namespace llmasos::jobs {
namespace {

using registry::TempHome;

std::unique_ptr<JobStore> OpenStore(const TempHome& home) {
  auto store = JobStore::Open(home.path() + "/state.db");
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return std::move(store).value();
}

TEST(JobStateTest, NamesRoundTripAndUnknownNamesAreRefused) {
  for (JobState s : {JobState::kQueued, JobState::kRunning, JobState::kPaused, JobState::kSucceeded,
                     JobState::kFailed, JobState::kCancelled}) {
    auto parsed = ParseJobState(JobStateName(s));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, s);
  }
  auto bad = ParseJobState("done");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'done'"), std::string::npos);
  EXPECT_TRUE(IsTerminal(JobState::kCancelled));
  EXPECT_FALSE(IsTerminal(JobState::kPaused));
}

TEST(JobIdTest, ParsesBothFormsAndRefusesOthers) {
  EXPECT_EQ(JobIdText(12), "job-12");
  EXPECT_EQ(*ParseJobId("job-12"), 12);
  EXPECT_EQ(*ParseJobId("12"), 12);
  for (const char* bad : {"", "job-", "job-0", "job-1x", "-3", "job-99999999999999999999", "jobs-1"}) {
    EXPECT_FALSE(ParseJobId(bad).ok()) << bad;
  }
}

TEST(JobStoreTest, SubmittedJobsAreQueuedInOrderAndListedNewestFirst) {
  TempHome home;
  auto store = OpenStore(home);
  auto a = store->Submit("finetune", R"({"model":"a"})", 100);
  auto b = store->Submit("finetune", R"({"model":"b"})", 101);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->state, JobState::kQueued);
  EXPECT_EQ(a->created_unix, 100);
  EXPECT_FALSE(a->started_unix.has_value());
  EXPECT_LT(a->id, b->id);
  auto next = store->NextQueued();
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ((*next)->id, a->id);
  EXPECT_EQ((*next)->spec, R"({"model":"a"})");
  auto all = store->List();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, b->id);
  auto none = store->List(JobState::kRunning);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(store->Get(b->id + 10).status().code(), StatusCode::kNotFound);
}

TEST(JobStoreTest, TransitionsFollowTheStateMachineAndRecordTimes) {
  TempHome home;
  auto store = OpenStore(home);
  const int64_t id = store->Submit("finetune", "{}", 100)->id;
  auto running = store->Transition(id, {JobState::kQueued}, JobState::kRunning, 110);
  ASSERT_TRUE(running.ok()) << running.status().ToString();
  EXPECT_EQ(running->started_unix, 110);
  // A job that is not queued cannot start again; the message names its state.
  auto again = store->Transition(id, {JobState::kQueued}, JobState::kRunning, 111);
  ASSERT_EQ(again.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(again.status().message().find("running"), std::string::npos);
  ASSERT_TRUE(store->Transition(id, {JobState::kRunning}, JobState::kPaused, 120).ok());
  ASSERT_TRUE(store->Transition(id, {JobState::kPaused}, JobState::kQueued, 130).ok());
  auto rerun = store->Transition(id, {JobState::kQueued}, JobState::kRunning, 140);
  EXPECT_EQ(rerun->started_unix, 110);  // the first start stays
  EXPECT_FALSE(rerun->ended_unix.has_value());
  auto done = store->Transition(id, {JobState::kRunning}, JobState::kSucceeded, 150, "", R"({"adapter":"x@1.0.0"})");
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->ended_unix, 150);
  EXPECT_EQ(done->result, R"({"adapter":"x@1.0.0"})");
  EXPECT_FALSE(store->Transition(id, {JobState::kQueued, JobState::kRunning, JobState::kPaused},
                                 JobState::kCancelled, 160)
                   .ok());
  const int64_t other = store->Submit("finetune", "{}", 100)->id;
  auto failed = store->Transition(other, {JobState::kQueued}, JobState::kFailed, 170, "no such model");
  EXPECT_EQ(failed->error, "no such model");
  EXPECT_EQ(store->Transition(999, {JobState::kQueued}, JobState::kRunning, 1).status().code(),
            StatusCode::kNotFound);
}

TEST(JobStoreTest, ProgressAndStateSurviveReopeningAndRunningJobsAreRequeued) {
  TempHome home;
  int64_t id = 0;
  {
    auto store = OpenStore(home);
    id = store->Submit("finetune", "{}", 100)->id;
    ASSERT_TRUE(store->Transition(id, {JobState::kQueued}, JobState::kRunning, 110).ok());
    JobProgress p{.step = 3, .total_steps = 10, .epoch = 1.5, .loss = 2.25, .eval_loss = 2.5,
                  .tokens_per_second = 400, .seconds_left = 7};
    ASSERT_TRUE(store->SetProgress(id, p).ok());
  }
  auto store = OpenStore(home);  // the daemon restarted
  auto job = store->Get(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(job->state, JobState::kRunning);
  EXPECT_EQ(job->progress.step, 3);
  EXPECT_EQ(job->progress.total_steps, 10);
  EXPECT_DOUBLE_EQ(job->progress.loss, 2.25);
  EXPECT_DOUBLE_EQ(job->progress.epoch, 1.5);
  auto requeued = store->RequeueInterrupted();
  ASSERT_TRUE(requeued.ok());
  EXPECT_EQ(*requeued, std::vector<int64_t>{id});
  EXPECT_EQ(store->Get(id)->state, JobState::kQueued);
  EXPECT_EQ(store->Get(id)->progress.step, 3);  // progress is kept for the resume
  EXPECT_TRUE(store->RequeueInterrupted()->empty());
}

TEST(JobStoreTest, LogKeepsTheNewestLinesAndCutsLongOnes) {
  TempHome home;
  auto store = OpenStore(home);
  const int64_t id = store->Submit("finetune", "{}", 100)->id;
  for (size_t i = 0; i < kMaxLogLines + 5; ++i) {
    ASSERT_TRUE(store->AppendLog(id, "line " + std::to_string(i), 200).ok());
  }
  auto log = store->Log(id);
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(log->size(), kMaxLogLines);
  EXPECT_EQ(log->front().line, "line 5");
  EXPECT_EQ(log->back().line, "line " + std::to_string(kMaxLogLines + 4));
  auto tail = store->Log(id, log->back().seq - 2);
  ASSERT_EQ(tail->size(), 2u);
  EXPECT_EQ(tail->back().seq, log->back().seq);
  ASSERT_TRUE(store->AppendLog(id, std::string(kMaxLogLineBytes + 100, 'x'), 201).ok());
  EXPECT_EQ(store->Log(id, 0, kMaxLogLines)->back().line.size(), kMaxLogLineBytes);
  // A character cut at the limit, or bytes that are not UTF-8, are stored as U+FFFD.
  ASSERT_TRUE(store->AppendLog(id, std::string(kMaxLogLineBytes - 1, 'x') + "\xc3\xa9", 202).ok());
  EXPECT_EQ(store->Log(id, 0, kMaxLogLines)->back().line, std::string(kMaxLogLineBytes - 1, 'x') + "\xef\xbf\xbd");
  ASSERT_TRUE(store->AppendLog(id, "bad \xff byte", 203).ok());
  EXPECT_EQ(store->Log(id, 0, kMaxLogLines)->back().line, "bad \xef\xbf\xbd byte");
  EXPECT_EQ(store->Log(id + 1).status().code(), StatusCode::kNotFound);
}

TEST(JobStoreTest, ADatabaseFromANewerBuildIsRefused) {
  TempHome home;
  { OpenStore(home); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((home.path() + "/state.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE schema_versions SET version = 99 WHERE component = 'jobs'", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto store = JobStore::Open(home.path() + "/state.db");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace llmasos::jobs
