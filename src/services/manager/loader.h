// The loader: what turns a registry version into a model instance in memory. The model
// manager (model_manager.h) decides when to load and unload; a Loader only does the work and
// says what it costs. The real one maps the GGUF blob, builds arch::Model, the tokenizer and
// the chat template, and (for the daemon) starts the instance's engine thread on a thread
// pool of its own; tests use a fake with controllable load time, size and failures.
//
// LoadModelFile is the one way a GGUF file becomes a model and its tokenizer: the shell's
// sessions use it too.
//
// Thread safety: Load and EstimateBytes may be called from several threads at once (for
// different versions), without the manager's lock held.
#ifndef LLMASOS_SERVICES_MANAGER_LOADER_H_
#define LLMASOS_SERVICES_MANAGER_LOADER_H_

#include <cstdint>
#include <memory>

#include <optional>
#include <string>

#include "kernel/engine_thread.h"
#include "model/arch/llama_model.h"
#include "model/chat/chat_template.h"
#include "model/tokenizer/tokenizer.h"
#include "util/thread_pool.h"
#include "services/registry/registry.h"
#include "util/status.h"

namespace llmasos::manager {

// A GGUF file as a model and its tokenizer (checked against each other). Errors name `label`
// (what the user called the model) and never more of the path than the user gave.
struct ModelFiles {
  std::unique_ptr<arch::Model> model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
};
// `options` as arch::Model::Load's (repack false for training; the pool the repack uses).
StatusOr<ModelFiles> LoadModelFile(const std::string& path, const std::string& label,
                                   const arch::LoadOptions& options = {});

// Points `options` at the registry's derived blob for the version's packed weights
// (arch/packed_blob.h: kept next to its GGUF blob, keyed by its digest, the packed layout's
// version and this CPU's target), so that only its first load repacks.
void UsePackedBlob(const registry::ResolvedModel& m, arch::LoadOptions* options);

// One loaded model version. Immutable once loaded (the engine thread is thread-safe); shared
// by every request that holds a lease on it. Destroying it unloads the model: the engine
// thread is shut down (its processes end as "shutdown") and joined first, then the pool, the
// tokenizer and the mapping go.
struct LoadedModel {
  LoadedModel() = default;
  ~LoadedModel();
  LoadedModel(const LoadedModel&) = delete;
  LoadedModel& operator=(const LoadedModel&) = delete;

  std::unique_ptr<arch::Model> model;  // null from loaders that load no weights (fakes)
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null when `model` is
  // The model's own template; unset (with the reason) when its GGUF has none we know.
  std::optional<chat::ChatTemplate> chat_template;
  Status chat_template_error;
  std::unique_ptr<ThreadPool> pool;              // the engine's share of the CPU threads
  std::unique_ptr<kernel::EngineThread> engine;  // null unless the loader starts engines
  size_t context_tokens = 0;  // longest sequence (prompt + generated) one process may hold
  uint64_t kv_bytes = 0;      // the engine's KV pool
  uint64_t resident_bytes = 0;  // what it costs against the manager's memory budget
};

class Loader {
 public:
  virtual ~Loader() = default;
  // What loading `m` will cost, before loading it (admission against the budget).
  virtual uint64_t EstimateBytes(const registry::ResolvedModel& m) const = 0;
  // Loads the version's blob. Errors name the model and what is wrong with it.
  virtual StatusOr<std::unique_ptr<LoadedModel>> Load(const registry::ResolvedModel& m) = 0;
};

// The engine each loaded instance runs (the daemon's --threads, --ctx-size, --parallel).
struct InstanceEngineOptions {
  size_t num_threads = 1;         // the instance's ThreadPool; >= 1
  size_t context_tokens = 4096;   // per process, clamped to the model's trained context
  size_t parallel = 4;            // processes running at once (batch slots)
  size_t batch_tokens = 512;      // tokens per forward pass
  // KV pool; 0: enough for `parallel` processes of `context_tokens` each.
  uint64_t kv_budget_bytes = 0;
  // Element types of the cached keys and values: the same budget holds 2x the blocks in
  // F16 as in F32, ~3.8x in Q8_0.
  cpu::KvType cache_type_k = cpu::KvType::kF16;
  cpu::KvType cache_type_v = cpu::KvType::kF16;
  // The scheduler's parameters the engine starts with (changed later through
  // EngineThread::UpdateScheduling).
  kernel::SchedulingSettings scheduling;
  // Host memory a preempted process's KV may be swapped out to; 0: preemption recomputes.
  uint64_t swap_budget_bytes = 0;
  // Processes that may wait beyond the `parallel` running ones; a submission past
  // parallel + max_queued is refused (kUnavailable: the daemon's 503 with Retry-After).
  size_t max_queued = 64;
  // Let the prefix cache share KV blocks between tenants (by default each tenant's prompts
  // are cached apart, so one tenant's timing cannot reveal another's prompts).
  bool share_prefix_across_tenants = false;
};

struct GgufLoaderOptions {
  // Memory each instance will need beyond its weights and KV pool (scratch), counted against
  // the budget with the mapped file.
  uint64_t extra_bytes_per_instance = 0;
  // Set: every instance starts an engine thread with these options.
  std::optional<InstanceEngineOptions> engine = std::nullopt;
};

// Maps the blob (arch::Model::Load), builds the tokenizer and the chat template from its
// metadata and, if asked, starts the engine. Resident bytes: the file size (the weights are
// read in place from the mapping) plus the engine's KV pool plus the extra. The estimate
// before loading counts the KV pool only when kv_budget_bytes fixes it.
std::unique_ptr<Loader> NewGgufLoader(const GgufLoaderOptions& options = {});

}  // namespace llmasos::manager

#endif  // LLMASOS_SERVICES_MANAGER_LOADER_H_
