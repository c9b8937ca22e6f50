// The loader: what turns a registry version into a model instance in memory. The model
// manager (model_manager.h) decides when to load and unload; a Loader only does the work and
// says what it costs. The real one maps the GGUF blob and builds arch::Model and the
// tokenizer; tests use a fake with controllable load time, size and failures.
//
// Thread safety: Load and EstimateBytes may be called from several threads at once (for
// different versions), without the manager's lock held.
#ifndef LLMASOS_SERVICES_MANAGER_LOADER_H_
#define LLMASOS_SERVICES_MANAGER_LOADER_H_

#include <cstdint>
#include <memory>

#include "model/arch/llama_model.h"
#include "model/tokenizer/tokenizer.h"
#include "services/registry/registry.h"
#include "util/status.h"

namespace llmasos::manager {

// One loaded model version. Immutable once loaded; shared by every request that holds a
// lease on it. Destroying it unloads the model (unmaps the file, frees the buffers).
struct LoadedModel {
  std::unique_ptr<arch::Model> model;  // null from loaders that load no weights (fakes)
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null when `model` is
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

struct GgufLoaderOptions {
  // Memory each instance will need beyond its weights (the KV cache its engine allocates,
  // scratch), counted against the budget with the mapped file.
  uint64_t extra_bytes_per_instance = 0;
};

// Maps the blob (arch::Model::Load) and builds the tokenizer from its metadata. Resident
// bytes: the file size (the weights are read in place from the mapping) plus the extra.
std::unique_ptr<Loader> NewGgufLoader(const GgufLoaderOptions& options = {});

}  // namespace llmasos::manager

#endif  // LLMASOS_SERVICES_MANAGER_LOADER_H_
