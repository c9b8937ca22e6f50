#include "services/manager/model_manager.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "model/gguf/gguf.h"
#include "model/train/adapter.h"
#include "services/registry/reference.h"

namespace llmasos::manager {

// Invariants (under ModelManager::mu_, which guards every field below but key, resolved and
// model: those are set before the instance is shared and read-only after, model once its
// load ends; the analysis cannot name another object's mutex, so these are not annotated):
//   - an instance in the table is kLoading or kReady; a failed load leaves the table at once;
//   - leases > 0 implies kReady and in the table (nothing erases a leased instance);
//   - used_bytes_ is the sum of `bytes` over the table;
//   - a reference is in the `refs` of at most one instance.
struct Instance {
  enum class State { kLoading, kReady, kFailed };

  // A loaded instance's last word in the kernel log, once its engine has stopped (so after
  // its processes' ends): destruction is where the model is really gone.
  ~Instance() {
    if (events == nullptr || state != State::kReady) return;
    model.reset();
    kernel::Event e;
    e.kind = kernel::EventKind::kUnloaded;
    e.instance = id;
    e.model = Label();
    events->Publish(std::move(e));
  }

  std::tuple<std::string, std::string, std::string> key;  // name, version, digest
  uint64_t id = 0;  // 1, 2, ... in load order; never reused by this manager
  registry::ResolvedModel resolved;
  State state = State::kLoading;
  Status load_status;                  // kFailed: why
  std::unique_ptr<LoadedModel> model;  // set when kReady
  uint64_t bytes = 0;                  // the estimate while loading, then resident bytes
  TimePoint load_started{};
  TimePoint last_used{};
  size_t leases = 0;
  Duration keep_alive{};
  std::set<std::string> refs;  // canonical references that reach it
  bool superseded = false;
  kernel::EventBus* events = nullptr;  // ManagerOptions::events, set once it is ready
  // Its LoRA adapters; thread-safe on its own (taken after mu_, never before it).
  std::unique_ptr<AdapterCache> adapters;

  std::string Label() const { return resolved.manifest.name + "@" + resolved.manifest.version; }
};

namespace {

std::string Plural(size_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

}  // namespace

// --- Lease ---

Lease::Lease(Lease&& other) noexcept
    : manager_(std::exchange(other.manager_, nullptr)),
      instance_(std::exchange(other.instance_, nullptr)),
      adapter_(std::move(other.adapter_)) {}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    manager_ = std::exchange(other.manager_, nullptr);
    instance_ = std::exchange(other.instance_, nullptr);
    adapter_ = std::move(other.adapter_);
  }
  return *this;
}

void Lease::Release() {
  adapter_.reset();
  if (instance_ == nullptr) return;
  manager_->ReleaseLease(std::exchange(instance_, nullptr));
  manager_ = nullptr;
}

const registry::Manifest& Lease::manifest() const {
  CHECK(valid());
  return instance_->resolved.manifest;
}

const LoadedModel& Lease::model() const {
  CHECK(valid());
  return *instance_->model;
}

// --- ModelManager ---

StatusOr<std::unique_ptr<ModelManager>> ModelManager::Create(registry::Registry* registry,
                                                             std::unique_ptr<Loader> loader,
                                                             const ManagerOptions& options) {
  CHECK(registry != nullptr && loader != nullptr);
  if (options.default_max_wait < Duration::zero()) {
    return InvalidArgumentError("default_max_wait must not be negative");
  }
  if (options.reap_interval < Duration::zero()) {
    return InvalidArgumentError("reap_interval must not be negative");
  }
  if (!(options.assumed_load_bytes_per_second > 0)) {
    return InvalidArgumentError("assumed_load_bytes_per_second must be positive");
  }
  if (options.max_adapters < 1) return InvalidArgumentError("max_adapters must be at least 1");
  // Marks left by a process that died with models loaded would block `rm` for ever.
  RETURN_IF_ERROR(registry->ClearLoadedMarks());
  std::unique_ptr<ModelManager> m(new ModelManager(registry, std::move(loader), options));
  if (options.reap_interval > Duration::zero()) {
    m->reaper_ = std::thread([mgr = m.get()] { mgr->ReaperLoop(); });
  }
  if (options.unload_in_background) {
    m->unloader_ = std::thread([mgr = m.get()] { mgr->UnloaderLoop(); });
  }
  return m;
}

