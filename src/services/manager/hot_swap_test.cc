// Hot swap under load: four threads keep taking leases on "tiny:latest" and generating
// through kernel::Engine on the instance they got, while the main thread rolls the tag back
// and moves it forward again. No request may fail, each must produce the tokens of the version
// its lease names, and afterwards only the current version may be loaded.
//
// Each request runs its own Engine over the leased instance's model and tokenizer (the
// daemon will keep one engine per instance; the lease is what keeps the model alive either way).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "kernel/engine.h"
#include "services/manager/fake_loader_test_util.h"
#include "services/manager/model_service.h"
#include "util/thread_pool.h"

namespace llmasos::manager {
namespace {

constexpr int kThreads = 4;
constexpr int kRequestsPerPhase = 6;

// Greedy tokens for a fixed prompt, through the kernel's engine.
StatusOr<std::vector<kernel::TokenId>> Generate(const arch::Model& model, const tokenizer::Tokenizer& tok,
                                                ThreadPool& pool) {
  kernel::EngineOptions o;
  o.kv_budget_bytes = size_t{1} << 20;
  o.kv_block_tokens = 8;
  ASSIGN_OR_RETURN(auto engine, kernel::Engine::Create(model, tok, pool, o, RealClock()));
  kernel::ProcessSpec spec;
  spec.prompt = {40, 41, 42, 43, 44, 45, 46, 47};  // byte tokens
  spec.sampling.temperature = 0;
  spec.limits.max_tokens = 4;
  ASSIGN_OR_RETURN(kernel::ProcessId id, engine->Submit(spec));
  std::vector<std::unique_ptr<kernel::Process>> ended;
  for (int guard = 0; engine->HasWork() && guard < 1000; ++guard) {
    ASSIGN_OR_RETURN(kernel::StepReport r, engine->Step());
    (void)r;
    for (auto& p : engine->TakeEnded()) ended.push_back(std::move(p.process));
  }
  for (auto& p : engine->TakeEnded()) ended.push_back(std::move(p.process));
  if (ended.size() != 1 || ended[0]->id() != id || ended[0]->state() != kernel::ProcessState::kFinished) {
    return InternalError("the process did not finish");
  }
  auto g = ended[0]->generated();
  return std::vector<kernel::TokenId>(g.begin(), g.end());
}

// The tokens each version should produce, from its blob loaded on its own.
std::vector<kernel::TokenId> Expected(registry::Registry& reg, const std::string& ref) {
  auto resolved = reg.Resolve(ref);
  CHECK(resolved.ok()) << resolved.status().ToString();
  auto loaded = NewGgufLoader()->Load(*resolved);
  CHECK(loaded.ok()) << loaded.status().ToString();
  ThreadPool pool(1);
  auto tokens = Generate(*(*loaded)->model, *(*loaded)->tokenizer, pool);
  CHECK(tokens.ok()) << tokens.status().ToString();
  return *tokens;
}

TEST(HotSwapTest, TagMovesAndRollbackUnderLoadFailNoRequest) {
  TestRegistry reg;
  reg.Add("tiny", "1.0.0", 21);
  reg.Add("tiny", "1.1.0", 22);  // latest
  std::map<std::string, std::vector<kernel::TokenId>> expected = {
      {"1.0.0", Expected(*reg.get(), "tiny@1.0.0")}, {"1.1.0", Expected(*reg.get(), "tiny@1.1.0")}};
  ASSERT_NE(expected.at("1.0.0"), expected.at("1.1.0"));  // so a request on the wrong weights shows

  auto manager = ModelManager::Create(reg.get(), NewGgufLoader(), {});
  ASSERT_TRUE(manager.ok()) << manager.status().ToString();
  ModelService service(reg.get(), manager->get());

  std::mutex mu;
  std::condition_variable progress;
  std::map<std::string, int> served;  // GUARDED_BY(mu) by version
  std::vector<std::string> failures;  // GUARDED_BY(mu)
  std::atomic<bool> stop{false};

  auto worker = [&] {
    ThreadPool pool(1);
    while (!stop.load()) {
      std::string version, error;
      auto lease = (*manager)->Acquire("tiny:latest", {.max_wait = std::chrono::minutes(1)});
      if (!lease.ok()) {
        error = lease.status().ToString();
      } else {
        version = lease->manifest().version;
        auto tokens = Generate(*lease->model().model, *lease->model().tokenizer, pool);
        if (!tokens.ok()) {
          error = version + ": " + tokens.status().ToString();
        } else if (*tokens != expected.at(version)) {
          error = version + ": tokens of another version";
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      if (error.empty()) {
        served[version]++;
      } else {
        failures.push_back(error);
      }
      progress.notify_all();
    }
  };
  // Waits until `version` served `n` more requests than it had at the call (or a failure).
  auto wait_for_more = [&](const std::string& version, int n) {
    std::unique_lock<std::mutex> lock(mu);
    const int target = served[version] + n;
    progress.wait(lock, [&] { return served[version] >= target || !failures.empty(); });
  };

  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) threads.emplace_back(worker);
  ThreadPool pool(1);
  // One request of the main thread's own straddles each swap: it began on the old version,
  // others run on the new one meanwhile, and it finishes on the old one.
  auto swap_under = [&](const std::function<Status()>& swap, const std::string& from, const std::string& to) {
    auto straddling = (*manager)->Acquire("tiny:latest");
    ASSERT_TRUE(straddling.ok()) << straddling.status().ToString();
    ASSERT_EQ(straddling->manifest().version, from);
    ASSERT_TRUE(swap().ok());
    wait_for_more(to, kRequestsPerPhase);
    auto loaded = service.Loaded();
    ASSERT_EQ(loaded.size(), 2u);
    for (const InstanceInfo& i : loaded) EXPECT_EQ(i.superseded, i.manifest.version == from);
    auto tokens = Generate(*straddling->model().model, *straddling->model().tokenizer, pool);
    ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
    EXPECT_EQ(*tokens, expected.at(from));
  };

  wait_for_more("1.1.0", kRequestsPerPhase);
  swap_under([&] { return service.Rollback({.name = "tiny"}).status(); }, "1.1.0", "1.0.0");
  swap_under([&] { return service.Tag({.model = "tiny@1.1.0", .tag = "latest"}).status(); }, "1.0.0", "1.1.0");
  stop = true;
  for (auto& t : threads) t.join();

  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first: " << failures.front();
  EXPECT_GE(served["1.0.0"], kRequestsPerPhase);
  EXPECT_GE(served["1.1.0"], 2 * kRequestsPerPhase);
  auto loaded = service.Loaded();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].manifest.version, "1.1.0");
  EXPECT_EQ(loaded[0].num_leases, 0u);
  EXPECT_FALSE(reg.Marked("tiny@1.0.0"));
  EXPECT_TRUE(reg.Marked("tiny@1.1.0"));
}

}  // namespace
}  // namespace llmasos::manager
