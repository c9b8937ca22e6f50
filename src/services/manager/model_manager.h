// The model manager: LLMasOS's loader. It turns a registry reference into a loaded model
// instance and decides when instances are loaded and unloaded.
//
//   - Loads on first use: Acquire resolves the reference through the registry on every call
//     and loads the version it names if no instance of it is loaded.
//   - Requests for a model that is still loading wait up to max_wait (real time), then get
//     kUnavailable "model X is loading, retry after N s" with N in AcquireInfo (the daemon's
//     503 Retry-After). N is the expected load time (size / the throughput of past loads)
//     minus the time already spent.
//   - keep_alive, per request or the default: how long an instance stays loaded after its last
//     lease ends. 0: unload at once; negative: forever. The last request's value wins.
//   - A memory budget in bytes and a limit on the number of loaded instances. Loading a model
//     that does not fit unloads idle, unpinned instances in least-recently-used order; if it
//     still does not fit (the rest are busy or pinned) the load fails with kResourceExhausted.
//     Admission uses the loader's estimate; the resident bytes it reports replace it after.
//   - Pinning: a pinned reference's instance is never evicted or expired.
//   - Hot swap: instances are keyed by the resolved (name, version, digest). When a reference
//     that used to reach instance A now resolves to B (a tag moved, a rollback), new requests
//     get B while A finishes its leases; an instance that no reference reaches any more is
//     superseded and unloads when its last lease ends. No request fails during the swap.
//   - Adapters: a reference "base+adapter[:scale]" (adapter_cache.h) leases the base's instance
//     and, with it, the adapter (Lease::adapter), loaded once per instance and kept in its
//     AdapterCache (at most max_adapters, least recently used forgotten first) until the
//     instance unloads. Errors name the adapter: kNotFound when the registry has no such
//     version, kInvalidArgument (naming both) when the file is no LoRA adapter for this base.
//   - The registry's loaded marks (Registry::SetLoaded) follow the instances; stale marks are
//     cleared when the manager starts.
//
// Locking: one mutex (mu_) guards the instance table, the pins, the budget accounting, the
// load-speed estimate and every Instance's mutable fields (the annotations name the manager's
// fields; Instance's own say so in model_manager.cc, where the analysis cannot follow them). Loading (Loader::Load), unloading (destroying a LoadedModel) and every
// registry call run without mu_, so a slow load never blocks requests for other models.
// Registry mark writes are ordered by marks_mu_, taken before mu_ and never while holding it;
// each write reads the current state under mu_, so the last write always matches it.
//
// Thread safety: all public methods may be called from any thread. A Lease is used by one
// thread at a time; every Lease must end before the manager is destroyed.
#ifndef LLMASOS_SERVICES_MANAGER_MODEL_MANAGER_H_
#define LLMASOS_SERVICES_MANAGER_MODEL_MANAGER_H_

#include <chrono>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kernel/event_bus.h"
#include "model/arch/lora_weights.h"
#include "services/manager/adapter_cache.h"
#include "services/manager/loader.h"
#include "services/registry/registry.h"
#include "util/clock.h"
#include "util/mutex.h"
#include "util/status.h"
#include "util/thread_annotations.h"

namespace llmasos::manager {

using ::llmasos::Duration;
using ::llmasos::TimePoint;

struct ManagerOptions {
  uint64_t memory_budget_bytes = 0;  // 0: no limit
  size_t max_loaded_models = 0;      // 0: no limit
  Duration default_keep_alive = std::chrono::minutes(5);  // negative: forever
  Duration default_max_wait = std::chrono::seconds(30);   // for requests that find a load running
  // Load speed assumed for the retry-after estimate until a load has been timed.
  double assumed_load_bytes_per_second = 500e6;
  // > 0: a thread unloads expired instances this often. 0: expiry is checked on each call
  // (and by ReapExpired), which is what tests with a simulated clock use.
  Duration reap_interval = Duration::zero();
  // true: instances are destroyed (engine threads joined, files unmapped) on a thread of the
  // manager's, never on the thread whose call let them go, so a caller that must not block
  // (the daemon's I/O threads ending a lease) never waits for an engine to stop. Their memory
  // is released a little after the budget stops counting it. false: destroyed in the call.
  bool unload_in_background = false;
  // Time for keep_alive and load timing; default the real steady clock. Must outlive the
  // manager and be safe to read from any thread.
  const Clock* clock = nullptr;
  // The kernel log (the daemon's /os/events): instances' loaded and unloaded events, and each
  // engine's process events (EngineThread::SetEventBus). Null: none. Must outlive the manager.
  kernel::EventBus* events = nullptr;
  // LoRA adapters each loaded instance keeps (vLLM's max_loras); >= 1.
  size_t max_adapters = 8;
};

struct AcquireOptions {
  std::optional<Duration> keep_alive = std::nullopt;  // unset: the default; 0: unload after; negative: forever
  std::optional<Duration> max_wait = std::nullopt;    // unset: the default
};

// Filled by a failed Acquire.
struct AcquireInfo {
  int64_t retry_after_seconds = 0;  // >= 1 with kUnavailable (the model is loading)
};

class ModelManager;
struct Instance;  // private to the manager

// Holding a lease keeps that exact instance loaded and usable. Move-only; ending it (the
// destructor or Release) may unload the instance (keep_alive 0, superseded, asked to unload).
class Lease {
 public:
  Lease() = default;
  ~Lease() { Release(); }
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  bool valid() const { return instance_ != nullptr; }
  void Release();