ModelManager::ModelManager(registry::Registry* registry, std::unique_ptr<Loader> loader,
                           const ManagerOptions& options)
    : registry_(registry),
      loader_(std::move(loader)),
      options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock()) {}

ModelManager::~ModelManager() {
  if (reaper_.joinable()) {
    {
      MutexLock lock(reaper_mu_);
      stopping_ = true;
    }
    reaper_cv_.NotifyAll();
    reaper_.join();
  }
  if (unloader_.joinable()) {
    {
      MutexLock lock(unload_mu_);
      unloader_stopping_ = true;
    }
    unload_cv_.NotifyAll();
    unloader_.join();  // destroys what was queued first
  }
  Unloads unloads;
  {
    MutexLock lock(mu_);
    // A load in flight belongs to an Acquire still running: a caller bug, as is a live lease.
    for (auto& [key, inst] : instances_) {
      CHECK(inst->leases == 0 && inst->state == Instance::State::kReady)
          << inst->Label() << " is still in use while the model manager is destroyed";
      unloads.push_back(inst);
    }
    instances_.clear();
    used_bytes_ = 0;
  }
  unloads.clear();
  if (Status s = registry_->ClearLoadedMarks(); !s.ok()) {
    LOG(kWarning) << "clearing the registry's loaded marks: " << s.ToString();
  }
}

void ModelManager::ReaperLoop() {
  MutexLock lock(reaper_mu_);
  while (!stopping_) {
    reaper_cv_.WaitFor(reaper_mu_, options_.reap_interval, [this]() REQUIRES(reaper_mu_) { return stopping_; });
    if (stopping_) break;
    lock.Unlock();
    ReapExpired();
    lock.Lock();
  }
}

