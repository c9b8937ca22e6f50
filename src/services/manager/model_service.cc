#include "services/manager/model_service.h"

#include "services/registry/pull.h"

#include <map>
#include <utility>

#include "services/registry/reference.h"

namespace llmasos::manager {

ModelService::ModelService(registry::Registry* registry, ModelManager* manager)
    : registry_(registry), manager_(manager) {
  CHECK(registry_ != nullptr && manager_ != nullptr);
}

std::vector<ModelStatus> ModelService::WithLoadState(std::vector<registry::ModelEntry> entries) {
  std::map<std::pair<std::string, std::string>, InstanceInfo> loaded;
  for (InstanceInfo& info : manager_->Loaded()) {
    auto key = std::make_pair(info.manifest.name, info.manifest.version);
    loaded.emplace(std::move(key), std::move(info));
  }
  std::vector<ModelStatus> out;
  for (registry::ModelEntry& e : entries) {
    ModelStatus s;
    s.manifest = std::move(e.manifest);
    s.tags = std::move(e.tags);
    auto it = loaded.find({s.manifest.name, s.manifest.version});
    if (it != loaded.end()) {
      const InstanceInfo& info = it->second;
      s.loaded = true;
      s.loading = info.loading;
      s.pinned = info.pinned;
      s.num_requests = info.num_leases;
      s.resident_bytes = info.resident_bytes;
      s.keep_alive = info.keep_alive;
      s.expires_in = info.expires_in;
      s.adapters = info.adapters;
      s.max_adapters = info.max_adapters;
    }
    out.push_back(std::move(s));
  }
  return out;
}

StatusOr<std::vector<ModelStatus>> ModelService::List(std::string_view name) {
  if (!name.empty()) return Versions(name);
  ASSIGN_OR_RETURN(auto entries, registry_->List());
  return WithLoadState(std::move(entries));
}

StatusOr<ModelStatus> ModelService::Show(std::string_view ref) {
  ASSIGN_OR_RETURN(registry::ModelEntry entry, registry_->Show(ref));
  std::vector<registry::ModelEntry> one;
  one.push_back(std::move(entry));
  return std::move(WithLoadState(std::move(one)).front());
}

StatusOr<std::vector<ModelStatus>> ModelService::Versions(std::string_view name) {
  ASSIGN_OR_RETURN(auto entries, registry_->History(name));
  return WithLoadState(std::move(entries));
}

std::vector<InstanceInfo> ModelService::Loaded() { return manager_->Loaded(); }

StatusOr<registry::Manifest> ModelService::Load(const LoadRequest& request, AcquireInfo* info) {
  return manager_->Load(request.model, {request.keep_alive, request.max_wait}, info);
}

StatusOr<UnloadResult> ModelService::Unload(const UnloadRequest& request) {
  UnloadOptions options;
  options.unpin = request.unpin;
  return manager_->Unload(request.model, options);
}

StatusOr<registry::Manifest> ModelService::Pin(std::string_view ref) { return manager_->Pin(ref); }

Status ModelService::Unpin(std::string_view ref) { return manager_->Unpin(ref); }

StatusOr<DeleteResult> ModelService::Delete(const DeleteRequest& request) {
  ASSIGN_OR_RETURN(registry::ModelEntry entry, registry_->Show(request.model));
  // The exact version from here on, so a tag moving meanwhile cannot change what is deleted.
  const std::string exact = entry.manifest.name + "@" + entry.manifest.version;
  UnloadOptions unload;
  unload.refuse_busy = !request.force;
  unload.unpin = true;
  ASSIGN_OR_RETURN(UnloadResult unloaded, manager_->Unload(exact, unload));
  // Unloaded now: its mark is cleared. Busy (forced): still marked, so Remove needs force.
  ASSIGN_OR_RETURN(registry::RemoveResult removed, registry_->Remove(exact, request.force));
  Refresh(removed.name);  // the deleted version's references lead elsewhere or nowhere now
  DeleteResult result;
  result.name = std::move(removed.name);
  result.version = std::move(removed.version);
  result.blobs_removed = std::move(removed.blobs_removed);
  result.was_loaded = unloaded.was_loaded;
  result.unloaded_now = unloaded.unloaded_now;
  return result;
}

StatusOr<registry::Manifest> ModelService::Copy(const CopyRequest& request) {
  ASSIGN_OR_RETURN(registry::Manifest m, registry_->Copy(request.source, request.destination));
  Refresh(m.name);
  return m;
}

StatusOr<registry::Manifest> ModelService::Tag(const TagRequest& request) {
  ASSIGN_OR_RETURN(registry::Manifest m, registry_->Tag(request.model, request.tag));
  Refresh(m.name);
  return m;
}

StatusOr<registry::Manifest> ModelService::Rollback(const RollbackRequest& request) {
  ASSIGN_OR_RETURN(registry::Manifest m, registry_->Rollback(request.name, request.to_version));
  Refresh(m.name);
  return m;
}

StatusOr<registry::Manifest> ModelService::Pull(const PullRequest& request, const PullProgressFn& on_progress) {
  registry::PullRequest pull;
  pull.url = request.url;
  pull.expected_digest = request.digest;
  pull.allow_private = request.allow_private;
  std::optional<std::string> tag;
  if (!request.model.empty()) {
    ASSIGN_OR_RETURN(registry::Reference ref, registry::ParseReference(request.model));
    pull.name = ref.name;
    switch (ref.kind) {
      case registry::Reference::Kind::kTag:
        if (ref.tag != registry::kLatestTag) tag = ref.tag;
        break;
      case registry::Reference::Kind::kVersion:
        pull.version = ref.version.ToString();
        break;
      case registry::Reference::Kind::kRange:
        return InvalidArgumentError("pull records one version: '" + request.model +
                                    "' is a range; give NAME, NAME:TAG or NAME@VERSION");
    }
  }
  registry::PullProgressFn progress;
  if (on_progress) {
    progress = [&](const registry::PullProgress& p) {
      on_progress(PullProgress{.status = p.status, .digest = p.digest, .total_bytes = p.total,
                               .completed_bytes = p.completed});
    };
  }
  ASSIGN_OR_RETURN(registry::PullResult result, registry::Pull(*registry_, pull, progress));
  registry::Manifest manifest = std::move(result.manifest);
  if (tag.has_value()) {
    ASSIGN_OR_RETURN(manifest, registry_->Tag(manifest.name + "@" + manifest.version, *tag));
  }
  Refresh(manifest.name);  // a moved tag hot-swaps loaded instances
  return manifest;
}

void ModelService::Refresh(const std::string& name) {
  if (Status s = manager_->Refresh(name); !s.ok()) {
    LOG(kWarning) << "after a registry change to " << name << ": " << s.ToString();
  }
}

}  // namespace llmasos::manager