  // REQUIRES: valid().
  const registry::Manifest& manifest() const;
  const LoadedModel& model() const;
  // The adapter the reference named (for kernel::ProcessSpec::adapter); null: none.
  const std::shared_ptr<const arch::LoraWeights>& adapter() const { return adapter_; }

 private:
  friend class ModelManager;
  Lease(ModelManager* manager, Instance* instance) : manager_(manager), instance_(instance) {}
  ModelManager* manager_ = nullptr;
  Instance* instance_ = nullptr;
  std::shared_ptr<const arch::LoraWeights> adapter_;
};

// What Loaded() reports for one instance (what `ps` and /api/ps show).
struct InstanceInfo {
  uint64_t instance_id = 0;      // 1, 2, ... in load order, never reused (process ids are per instance)
  registry::Manifest manifest;
  bool loading = false;          // still loading (resident_bytes is the estimate)
  uint64_t resident_bytes = 0;
  size_t num_leases = 0;         // requests using it now
  bool pinned = false;
  bool superseded = false;       // no reference reaches it; unloads after its last lease
  Duration keep_alive{};         // negative: forever
  std::optional<Duration> expires_in = std::nullopt;  // idle, unpinned, finite keep_alive: time left
  std::vector<std::string> references;  // canonical references it was acquired by
  std::vector<CachedAdapterInfo> adapters;  // LoRA adapters loaded for it, most recently used first
  size_t max_adapters = 0;
};

// Loads and unloads of one version ("name@version") since the manager started (/metrics).
struct LoadCounts {
  uint64_t loads = 0;
  uint64_t failed_loads = 0;
  uint64_t unloads = 0;
};

struct UnloadOptions {
  // A busy instance: false unloads it when its last lease ends; true refuses
  // (kFailedPrecondition naming the number of requests).
  bool refuse_busy = false;
  // Also drop the pins that keep it (otherwise a pinned instance is refused).
  bool unpin = false;
};

struct UnloadResult {
  bool was_loaded = false;     // an instance of the version existed
  bool unloaded_now = false;   // it is gone; false: it goes when its last lease ends
};

class ModelManager {
 public:
  // `registry` must outlive the manager. Clears the registry's stale loaded marks.
  // InvalidArgument for options out of range.
  static StatusOr<std::unique_ptr<ModelManager>> Create(registry::Registry* registry,
                                                        std::unique_ptr<Loader> loader,
                                                        const ManagerOptions& options);
  // REQUIRES: no lease is held. Unloads everything and clears the loaded marks.
  ~ModelManager();
  ModelManager(const ModelManager&) = delete;
  ModelManager& operator=(const ModelManager&) = delete;

  // A lease on the instance `ref` resolves to now, loading it if needed (in this thread; the
  // first request for a model waits for its load whatever max_wait says). Errors: the
  // registry's (kNotFound, kInvalidArgument), the loader's (annotated), kResourceExhausted
  // when the budget or the model limit cannot be met, kUnavailable with
  // info->retry_after_seconds when another request's load outlasts max_wait.
  StatusOr<Lease> Acquire(std::string_view ref, const AcquireOptions& options = {},
                          AcquireInfo* info = nullptr) EXCLUDES(mu_);
  // Loads `ref` (if needed) and sets its keep_alive, without holding it.
  StatusOr<registry::Manifest> Load(std::string_view ref, const AcquireOptions& options = {},
                                    AcquireInfo* info = nullptr) EXCLUDES(mu_);
  // Unloads the instance of the version `ref` resolves to: now if idle, else as `options`
  // say. kFailedPrecondition for a pinned one (unless options.unpin) or one still loading;
  // was_loaded is false when the version is not loaded.
  StatusOr<UnloadResult> Unload(std::string_view ref, const UnloadOptions& options = {}) EXCLUDES(mu_);
  // Pins `ref` (its instance is never evicted or expired), loading it if needed; Unpin lets
  // its keep_alive run from now.
  StatusOr<registry::Manifest> Pin(std::string_view ref) EXCLUDES(mu_);
  Status Unpin(std::string_view ref) EXCLUDES(mu_);
  // After the registry changed `name` (tag, rollback, copy, delete, pull): references that
  // now resolve elsewhere leave their old instance (unloaded now if idle and superseded), and
  // pinned references of `name` are loaded at their new target. Errors are those of loading
  // a pinned target; the swap itself has happened by then.
  Status Refresh(std::string_view name) EXCLUDES(mu_);
  // Unloads idle instances whose keep_alive has run out.
  void ReapExpired() EXCLUDES(mu_);

