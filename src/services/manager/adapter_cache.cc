#include "services/manager/adapter_cache.h"

#include <cmath>
#include <cstdlib>

#include "services/registry/reference.h"

namespace llmasos::manager {

Status SplitAdapterScale(std::string_view text, std::string* ref, float* scale) {
  *ref = std::string(text);
  *scale = 1.0f;
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size()) return OkStatus();
  const std::string tail(text.substr(colon + 1));
  char* end = nullptr;
  const float v = std::strtof(tail.c_str(), &end);
  if (end != tail.c_str() + tail.size()) return OkStatus();  // a tag, not a scale
  if (!std::isfinite(v)) {
    return InvalidArgumentError("adapter '" + std::string(text) + "': the scale is not finite");
  }
  *ref = std::string(text.substr(0, colon));
  *scale = v;
  return OkStatus();
}

StatusOr<AdapterSpec> ParseAdapterSpec(std::string_view text) {
  AdapterSpec spec;
  for (size_t plus = text.find('+'); plus != std::string_view::npos; plus = text.find('+', plus + 1)) {
    const std::string_view base = text.substr(0, plus);
    std::string adapter;
    float scale = 1.0f;
    RETURN_IF_ERROR(SplitAdapterScale(text.substr(plus + 1), &adapter, &scale));
    if (!registry::ParseReference(base).ok() || !registry::ParseReference(adapter).ok()) continue;
    spec.base = std::string(base);
    spec.adapter = std::move(adapter);
    spec.scale = scale;
    return spec;
  }
  spec.base = std::string(text);
  return spec;
}

AdapterCache::AdapterCache(size_t max_adapters) : max_adapters_(max_adapters) { CHECK(max_adapters >= 1); }

StatusOr<std::shared_ptr<const arch::LoraWeights>> AdapterCache::GetOrLoad(
    const std::string& key, const std::function<StatusOr<arch::LoraWeights>()>& load, const std::string& digest,
    float scale) {
  auto find = [&]() REQUIRES(mu_) -> std::shared_ptr<const arch::LoraWeights> {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->key != key) continue;
      entries_.splice(entries_.begin(), entries_, it);  // most recently used
      return entries_.front().weights;
    }
    return nullptr;
  };
  {
    MutexLock lock(mu_);
    if (auto hit = find()) return hit;
  }
  ASSIGN_OR_RETURN(arch::LoraWeights loaded, load());
  auto weights = std::make_shared<const arch::LoraWeights>(std::move(loaded));
  MutexLock lock(mu_);
  if (auto hit = find()) return hit;  // another caller's load finished first
  entries_.push_front(Entry{key, digest, scale, weights});
  // Forgetting an adapter frees it once the last process holding it ends.
  while (entries_.size() > max_adapters_) entries_.pop_back();
  return weights;
}

std::vector<CachedAdapterInfo> AdapterCache::Cached() const {
  MutexLock lock(mu_);
  std::vector<CachedAdapterInfo> out;
  for (const Entry& e : entries_) {
    out.push_back(CachedAdapterInfo{.name = e.weights->name,
                                    .digest = e.digest,
                                    .scale = e.scale,
                                    .rank = e.weights->rank,
                                    .bytes = e.weights->bytes(),
                                    .num_holders = static_cast<size_t>(e.weights.use_count() - 1)});
  }
  return out;
}

}  // namespace llmasos::manager