StatusOr<Lease> ModelManager::Acquire(std::string_view ref_text, const AcquireOptions& options,
                                      AcquireInfo* info) {
  ASSIGN_OR_RETURN(AdapterSpec with_adapter, ParseAdapterSpec(ref_text));
  if (!with_adapter.adapter.empty()) {
    ASSIGN_OR_RETURN(Lease lease, Acquire(with_adapter.base, options, info));
    ASSIGN_OR_RETURN(lease.adapter_, LeaseAdapter(*lease.instance_, with_adapter.adapter, with_adapter.scale));
    return lease;
  }
  ReapExpired();
  ASSIGN_OR_RETURN(registry::Reference parsed, registry::ParseReference(ref_text));
  const std::string ref = parsed.ToString();
  const Duration keep_alive = options.keep_alive.value_or(options_.default_keep_alive);
  const Duration max_wait = options.max_wait.value_or(options_.default_max_wait);
  if (max_wait < Duration::zero()) return InvalidArgumentError("max_wait must not be negative");
  uint64_t generation;
  {
    MutexLock lock(mu_);
    generation = generation_[parsed.name];
  }
  ASSIGN_OR_RETURN(registry::ResolvedModel resolved, registry_->Resolve(ref));
  Key key{resolved.manifest.name, resolved.manifest.version, resolved.manifest.digest};
  // A Refresh since we resolved means the answer may be stale: serve it, but do not let it
  // take the reference back from the instance the registry now names.
  auto stale = [&]() REQUIRES(mu_) { return generation_[parsed.name] != generation; };
  const uint64_t estimate = loader_->EstimateBytes(resolved);
  // Waiting is in real time whatever clock_ is: it bounds how long a caller is blocked.
  const auto wait_until = std::chrono::steady_clock::now() + max_wait;

  Unloads unloads;
  MutexLock lock(mu_);
  while (true) {
    auto it = instances_.find(key);
    if (it == instances_.end()) break;  // not loaded: load it below
    std::shared_ptr<Instance> inst = it->second;
    if (inst->state == Instance::State::kReady) {
      inst->leases++;
      inst->keep_alive = keep_alive;
      if (!stale()) {
        inst->superseded = false;  // a reference reaches it again (e.g. rolled back to)
        AttachReferenceLocked(inst.get(), ref, &unloads);
      }
      lock.Unlock();
      FinishUnloads(std::move(unloads));
      return Lease(this, inst.get());
    }
    // Another request is loading it: wait for that load, up to max_wait.
    bool ended = load_done_.WaitUntil(mu_, wait_until, [&] { return inst->state != Instance::State::kLoading; });
    if (!ended) {
      const int64_t n = RetryAfterSecondsLocked(*inst, clock_->Now());
      if (info != nullptr) info->retry_after_seconds = n;
      return UnavailableError("model " + inst->Label() + " is loading, retry after " + std::to_string(n) + " s");
    }
    if (inst->state == Instance::State::kFailed) return inst->load_status;
    // Loaded: take it on the next turn (it may have been unloaded again meanwhile).
  }

  // Load it here, outside the lock; requests arriving meanwhile wait on load_done_.
  auto inst = std::make_shared<Instance>();
  inst->adapters = std::make_unique<AdapterCache>(options_.max_adapters);
  inst->key = key;
  inst->id = ++last_instance_id_;
  inst->resolved = resolved;
  inst->bytes = estimate;
  if (Status s = MakeRoomLocked(inst->Label(), estimate, &unloads); !s.ok()) {
    lock.Unlock();
    FinishUnloads(std::move(unloads));
    return s;
  }
  inst->load_started = clock_->Now();
  instances_[key] = inst;
  used_bytes_ += estimate;
  lock.Unlock();
  FinishUnloads(std::move(unloads));  // evicted models go before the new one comes in

  auto loaded = loader_->Load(resolved);

  lock.Lock();
  if (!loaded.ok()) {
    inst->state = Instance::State::kFailed;
    inst->load_status = loaded.status();
    ++load_counts_[inst->Label()].failed_loads;
    used_bytes_ -= inst->bytes;
    instances_.erase(key);  // the next request tries again
    load_done_.NotifyAll();
    return loaded.status();
  }
  const TimePoint now = clock_->Now();
  const double seconds = ToSeconds(now - inst->load_started);
  inst->model = std::move(loaded).value();
  used_bytes_ = used_bytes_ - inst->bytes + inst->model->resident_bytes;
  inst->bytes = inst->model->resident_bytes;
  if (seconds > 0 && inst->bytes > 0) {
    const double speed = static_cast<double>(inst->bytes) / seconds;
    // Smoothed, so one load slowed by a cold disk cache does not dominate the estimate.
    load_bytes_per_second_ = load_bytes_per_second_ == 0 ? speed : 0.5 * load_bytes_per_second_ + 0.5 * speed;
  }
  inst->state = Instance::State::kReady;
  if (options_.events != nullptr) {
    inst->events = options_.events;
    if (inst->model->engine != nullptr) inst->model->engine->SetEventBus(options_.events, inst->id, inst->Label());
    kernel::Event e;
    e.kind = kernel::EventKind::kLoaded;
    e.instance = inst->id;
    e.model = inst->Label();
    options_.events->Publish(std::move(e));  // never waits: fine under mu_
  }
  ++load_counts_[inst->Label()].loads;
  inst->last_used = now;
  inst->leases = 1;
  inst->keep_alive = keep_alive;
  if (stale()) {
    inst->superseded = true;  // serves this request, then goes
  } else {
    AttachReferenceLocked(inst.get(), ref, &unloads);
  }
  load_done_.NotifyAll();
  lock.Unlock();
  FinishUnloads(std::move(unloads));
  SyncMark(std::get<0>(key), std::get<1>(key));
  return Lease(this, inst.get());
}

