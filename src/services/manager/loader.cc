#include "services/manager/loader.h"

#include <utility>

namespace llmasos::manager {
namespace {

class GgufLoader : public Loader {
 public:
  explicit GgufLoader(const GgufLoaderOptions& options) : options_(options) {}

  uint64_t EstimateBytes(const registry::ResolvedModel& m) const override {
    return m.manifest.size_bytes + options_.extra_bytes_per_instance;
  }

  StatusOr<std::unique_ptr<LoadedModel>> Load(const registry::ResolvedModel& m) override {
    const std::string what = m.manifest.name + "@" + m.manifest.version;
    auto loaded = std::make_unique<LoadedModel>();
    auto model = arch::Model::Load(m.blob_path);
    if (!model.ok()) return model.status().Annotate("loading " + what);
    loaded->model = std::move(model).value();
    auto vocab = tokenizer::VocabFromGguf(loaded->model->file());
    if (!vocab.ok()) return vocab.status().Annotate("loading the tokenizer of " + what);
    auto tok = tokenizer::Tokenizer::Create(std::move(vocab).value());
    if (!tok.ok()) return tok.status().Annotate("loading the tokenizer of " + what);
    loaded->tokenizer = std::move(tok).value();
    loaded->resident_bytes = loaded->model->file().size_bytes() + options_.extra_bytes_per_instance;
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
