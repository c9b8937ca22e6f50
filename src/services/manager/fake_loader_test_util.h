// Test doubles for the model manager: a clock that threads may read while the test moves it,
// a loader whose load time, size and failures the test controls, and a temporary registry
// holding tiny GGUF versions.
#ifndef LLMASOS_SERVICES_MANAGER_FAKE_LOADER_TEST_UTIL_H_
#define LLMASOS_SERVICES_MANAGER_FAKE_LOADER_TEST_UTIL_H_

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "model/arch/tiny_model.h"
#include "services/manager/loader.h"
#include "services/manager/model_manager.h"
#include "services/registry/registry.h"
#include "services/registry/test_home.h"
#include "util/clock.h"
#include "util/status.h"

namespace llmasos::manager {

// SimulatedClock, but safe to read from any thread while the test advances it.
class ManualClock : public Clock {
 public:
  TimePoint Now() const override {
    return TimePoint(Duration(ticks_.load(std::memory_order_acquire)));
  }
  void Advance(Duration d) { ticks_.fetch_add(d.count(), std::memory_order_acq_rel); }

 private:
  std::atomic<Duration::rep> ticks_{std::chrono::duration_cast<Duration>(std::chrono::hours(1)).count()};
};

// Loads nothing; each "name@version" behaves as set with Set (default: 100 bytes, instant).
class FakeLoader : public Loader {
 public:
  struct Behavior {
    uint64_t bytes = 100;
    int failures = 0;                 // the next N loads fail with kDataLoss
    Duration load_time{};     // the clock advances this much during the load
    bool gated = false;               // the load blocks until Open(label)
  };

  explicit FakeLoader(ManualClock* clock) : clock_(clock) {}

  void Set(const std::string& label, const Behavior& b) {
    std::lock_guard<std::mutex> lock(mu_);
    behavior_[label] = b;
  }
  void Open(const std::string& label) {
    std::lock_guard<std::mutex> lock(mu_);
    behavior_[label].gated = false;
    cv_.notify_all();
  }
  // Blocks until a load of `label` has started.
  void WaitUntilLoading(const std::string& label) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return started_[label] > 0; });
  }
  int loads(const std::string& label) {
    std::lock_guard<std::mutex> lock(mu_);
    return started_[label];
  }

  uint64_t EstimateBytes(const registry::ResolvedModel& m) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = behavior_.find(Label(m));
    return it == behavior_.end() ? Behavior().bytes : it->second.bytes;
  }

  StatusOr<std::unique_ptr<LoadedModel>> Load(const registry::ResolvedModel& m) override {
    const std::string label = Label(m);
    std::unique_lock<std::mutex> lock(mu_);
    Behavior& b = behavior_[label];
    started_[label]++;
    cv_.notify_all();
    clock_->Advance(b.load_time);
    cv_.wait(lock, [&] { return !behavior_[label].gated; });
    if (b.failures > 0) {
      b.failures--;
      return DataLossError("fake load of " + label + " failed");
    }
    auto loaded = std::make_unique<LoadedModel>();
    loaded->resident_bytes = b.bytes;
    return loaded;
  }

 private:
  static std::string Label(const registry::ResolvedModel& m) { return m.manifest.name + "@" + m.manifest.version; }

  ManualClock* clock_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Behavior> behavior_;
  std::map<std::string, int> started_;
};

// A registry in a temporary home. Add imports a tiny GGUF (different seeds give different
// weights and digests) as name@version.
class TestRegistry {
 public:
  TestRegistry() {
    auto r = registry::Registry::Open(home_.path());
    CHECK(r.ok()) << r.status().ToString();
    registry_ = std::move(r).value();
  }

  registry::Manifest Add(const std::string& name, const std::string& version, uint64_t seed,
                         bool move_latest = true) {
    arch::TinyModelSpec spec;
    spec.seed = seed;
    spec.type = cpu::TensorType::kF32;
    auto bytes = arch::MakeTinyModel(spec);
    CHECK(bytes.ok()) << bytes.status().ToString();
    return AddFile(name, version, *bytes, "seed" + std::to_string(seed), move_latest);
  }
  // Imports `bytes` (any GGUF file, e.g. an adapter) as name@version.
  registry::Manifest AddFile(const std::string& name, const std::string& version, const std::vector<uint8_t>& bytes,
                             const std::string& file_stem, bool move_latest = true) {
    const std::string file = home_.path() + "/" + file_stem + ".gguf";
    registry::WriteBytes(file, bytes);
    registry::ImportOptions o;
    o.file = file;
    o.name = name;
    o.version = version;
    o.move_latest = move_latest;
    auto m = registry_->Import(o);
    CHECK(m.ok()) << m.status().ToString();
    return *m;
  }

  registry::Registry* get() { return registry_.get(); }
  registry::Registry* operator->() { return registry_.get(); }
  bool Marked(const std::string& ref) {
    auto e = registry_->Show(ref);
    CHECK(e.ok()) << e.status().ToString();
    return e->loaded;
  }

 private:
  registry::TempHome home_;
  std::unique_ptr<registry::Registry> registry_;
};

// A manager over `reg` with a FakeLoader on `clock`; *loader (optional) receives the loader,
// which the manager owns.
inline std::unique_ptr<ModelManager> NewFakeManager(TestRegistry& reg, ManualClock& clock, ManagerOptions o,
                                                    FakeLoader** loader = nullptr) {
  o.clock = &clock;
  auto fake = std::make_unique<FakeLoader>(&clock);
  if (loader != nullptr) *loader = fake.get();
  auto m = ModelManager::Create(reg.get(), std::move(fake), o);
  CHECK(m.ok()) << m.status().ToString();
  return std::move(m).value();
}

}  // namespace llmasos::manager

#endif  // LLMASOS_SERVICES_MANAGER_FAKE_LOADER_TEST_UTIL_H_