  std::vector<InstanceInfo> Loaded() EXCLUDES(mu_);
  // Calls `fn` for each instance that is loaded (not loading), with its instance_id, under the
  // manager's lock: `fn` must be quick and must not call the manager.
  void ForEachLoaded(
      const std::function<void(uint64_t instance_id, const registry::Manifest&, const LoadedModel&)>& fn)
      EXCLUDES(mu_);
  // The canonical references pinned now.
  std::vector<std::string> Pins() EXCLUDES(mu_);
  uint64_t used_bytes() EXCLUDES(mu_);
  // Per "name@version": what it has been loaded, failed to load and unloaded so far.
  std::map<std::string, LoadCounts> LoadCounters() EXCLUDES(mu_);
  const ManagerOptions& options() const { return options_; }

 private:
  friend class Lease;
  ModelManager(registry::Registry* registry, std::unique_ptr<Loader> loader,
               const ManagerOptions& options);

  using Key = std::tuple<std::string, std::string, std::string>;  // name, version, digest
  using Unloads = std::vector<std::shared_ptr<Instance>>;

  void ReleaseLease(Instance* instance) EXCLUDES(mu_);
  // The adapter `ref` names at `scale`, from the instance's cache or loaded into it.
  StatusOr<std::shared_ptr<const arch::LoraWeights>> LeaseAdapter(Instance& instance, const std::string& ref,
                                                                   float scale) EXCLUDES(mu_);
  // Adds `ref` to `inst`'s references, taking it from any other instance; instances left
  // with no reference become superseded (idle ones go to *unloads).
  void AttachReferenceLocked(Instance* inst, const std::string& ref, Unloads* unloads) REQUIRES(mu_);
  void SupersedeIfUnreachedLocked(Instance* inst, Unloads* unloads) REQUIRES(mu_);
  // Makes room for `bytes` more and one more instance by evicting idle unpinned instances
  // in LRU order. kResourceExhausted naming `what` when it cannot.
  Status MakeRoomLocked(const std::string& what, uint64_t bytes, Unloads* unloads) REQUIRES(mu_);
  // Removes `inst` from the table and the accounting; the caller destroys it unlocked.
  void EraseLocked(Instance* inst, Unloads* unloads) REQUIRES(mu_);
  bool PinnedLocked(const Instance& inst) const REQUIRES(mu_);
  bool ExpiredLocked(const Instance& inst, TimePoint now) const REQUIRES(mu_);
  int64_t RetryAfterSecondsLocked(const Instance& inst, TimePoint now) const REQUIRES(mu_);
  InstanceInfo InfoLocked(const Instance& inst, TimePoint now) const REQUIRES(mu_);
  // Destroys `unloads` (unlocked) and brings the registry's marks in line.
  void FinishUnloads(Unloads unloads) EXCLUDES(mu_, unload_mu_);
  void SyncMark(const std::string& name, const std::string& version) EXCLUDES(mu_, marks_mu_);
  void ReaperLoop() EXCLUDES(reaper_mu_);

  registry::Registry* const registry_;
  const std::unique_ptr<Loader> loader_;
  const ManagerOptions options_;
  const Clock* const clock_;

  Mutex marks_mu_ ACQUIRED_BEFORE(mu_);  // orders registry mark writes
  std::map<std::pair<std::string, std::string>, bool> marks_ GUARDED_BY(marks_mu_);

  Mutex mu_;
  CondVar load_done_;  // signalled (with mu_) when a load ends
  std::map<Key, std::shared_ptr<Instance>> instances_ GUARDED_BY(mu_);
  std::set<std::string> pins_ GUARDED_BY(mu_);  // canonical refs
  uint64_t used_bytes_ GUARDED_BY(mu_) = 0;      // incl. loads running
  uint64_t last_instance_id_ GUARDED_BY(mu_) = 0;
  double load_bytes_per_second_ GUARDED_BY(mu_) = 0;  // 0: none timed yet
  std::map<std::string, LoadCounts> load_counts_ GUARDED_BY(mu_);  // by Instance::Label
  // Bumped by Refresh(name): an Acquire that resolved before it may hold a stale answer.
  std::map<std::string, uint64_t, std::less<>> generation_ GUARDED_BY(mu_);  // by name

  Mutex reaper_mu_;
  CondVar reaper_cv_;
  bool stopping_ GUARDED_BY(reaper_mu_) = false;
  std::thread reaper_;  // set in Create, read-only after

  // unload_in_background: instances waiting to be destroyed by unloader_.
  void UnloaderLoop() EXCLUDES(unload_mu_);
  Mutex unload_mu_;
  CondVar unload_cv_;
  Unloads to_destroy_ GUARDED_BY(unload_mu_);
  bool unloader_stopping_ GUARDED_BY(unload_mu_) = false;
  std::thread unloader_;  // set in Create, read-only after
};

}  // namespace llmasos::manager

#endif  // LLMASOS_SERVICES_MANAGER_MODEL_MANAGER_H_