StatusOr<std::shared_ptr<const arch::LoraWeights>> ModelManager::LeaseAdapter(Instance& instance,
                                                                              const std::string& ref, float scale) {
  // The registry's errors (no such name, version or tag) keep their code: 404 in the API.
  auto resolved = registry_->Resolve(ref);
  if (!resolved.ok()) return resolved.status().Annotate("adapter '" + ref + "'");
  const registry::Manifest& m = resolved->manifest;
  const std::string base = instance.Label();
  if (instance.model->model == nullptr) {
    return FailedPreconditionError("model " + base + " has no weights to apply adapter '" + ref + "' to");
  }
  char scale_text[32];
  std::snprintf(scale_text, sizeof(scale_text), "%g", scale);
  std::string name = m.name + "@" + m.version;
  if (scale != 1.0f) name += std::string(":") + scale_text;
  const std::string key = m.digest + " x" + scale_text;
  const arch::ModelConfig& config = instance.model->model->config();
  auto load = [&]() -> StatusOr<arch::LoraWeights> {
    const std::string fit = "adapter '" + ref + "' (" + m.name + "@" + m.version + ") does not fit model " + base;
    auto file = gguf::GgufFile::Open(resolved->blob_path);
    if (!file.ok()) return InvalidArgumentError(fit + ": " + file.status().message());
    auto adapter = train::ReadLoraAdapter(**file, config);
    if (!adapter.ok()) return InvalidArgumentError(fit + ": " + adapter.status().message());
    return train::UnmergedLoraWeights(*std::move(adapter), scale, config, name, key);
  };
  // Cached by name too, so the process table shows the name asked for; equal files under two
  // names still share prefix-cache blocks (the weights' cache_key is the digest and scale).
  return instance.adapters->GetOrLoad(name + " " + key, load, m.digest, scale);
}

void ModelManager::ReleaseLease(Instance* instance) {
  Unloads unloads;
  {
    MutexLock lock(mu_);
    CHECK(instance->leases > 0);
    instance->leases--;
    instance->last_used = clock_->Now();
    if (instance->leases == 0 &&
        (instance->superseded || (!PinnedLocked(*instance) && instance->keep_alive == Duration::zero()))) {
      EraseLocked(instance, &unloads);
    }
  }
  FinishUnloads(std::move(unloads));
}

StatusOr<registry::Manifest> ModelManager::Load(std::string_view ref, const AcquireOptions& options,
                                                AcquireInfo* info) {
  ASSIGN_OR_RETURN(Lease lease, Acquire(ref, options, info));
  return lease.manifest();
}

StatusOr<UnloadResult> ModelManager::Unload(std::string_view ref, const UnloadOptions& options) {
  ASSIGN_OR_RETURN(registry::ResolvedModel resolved, registry_->Resolve(ref));
  const Key key{resolved.manifest.name, resolved.manifest.version, resolved.manifest.digest};
  UnloadResult result;
  Unloads unloads;
  {
    MutexLock lock(mu_);
    auto it = instances_.find(key);
    if (it == instances_.end()) return result;
    Instance* inst = it->second.get();
    result.was_loaded = true;
    if (inst->state == Instance::State::kLoading) {
      return FailedPreconditionError(inst->Label() + " is loading; unload it when it is ready");
    }
    if (PinnedLocked(*inst) && !options.unpin) {
      return FailedPreconditionError(inst->Label() + " is pinned; unpin it first");
    }
    if (inst->leases > 0 && options.refuse_busy) {
      return FailedPreconditionError(inst->Label() + " is serving " + Plural(inst->leases, "request") +
                                     "; retry when they end, or force it");
    }
    for (const std::string& r : inst->refs) pins_.erase(r);  // options.unpin, or none there
    if (inst->leases > 0) {
      inst->keep_alive = Duration::zero();  // goes with its last lease; a new request resets it
      return result;
    }
    EraseLocked(inst, &unloads);
    result.unloaded_now = true;
  }
  FinishUnloads(std::move(unloads));
  return result;
}

