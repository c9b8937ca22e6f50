// LoRA adapters at inference: model references that name an adapter, and the cache of
// adapters loaded for one base model instance.
//
//   base+adapter         the base model (any registry reference) with the adapter (a registry
//                        reference to a GGUF LoRA file, e.g. one `llmasos finetune` made)
//   base+adapter:0.5     the same at a user scale (a number after the adapter's last ':';
//                        anything else there is the adapter's tag)
// The split is at the first '+' that leaves a valid reference on both sides (a version's
// build metadata, `name@1.0.0+build`, is ignored by the registry, so a '+' after a version
// names an adapter whenever one can follow).
//
// An AdapterCache lives with one loaded base instance (the model manager's): it holds at most
// `max_adapters` adapters, the least recently used one forgotten first; an adapter a running
// process still holds stays in memory until that process ends (kernel::ProcessSpec::adapter).
//
// Thread safety: AdapterCache is thread-safe; loads run without its lock.
#ifndef LLMASOS_SERVICES_MANAGER_ADAPTER_CACHE_H_
#define LLMASOS_SERVICES_MANAGER_ADAPTER_CACHE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "model/arch/lora_weights.h"
#include "util/mutex.h"
#include "util/status.h"
#include "util/thread_annotations.h"

namespace llmasos::manager {

struct AdapterSpec {
  std::string base;     // the base model's reference text
  std::string adapter;  // the adapter's reference text; empty: none
  float scale = 1.0f;
};

// Splits "base+adapter[:scale]" as above; text without an adapter comes back whole in `base`
// (and is not checked here). InvalidArgument for an empty or non-finite scale's part, or a
// '+' with nothing valid after it.
StatusOr<AdapterSpec> ParseAdapterSpec(std::string_view text);
// "ref[:scale]" alone (the shell's --lora and the part after '+'): the trailing ":number" is a
// scale, anything else after the last ':' a tag. InvalidArgument for a non-finite scale.
Status SplitAdapterScale(std::string_view text, std::string* ref, float* scale);

// One adapter in a cache (what /os/models shows).
struct CachedAdapterInfo {
  std::string name;    // LoraWeights::name: "name@version" (":scale" when not 1)
  std::string digest;  // the adapter file's
  float scale = 1.0f;
  size_t rank = 0;
  uint64_t bytes = 0;
  size_t num_holders = 0;  // processes (and requests) holding it now
};

class AdapterCache {
 public:
  // max_adapters >= 1.
  explicit AdapterCache(size_t max_adapters);

  // The adapter cached under `key` (say its name, the file's digest and the scale), else `load()`'s,
  // cached under it (the least recently used beyond max_adapters forgotten). Two callers that
  // miss at once may both load; the first to finish is kept. load's error is returned as is.
  StatusOr<std::shared_ptr<const arch::LoraWeights>> GetOrLoad(
      const std::string& key, const std::function<StatusOr<arch::LoraWeights>()>& load,
      const std::string& digest, float scale) EXCLUDES(mu_);

  // Most recently used first.
  std::vector<CachedAdapterInfo> Cached() const EXCLUDES(mu_);
  size_t max_adapters() const { return max_adapters_; }

 private:
  struct Entry {
    std::string key;
    std::string digest;
    float scale = 1.0f;
    std::shared_ptr<const arch::LoraWeights> weights;
  };
  const size_t max_adapters_;
  mutable Mutex mu_;
  std::list<Entry> entries_ GUARDED_BY(mu_);  // most recently used first
};

}  // namespace llmasos::manager

#endif  // LLMASOS_SERVICES_MANAGER_ADAPTER_CACHE_H_
