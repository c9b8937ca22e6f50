#include "services/manager/loader.h"

#include <algorithm>
#include <utility>

#include "model/arch/packed_blob.h"
#include "model/chat/conversation.h"
#include "util/logging.h"

namespace llmasos::manager {

StatusOr<ModelFiles> LoadModelFile(const std::string& path, const std::string& label,
                                   const arch::LoadOptions& options) {
  ModelFiles files;
  auto model = arch::Model::Load(path, options);
  if (!model.ok()) return model.status().Annotate("loading " + label);
  files.model = std::move(model).value();
  auto vocab = tokenizer::VocabFromGguf(files.model->file());
  if (!vocab.ok()) return vocab.status().Annotate("loading the tokenizer of " + label);
  if (vocab->tokens.size() != files.model->config().vocab_size) {
    return DataLossError("the tokenizer of " + label + " has " + std::to_string(vocab->tokens.size()) +
                         " tokens but the embedding table has " +
                         std::to_string(files.model->config().vocab_size) + " rows");
  }
  auto tok = tokenizer::Tokenizer::Create(std::move(vocab).value());
  if (!tok.ok()) return tok.status().Annotate("loading the tokenizer of " + label);
  files.tokenizer = std::move(tok).value();
  files.model->ReleaseUnusedFilePages();
  return files;
}

void UsePackedBlob(const registry::ResolvedModel& m, arch::LoadOptions* options) {
  const arch::PackedBlobKey key{m.manifest.digest, cpu::kPackedLayoutVersion, cpu::ChosenTarget()};
  auto path = registry::BlobStore::DerivedPathOf(m.blob_path, arch::PackedBlobKind(key));
  if (!path.ok()) {  // a target name no kind can hold: repack every load
    LOG(kWarning) << "not keeping packed weights: " << path.status().ToString();
    return;
  }
  options->packed_blob_path = std::move(path).value();
  options->packed_blob_source = m.manifest.digest;
}

LoadedModel::~LoadedModel() {
  // The engine thread reads the model, the tokenizer and the pool: it goes first.
  if (engine != nullptr) engine->Shutdown();
  engine.reset();
}

namespace {

constexpr size_t kKvBlockTokens = 16;

class GgufLoader : public Loader {
 public:
  explicit GgufLoader(const GgufLoaderOptions& options) : options_(options) {}

  uint64_t EstimateBytes(const registry::ResolvedModel& m) const override {
    uint64_t kv = options_.engine ? options_.engine->kv_budget_bytes : 0;
    return m.manifest.size_bytes + kv + options_.extra_bytes_per_instance;
  }

  StatusOr<std::unique_ptr<LoadedModel>> Load(const registry::ResolvedModel& m) override {
    const std::string what = m.manifest.name + "@" + m.manifest.version;
    auto loaded = std::make_unique<LoadedModel>();
    arch::LoadOptions load;
    if (options_.engine) {
      // The engine's pool exists before the weights so that the repack runs on its threads.
      loaded->pool = std::make_unique<ThreadPool>(std::max<size_t>(options_.engine->num_threads, 1));
      load.pool = loaded->pool.get();
    }
    UsePackedBlob(m, &load);
    ASSIGN_OR_RETURN(ModelFiles files, LoadModelFile(m.blob_path, what, load));
    loaded->model = std::move(files.model);
    loaded->tokenizer = std::move(files.tokenizer);
    auto tmpl = chat::ChatTemplateFor(*loaded->tokenizer, "");
    if (tmpl.ok()) {
      loaded->chat_template = std::move(tmpl).value();
    } else {
      loaded->chat_template_error = tmpl.status();
    }
    const arch::ModelConfig& c = loaded->model->config();
    loaded->context_tokens = c.context_length;
    if (options_.engine) {
      const InstanceEngineOptions& e = *options_.engine;
      loaded->context_tokens = std::min(e.context_tokens, c.context_length);
      uint64_t kv = e.kv_budget_bytes;
      if (kv == 0) {
        Status fits = cpu::CheckKvTypesFit(e.cache_type_k, e.cache_type_v, c.head_dim);
        if (!fits.ok()) return fits.Annotate("starting the engine of " + what);
        const uint64_t blocks = (loaded->context_tokens + kKvBlockTokens - 1) / kKvBlockTokens * e.parallel;
        kv = blocks * *kernel::KvBlockBytes(c.num_layers, c.kv_dim(), kKvBlockTokens, e.cache_type_k,
                                            e.cache_type_v);
      }
      loaded->kv_bytes = kv;
      kernel::EngineThreadOptions o;
      o.engine.policy = e.scheduling.policy;
      o.engine.policy_options = e.scheduling.policy_options;
      o.engine.scheduler.preemption = e.scheduling.preemption;
      o.engine.swap_budget_bytes = e.swap_budget_bytes;
      o.engine.share_prefix_across_tenants = e.share_prefix_across_tenants;
      o.engine.kv_budget_bytes = kv;
      o.engine.kv_block_tokens = kKvBlockTokens;
      o.engine.cache_type_k = e.cache_type_k;
      o.engine.cache_type_v = e.cache_type_v;
      o.engine.max_context = loaded->context_tokens;
      o.engine.scheduler.max_running = e.parallel;
      o.max_live = e.parallel + e.max_queued;
      o.engine.scheduler.max_batch_tokens = std::max(e.batch_tokens, e.parallel);
      o.engine.scheduler.max_prefill_chunk_tokens = o.engine.scheduler.max_batch_tokens;
      auto engine = kernel::EngineThread::Start(*loaded->model, *loaded->tokenizer, *loaded->pool, o,
                                                RealClock());
      if (!engine.ok()) return engine.status().Annotate("starting the engine of " + what);
      loaded->engine = std::move(engine).value();
    }
    loaded->resident_bytes =
        loaded->model->file().size_bytes() + loaded->kv_bytes + options_.extra_bytes_per_instance;
    return loaded;
  }

 private:
  GgufLoaderOptions options_;
};

}  // namespace

std::unique_ptr<Loader> NewGgufLoader(const GgufLoaderOptions& options) {
  return std::make_unique<GgufLoader>(options);
}

}  // namespace llmasos::manager