StatusOr<registry::Manifest> ModelManager::Pin(std::string_view ref_text) {
  ASSIGN_OR_RETURN(registry::Reference parsed, registry::ParseReference(ref_text));
  const std::string ref = parsed.ToString();
  ASSIGN_OR_RETURN(Lease lease, Acquire(ref));
  {
    MutexLock lock(mu_);
    pins_.insert(ref);  // before the lease ends, so keep_alive 0 cannot unload it first
  }
  return lease.manifest();
}

Status ModelManager::Unpin(std::string_view ref_text) {
  ASSIGN_OR_RETURN(registry::Reference parsed, registry::ParseReference(ref_text));
  const std::string ref = parsed.ToString();
  {
    MutexLock lock(mu_);
    if (pins_.erase(ref) == 0) return NotFoundError(ref + " is not pinned");
    // Its keep_alive runs from now, not from its last request.
    const TimePoint now = clock_->Now();
    for (auto& [key, inst] : instances_) {
      if (inst->refs.count(ref) != 0 && inst->leases == 0) inst->last_used = now;
    }
  }
  ReapExpired();
  return OkStatus();
}

Status ModelManager::Refresh(std::string_view name) {
  // Which references reach instances of `name`, and where they lead now.
  std::set<std::string> refs;
  std::vector<std::string> pinned;
  {
    MutexLock lock(mu_);
    generation_[std::string(name)]++;
    for (auto& [key, inst] : instances_) {
      if (std::get<0>(key) == name) refs.insert(inst->refs.begin(), inst->refs.end());
    }
    for (const std::string& p : pins_) {
      auto parsed = registry::ParseReference(p);
      if (parsed.ok() && parsed->name == name) pinned.push_back(p);
    }
  }
  std::map<std::string, std::optional<Key>> target;
  for (const std::string& ref : refs) {
    auto resolved = registry_->Resolve(ref);
    target[ref] = resolved.ok() ? std::optional<Key>(Key{resolved->manifest.name, resolved->manifest.version,
                                                         resolved->manifest.digest})
                                : std::nullopt;
  }
  Unloads unloads;
  {
    MutexLock lock(mu_);
    for (auto& [key, inst] : instances_) {
      if (std::get<0>(key) != name || inst->state != Instance::State::kReady) continue;
      for (auto r = inst->refs.begin(); r != inst->refs.end();) {
        auto t = target.find(*r);
        r = (t != target.end() && t->second != key) ? inst->refs.erase(r) : std::next(r);
      }
    }
    std::vector<Instance*> all;
    for (auto& [key, inst] : instances_) all.push_back(inst.get());
    for (Instance* inst : all) {
      if (inst->state == Instance::State::kReady) SupersedeIfUnreachedLocked(inst, &unloads);
    }
  }
  FinishUnloads(std::move(unloads));
  // A pinned reference stays warm across the swap.
  Status status;
  for (const std::string& p : pinned) {
    auto loaded = Acquire(p);
    if (!loaded.ok() && status.ok()) status = loaded.status().Annotate("loading pinned " + p);
  }
  return status;
}

void ModelManager::ReapExpired() {
  Unloads unloads;
  {
    MutexLock lock(mu_);
    const TimePoint now = clock_->Now();
    std::vector<Instance*> expired;
    for (auto& [key, inst] : instances_) {
      if (ExpiredLocked(*inst, now)) expired.push_back(inst.get());
    }
    for (Instance* inst : expired) EraseLocked(inst, &unloads);
  }
  FinishUnloads(std::move(unloads));
}

std::vector<InstanceInfo> ModelManager::Loaded() {
  ReapExpired();
  MutexLock lock(mu_);
  const TimePoint now = clock_->Now();
  std::vector<InstanceInfo> out;
  for (auto& [key, inst] : instances_) out.push_back(InfoLocked(*inst, now));
  return out;
}

