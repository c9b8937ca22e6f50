// The model service: everything the daemon exposes about models, over the registry and the
// model manager, in plain structs the HTTP layer maps one to one:
//
//   Ollama  /api/tags  List        /api/show   Show       /api/delete  Delete
//           /api/copy  Copy        /api/pull   Pull       /api/ps      Loaded
//           /api/generate|chat with keep_alive and no prompt: Load / Unload
//   native  /os/models  List, Versions, Load, Unload, Pin, Unpin, Tag, Rollback
//
// Mutations that move what a reference resolves to (Tag, Rollback, Copy, Delete, Pull) tell
// the manager (ModelManager::Refresh), so a moved tag hot-swaps at once: new requests get the
// new version, the old one unloads after its last request.
//
// Errors are the registry's and the manager's Status codes; the daemon maps them to HTTP
// (kNotFound 404, kInvalidArgument 400, kFailedPrecondition 409, kResourceExhausted 507,
// kUnavailable 503 with Retry-After from AcquireInfo).
//
// Thread safety: as the registry and the manager: any method from any thread.
#ifndef LLMASOS_SERVICES_MANAGER_MODEL_SERVICE_H_
#define LLMASOS_SERVICES_MANAGER_MODEL_SERVICE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "services/manager/model_manager.h"
#include "services/registry/registry.h"
#include "util/status.h"

namespace llmasos::manager {

// One stored version with its load state (/api/tags, /api/show, /os/models).
struct ModelStatus {
  registry::Manifest manifest;     // size_bytes is the file size
  std::vector<std::string> tags;   // sorted
  bool loaded = false;             // an instance is loaded or loading
  bool loading = false;
  bool pinned = false;
  size_t num_requests = 0;         // leases held now
  uint64_t resident_bytes = 0;     // 0 when not loaded
  std::optional<Duration> keep_alive = std::nullopt;  // loaded: its keep_alive (negative: forever)
  std::optional<Duration> expires_in = std::nullopt;  // loaded, idle, unpinned, finite keep_alive
  std::vector<CachedAdapterInfo> adapters;  // loaded: its LoRA adapters, most recently used first
  size_t max_adapters = 0;
};

struct LoadRequest {
  std::string model = "";                   // a reference (registry/reference.h)
  std::optional<Duration> keep_alive = std::nullopt;  // unset: the manager's default
  std::optional<Duration> max_wait = std::nullopt;
};

struct UnloadRequest {
  std::string model = "";
  bool unpin = false;  // also drop its pins (otherwise a pinned model is refused)
};

struct DeleteRequest {
  std::string model = "";
  // A version serving requests: false refuses; true deletes it from the registry now and
  // unloads it after its last request. Deleting drops the pins that kept it.
  bool force = false;
};

struct DeleteResult {
  std::string name = "";
  std::string version = "";
  std::vector<std::string> blobs_removed;  // digests
  bool was_loaded = false;
  bool unloaded_now = false;  // false with was_loaded: it goes after its last request
};

struct CopyRequest {
  std::string source = "";       // a reference
  std::string destination = "";  // NAME, NAME:TAG or NAME@VERSION
};

struct TagRequest {
  std::string model = "";  // a reference to the version to tag
  std::string tag = "";
};

struct RollbackRequest {
  std::string name = "";
  std::optional<std::string> to_version = std::nullopt;  // unset: the release below the current latest
};

struct PullRequest {
  std::string model = "";  // NAME, NAME:TAG or NAME@VERSION to record it under; "" = from the URL
  std::string url = "";    // http:// or https:// (registry::Pull)
  std::optional<std::string> digest = std::nullopt;  // "sha256:<hex>" the file must have
  bool allow_private = false;  // allow loopback, private and link-local addresses
};

// One progress event, as Ollama streams them: {"status", "digest", "total", "completed"}.
struct PullProgress {
  std::string status = "";  // "pulling manifest", "downloading", "verifying sha256 digest", "success"
  std::string digest = "";
  uint64_t total_bytes = 0;
  uint64_t completed_bytes = 0;
};
using PullProgressFn = std::function<void(const PullProgress&)>;

class ModelService {
 public:
  // `registry` and `manager` (which must run over the same registry) outlive the service.
  ModelService(registry::Registry* registry, ModelManager* manager);

  // Every version of every model (name == "") or of one name, by name then newest first.
  StatusOr<std::vector<ModelStatus>> List(std::string_view name = "");
  StatusOr<ModelStatus> Show(std::string_view ref);
  // Every version of `name`, newest first (kNotFound for an unknown name).
  StatusOr<std::vector<ModelStatus>> Versions(std::string_view name);
  // What is loaded now (`ps`).
  std::vector<InstanceInfo> Loaded();

  StatusOr<registry::Manifest> Load(const LoadRequest& request, AcquireInfo* info = nullptr);
  StatusOr<UnloadResult> Unload(const UnloadRequest& request);
  StatusOr<registry::Manifest> Pin(std::string_view ref);
  Status Unpin(std::string_view ref);

  StatusOr<DeleteResult> Delete(const DeleteRequest& request);
  StatusOr<registry::Manifest> Copy(const CopyRequest& request);
  StatusOr<registry::Manifest> Tag(const TagRequest& request);
  StatusOr<registry::Manifest> Rollback(const RollbackRequest& request);
  // Downloads a model into the registry, reporting progress. Not connected yet: returns
  // kUnimplemented (see the PULL marker in model_service.cc).
  StatusOr<registry::Manifest> Pull(const PullRequest& request, const PullProgressFn& on_progress);

 private:
  std::vector<ModelStatus> WithLoadState(std::vector<registry::ModelEntry> entries);
  // After a registry change to `name`: hot-swap. The change stands whatever this says;
  // a pinned reference that cannot be loaded at its new target is logged.
  void Refresh(const std::string& name);

  registry::Registry* const registry_;
  ModelManager* const manager_;
};

}  // namespace llmasos::manager

#endif  // LLMASOS_SERVICES_MANAGER_MODEL_SERVICE_H_
