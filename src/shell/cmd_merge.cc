// llmasos merge BASE ADAPTER[:scale]: folds a LoRA adapter into its base model and writes a
// complete model file (and, unless --no-register, registers it as a new version whose lineage
// names the base and the adapter with their digests and the scale). Each adapted matrix
// becomes W + scale * (alpha / rank) * B A (train::MergedMatrix, the same sum `--lora` makes
// at load), stored in the base tensor's own type or in --type; every other tensor and all
// metadata are copied byte for byte.
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "drivers/cpu/tensor_type.h"
#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "model/train/adapter.h"
#include "services/registry/registry.h"
#include "shell/commands.h"
#include "shell/session.h"

namespace llmasos::shell {
namespace {

struct MergeFlags {
  std::string base;
  std::string adapter;
  std::string out;
  std::string type;  // "" = each merged matrix in its base tensor's type
  std::string name;
  std::string version;
  bool no_register = false;
};

StatusOr<std::optional<cpu::TensorType>> ParseMergeType(const std::string& name) {
  if (name.empty()) return std::optional<cpu::TensorType>();
  auto type = gguf::WritableTensorType(name);
  if (!type.ok()) return InvalidArgumentError("--type: " + type.status().message());
  return std::optional<cpu::TensorType>(*type);
}

struct Merged {
  size_t matrices = 0;
  std::map<std::string, size_t> types;  // type name -> merged matrices written in it
};

StatusOr<Merged> WriteMerged(const ModelSource& base, const std::string& adapter_path, float scale,
                             std::optional<cpu::TensorType> type, const std::string& out) {
  ASSIGN_OR_RETURN(auto model, arch::Model::Load(base.path));
  ASSIGN_OR_RETURN(auto adapter_file, gguf::GgufFile::Open(adapter_path));
  ASSIGN_OR_RETURN(train::LoadedAdapter adapter, train::ReadLoraAdapter(*adapter_file, model->config()));
  std::map<std::string, const train::LoraSlot*, std::less<>> slots;
  for (const train::LoraSlot& s : adapter.layout.slots()) slots[train::AdaptedTensorName(s)] = &s;

  ASSIGN_OR_RETURN(auto in, gguf::GgufFile::Open(base.path));
  gguf::GgufWriter w;
  for (const gguf::MetadataEntry& e : in->metadata()) {
    if (e.key == "general.alignment") continue;
    RETURN_IF_ERROR(w.CopyValue(e.key, e.value));
  }
  w.SetAlignment(static_cast<uint32_t>(in->alignment()));
  Merged merged;
  for (const gguf::TensorInfo& t : in->tensors()) {
    auto slot = slots.find(t.name);
    if (slot == slots.end()) {
      RETURN_IF_ERROR(w.AddTensor(t.name, t.type, t.dims, {t.data, t.num_bytes}));
      continue;
    }
    const size_t cols = t.dims[0];
    const size_t rows = t.num_elements / cols;
    const cpu::MatView view{t.type, t.data, rows, cols, cpu::RowBytes(t.type, cols)};
    const std::vector<float> values = train::MergedMatrix(adapter, *slot->second, scale, view);
    const cpu::TensorType to = type.value_or(t.type);
    Status st = w.AddTensorFromFloats(t.name, to, t.dims, values);
    if (!st.ok()) {
      return st.Annotate("writing the merged tensor '" + std::string(t.name) + "' as " +
                         std::string(cpu::Traits(to).name) + " (--type picks another)");
    }
    ++merged.matrices;
    ++merged.types[std::string(cpu::Traits(to).name)];
    slots.erase(slot);
  }
  if (!slots.empty()) {
    return InvalidArgumentError("the base model has no tensor '" + slots.begin()->first + "' for the adapter");
  }
  RETURN_IF_ERROR(w.WriteFile(out));
  return merged;
}

int MergeMain(const MergeFlags& f) {
  auto type = ParseMergeType(f.type);
  if (!type.ok()) return ReportError(type.status());
  auto base = ResolveModelSource(f.base);
  if (!base.ok()) return ReportError(base.status());
  std::string adapter_ref;
  float scale = 1.0f;
  if (Status s = ParseLoraSpec(f.adapter, &adapter_ref, &scale); !s.ok()) return ReportError(s);
  auto adapter = ResolveModelSource(adapter_ref);
  if (!adapter.ok()) return ReportError(adapter.status().Annotate("the adapter"));
  const std::string name = f.name.empty() ? adapter->stem + "-merged" : f.name;
  const std::string out = f.out.empty() ? name + ".gguf" : f.out;

  auto merged = WriteMerged(*base, adapter->path, scale, *type, out);
  if (!merged.ok()) return ReportError(merged.status());
  std::string types;
  for (const auto& [t, n] : merged->types) types += (types.empty() ? "" : ", ") + std::to_string(n) + " " + t;
  std::printf("merged       %zu matrices (%s) of %s x %g into %s\n", merged->matrices, types.c_str(),
              adapter->ref.c_str(), scale, base->ref.c_str());
  std::printf("model        %s\n", out.c_str());
  if (f.no_register) return 0;

  registry::TrainingLineage training;
  training.base = base->ref;
  training.base_digest = base->digest;
  training.parameters = nlohmann::json{{"adapter", adapter->ref},
                                       {"adapter_digest", adapter->digest},
                                       {"scale", scale},
                                       {"type", f.type.empty() ? "as the base" : f.type}}
                            .dump();
  Status registered = RegisterMadeModel(out, name, f.version, "merge", training, "the merged model");
  return registered.ok() ? 0 : ReportError(registered);
}

}  // namespace

void AddMergeCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<MergeFlags>();
  CLI::App* cmd = app.add_subcommand("merge", "fold a LoRA adapter into its base model; writes and registers the result");
  cmd->add_option("base", f->base, "base model: .gguf path or registry reference")->required();
  cmd->add_option("adapter", f->adapter, "LoRA adapter: FILE|REF[:scale] (scale default 1)")->required();
  cmd->add_option("-o,--out", f->out, "model file to write (default: NAME.gguf)");
  cmd->add_option("--type", f->type, "type of the merged matrices (default: each base tensor's own type)");
  cmd->add_option("--name", f->name, "registry name (default: ADAPTER-merged)");
  cmd->add_option("--version", f->version, "semantic version (default 1.0.0, then the next minor)");
  cmd->add_flag("--no-register", f->no_register, "write the file only");
  cmd->callback([f, exit_code] { *exit_code = MergeMain(*f); });
}

}  // namespace llmasos::shell