std::vector<std::string> ModelManager::Pins() {
  MutexLock lock(mu_);
  return {pins_.begin(), pins_.end()};
}

uint64_t ModelManager::used_bytes() {
  MutexLock lock(mu_);
  return used_bytes_;
}

std::map<std::string, LoadCounts> ModelManager::LoadCounters() {
  MutexLock lock(mu_);
  return load_counts_;
}

// --- helpers, called with mu_ held ---

void ModelManager::AttachReferenceLocked(Instance* inst, const std::string& ref, Unloads* unloads) {
  if (!inst->refs.insert(ref).second) return;
  std::vector<Instance*> losers;
  for (auto& [key, other] : instances_) {
    if (other.get() != inst && other->refs.erase(ref) != 0) losers.push_back(other.get());
  }
  for (Instance* other : losers) SupersedeIfUnreachedLocked(other, unloads);
}

void ModelManager::SupersedeIfUnreachedLocked(Instance* inst, Unloads* unloads) {
  if (!inst->refs.empty()) return;
  inst->superseded = true;
  if (inst->leases == 0) EraseLocked(inst, unloads);
}

Status ModelManager::MakeRoomLocked(const std::string& what, uint64_t bytes, Unloads* unloads) {
  const uint64_t budget = options_.memory_budget_bytes;
  const size_t max_models = options_.max_loaded_models;
  if (budget != 0 && bytes > budget) {
    return ResourceExhaustedError("cannot load " + what + ": it needs " + std::to_string(bytes) +
                                  " bytes, more than the whole memory budget of " + std::to_string(budget));
  }
  auto fits = [&]() REQUIRES(mu_) {
    return (budget == 0 || used_bytes_ + bytes <= budget) && (max_models == 0 || instances_.size() < max_models);
  };
  while (!fits()) {
    Instance* victim = nullptr;
    for (auto& [key, inst] : instances_) {
      if (inst->state != Instance::State::kReady || inst->leases > 0 || PinnedLocked(*inst)) continue;
      if (victim == nullptr || inst->last_used < victim->last_used) victim = inst.get();
    }
    if (victim == nullptr) {
      size_t busy = 0, pinned = 0, loading = 0;
      for (auto& [key, inst] : instances_) {
        if (inst->state == Instance::State::kLoading) {
          loading++;
        } else if (inst->leases > 0) {
          busy++;
        } else {
          pinned++;
        }
      }
      std::string limit = (max_models != 0 && instances_.size() >= max_models)
                              ? Plural(instances_.size(), "model") + " loaded, the limit is " + std::to_string(max_models)
                              : std::to_string(used_bytes_) + " of " + std::to_string(budget) +
                                    " budget bytes in use, it needs " + std::to_string(bytes);
      return ResourceExhaustedError("cannot load " + what + ": " + limit + " and nothing can be unloaded (" +
                                    std::to_string(busy) + " busy, " + std::to_string(pinned) + " pinned, " +
                                    std::to_string(loading) + " loading); retry later");
    }
    EraseLocked(victim, unloads);
  }
  return OkStatus();
}

void ModelManager::EraseLocked(Instance* inst, Unloads* unloads) {
  CHECK(inst->leases == 0);
  auto it = instances_.find(inst->key);
  CHECK(it != instances_.end() && it->second.get() == inst);
  used_bytes_ -= inst->bytes;
  if (inst->state == Instance::State::kReady) ++load_counts_[inst->Label()].unloads;
  unloads->push_back(std::move(it->second));
  instances_.erase(it);
}

bool ModelManager::PinnedLocked(const Instance& inst) const {
  for (const std::string& r : inst.refs) {
    if (pins_.count(r) != 0) return true;
  }
  return false;
}

bool ModelManager::ExpiredLocked(const Instance& inst, TimePoint now) const {
  if (inst.state != Instance::State::kReady || inst.leases > 0 || PinnedLocked(inst)) return false;
  if (inst.keep_alive < Duration::zero()) return false;
  return now >= inst.last_used + inst.keep_alive;
}

int64_t ModelManager::RetryAfterSecondsLocked(const Instance& inst, TimePoint now) const {
  const double speed = load_bytes_per_second_ > 0 ? load_bytes_per_second_ : options_.assumed_load_bytes_per_second;
  const double expected = static_cast<double>(inst.bytes) / speed;
  const double remaining = expected - ToSeconds(now - inst.load_started);
  // Slower than expected: it is nearly done, as far as we can tell; ask again soon.
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(remaining)));
}

InstanceInfo ModelManager::InfoLocked(const Instance& inst, TimePoint now) const {
  InstanceInfo info;
  info.instance_id = inst.id;
  info.manifest = inst.resolved.manifest;
  info.loading = inst.state == Instance::State::kLoading;
  info.resident_bytes = inst.bytes;
  info.num_leases = inst.leases;
  info.pinned = PinnedLocked(inst);
  info.superseded = inst.superseded;
  info.keep_alive = inst.keep_alive;
  if (!info.loading && inst.leases == 0 && !info.pinned && inst.keep_alive >= Duration::zero()) {
    info.expires_in = std::max(Duration::zero(), inst.last_used + inst.keep_alive - now);
  }
  info.references.assign(inst.refs.begin(), inst.refs.end());
  if (inst.adapters != nullptr) {
    info.adapters = inst.adapters->Cached();
    info.max_adapters = inst.adapters->max_adapters();
  }
  return info;
}

void ModelManager::ForEachLoaded(
    const std::function<void(uint64_t instance_id, const registry::Manifest&, const LoadedModel&)>& fn) {
  MutexLock lock(mu_);
  for (const auto& [key, inst] : instances_) {
    if (inst->state == Instance::State::kReady && inst->model != nullptr) {
      fn(inst->id, inst->resolved.manifest, *inst->model);
    }
  }
}

// --- unlocked ---

void ModelManager::FinishUnloads(Unloads unloads) {
  if (unloads.empty()) return;
  std::vector<std::pair<std::string, std::string>> versions;
  for (const auto& inst : unloads) versions.emplace_back(std::get<0>(inst->key), std::get<1>(inst->key));
  if (unloader_.joinable()) {
    MutexLock lock(unload_mu_);
    for (auto& inst : unloads) to_destroy_.push_back(std::move(inst));
    unload_cv_.NotifyAll();
  }
  unloads.clear();  // unmaps the models, without mu_ (unless queued above)
  for (const auto& [name, version] : versions) SyncMark(name, version);
}

void ModelManager::UnloaderLoop() {
  MutexLock lock(unload_mu_);
  for (;;) {
    unload_cv_.Wait(unload_mu_, [this]() REQUIRES(unload_mu_) { return unloader_stopping_ || !to_destroy_.empty(); });
    Unloads batch = std::move(to_destroy_);
    to_destroy_.clear();
    lock.Unlock();
    batch.clear();  // joins engine threads, unmaps files
    lock.Lock();
    if (unloader_stopping_ && to_destroy_.empty()) return;
  }
}

void ModelManager::SyncMark(const std::string& name, const std::string& version) {
  MutexLock marks_lock(marks_mu_);
  bool loaded = false;
  {
    MutexLock lock(mu_);
    for (auto& [key, inst] : instances_) {
      if (std::get<0>(key) == name && std::get<1>(key) == version && inst->state == Instance::State::kReady) {
        loaded = true;
      }
    }
  }
  auto [it, inserted] = marks_.emplace(std::make_pair(name, version), !loaded);
  if (!inserted && it->second == loaded) return;
  Status s = registry_->SetLoaded(name + "@" + version, loaded);
  // A version removed with --force while loaded has no mark left to clear.
  if (!s.ok() && s.code() != StatusCode::kNotFound) {
    LOG(kWarning) << "marking " << name << "@" << version << (loaded ? " loaded" : " unloaded") << ": " << s.ToString();
    return;
  }
  it->second = loaded;
}

}  // namespace llmasos::manager
