#include "model/train/adapter.h"

#include <map>
#include <span>
#include <tuple>
#include <utility>

#include "model/gguf/gguf_writer.h"

namespace llmasos::train {
namespace {

std::string TensorName(const LoraSlot& s, bool b) { return AdaptedTensorName(s) + ".lora_" + (b ? "b" : "a"); }

// Parses "blk.N.<stem>.weight.lora_a|b" into (layer, target, is_b).
bool ParseTensorName(std::string_view name, size_t* layer, LoraTarget* target, bool* is_b) {
  if (!name.starts_with("blk.")) return false;
  name.remove_prefix(4);
  size_t dot = name.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot > 6) return false;
  size_t n = 0;
  for (char c : name.substr(0, dot)) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<size_t>(c - '0');
  }
  name.remove_prefix(dot + 1);
  for (size_t t = 0; t < kNumLoraTargets; ++t) {
    const std::string_view stem = LoraTargetTensor(static_cast<LoraTarget>(t));
    if (name.starts_with(stem) && name.substr(stem.size()) == ".weight.lora_a") {
      *layer = n, *target = static_cast<LoraTarget>(t), *is_b = false;
      return true;
    }
    if (name.starts_with(stem) && name.substr(stem.size()) == ".weight.lora_b") {
      *layer = n, *target = static_cast<LoraTarget>(t), *is_b = true;
      return true;
    }
  }
  return false;
}

}  // namespace

StatusOr<std::vector<uint8_t>> SerializeLoraAdapter(const arch::ModelConfig& model,
                                                    const LoraLayout& layout,
                                                    const std::vector<float>& params,
                                                    const AdapterInfo& info) {
  if (params.size() != layout.num_params()) {
    return InvalidArgumentError("adapter parameters do not match the LoRA layout");
  }
  const LoraConfig& c = layout.config();
  gguf::GgufWriter w;
  w.SetString("general.architecture", model.architecture);
  w.SetString("general.type", "adapter");
  w.SetString("general.name", info.name);
  w.SetString("adapter.type", "lora");
  w.SetFloat32("adapter.lora.alpha", c.alpha);
  w.SetUint32("llmasos.lora.rank", static_cast<uint32_t>(c.rank));
  w.SetString("llmasos.lora.targets", LoraTargetList(c));
  for (const auto& [key, value] : info.notes) w.SetString("llmasos." + key, value);
  for (const LoraSlot& s : layout.slots()) {
    RETURN_IF_ERROR(w.AddTensorFromFloats(TensorName(s, false), cpu::TensorType::kF32, {s.in, c.rank},
                                          std::span<const float>(&params[s.a_offset], c.rank * s.in)));
    RETURN_IF_ERROR(w.AddTensorFromFloats(TensorName(s, true), cpu::TensorType::kF32, {c.rank, s.out},
                                          std::span<const float>(&params[s.b_offset], s.out * c.rank)));
  }
  return w.Serialize();
}

StatusOr<LoadedAdapter> ReadLoraAdapter(const gguf::GgufFile& file, const arch::ModelConfig& model) {
  auto type = file.GetString("general.type");
  if (!type.ok() || *type != "adapter") {
    return InvalidArgumentError("not an adapter file (general.type is not 'adapter')");
  }
  auto adapter_type = file.GetString("adapter.type");
  if (!adapter_type.ok() || *adapter_type != "lora") {
    return InvalidArgumentError("not a LoRA adapter (adapter.type is not 'lora')");
  }
  ASSIGN_OR_RETURN(std::string_view arch, file.GetString("general.architecture"));
  if (arch != model.architecture) {
    return InvalidArgumentError("adapter is for architecture '" + std::string(arch) +
                                "', the model is '" + model.architecture + "'");
  }
  // (layer, target) -> (a, b)
  std::map<std::pair<size_t, size_t>, std::pair<const gguf::TensorInfo*, const gguf::TensorInfo*>> pairs;
  for (const gguf::TensorInfo& t : file.tensors()) {
    size_t layer;
    LoraTarget target;
    bool is_b;
    if (!ParseTensorName(t.name, &layer, &target, &is_b)) {
      return InvalidArgumentError("adapter tensor '" + std::string(t.name) +
                                  "' names no projection LoRA can adapt");
    }
    if (layer >= model.num_layers) {
      return InvalidArgumentError("adapter tensor '" + std::string(t.name) + "' is for layer " +
                                  std::to_string(layer) + " of a " + std::to_string(model.num_layers) +
                                  "-layer model");
    }
    if (t.type != cpu::TensorType::kF32 && t.type != cpu::TensorType::kF16) {
      return InvalidArgumentError("adapter tensor '" + std::string(t.name) + "' is not F32 or F16");
    }
    if (t.dims.size() != 2) return InvalidArgumentError("adapter tensor '" + std::string(t.name) + "' is not 2-D");
    auto& p = pairs[{layer, static_cast<size_t>(target)}];
    (is_b ? p.second : p.first) = &t;
  }
  if (pairs.empty()) return InvalidArgumentError("adapter has no LoRA tensors");
  LoraConfig config;
  config.targets.fill(false);
  config.rank = 0;
  for (const auto& [key, ab] : pairs) {
    if (ab.first == nullptr || ab.second == nullptr) {
      return InvalidArgumentError("adapter has lora_a without lora_b (or the reverse) for layer " +
                                  std::to_string(key.first));
    }
    const size_t rank = ab.first->dims[1];
    if (config.rank == 0) config.rank = rank;
    if (rank != config.rank || ab.second->dims[0] != rank) {
      return InvalidArgumentError("adapter tensors '" + std::string(ab.first->name) +
                                  "' have ranks that differ from the rest");
    }
    config.targets[key.second] = true;
  }
  ASSIGN_OR_RETURN(double alpha, file.GetFloat("adapter.lora.alpha"));
  config.alpha = alpha > 0 ? static_cast<float>(alpha) : static_cast<float>(config.rank);
  RETURN_IF_ERROR(ValidateLoraConfig(config, model));
  LoadedAdapter out;
  out.layout = LoraLayout(config, model);
  out.params.assign(out.layout.num_params(), 0.0f);
  for (const auto& [key, ab] : pairs) {
    const LoraSlot* slot = out.layout.Find(key.first, static_cast<LoraTarget>(key.second));
    if (ab.first->dims[0] != slot->in || ab.second->dims[1] != slot->out) {
      return InvalidArgumentError(
          "adapter tensor '" + std::string(ab.first->name) + "' is for a " +
          std::to_string(ab.first->dims[0]) + " -> " + std::to_string(ab.second->dims[1]) +
          " projection; the model's is " + std::to_string(slot->in) + " -> " + std::to_string(slot->out) +
          " (an adapter for another base model?)");
    }
    // Not every layer need be adapted: layers without tensors keep A = B = 0.
    for (const auto& [info, offset, rows, cols] :
         {std::tuple{ab.first, slot->a_offset, config.rank, slot->in},
          std::tuple{ab.second, slot->b_offset, slot->out, config.rank}}) {
      cpu::MatView view{info->type, info->data, rows, cols, cpu::RowBytes(info->type, cols)};
      for (size_t r = 0; r < rows; ++r) cpu::DequantizeRow(view, r, &out.params[offset + r * cols]);
    }
  }
  return out;
}

std::vector<float> MergedMatrix(const LoadedAdapter& adapter, const LoraSlot& slot, float scale,
                                const cpu::MatView& w) {
  const LoraConfig& c = adapter.layout.config();
  const float s = scale * c.scale();
  std::vector<float> merged(w.rows * w.cols);
  const float* a = &adapter.params[slot.a_offset];  // [rank, in]
  const float* b = &adapter.params[slot.b_offset];  // [out, rank]
  for (size_t r = 0; r < w.rows; ++r) {
    float* row = &merged[r * w.cols];
    cpu::DequantizeRow(w, r, row);
    for (size_t j = 0; j < c.rank; ++j) cpu::Axpy(s * b[r * c.rank + j], a + j * w.cols, w.cols, row);
  }
  return merged;
}

arch::LoraWeights UnmergedLoraWeights(LoadedAdapter adapter, float scale, const arch::ModelConfig& model,
                                      std::string name, std::string cache_key) {
  arch::LoraWeights w;
  w.name = std::move(name);
  w.cache_key = std::move(cache_key);
  w.num_layers = model.num_layers;
  w.rank = adapter.layout.config().rank;
  w.scale = scale * adapter.layout.config().scale();
  w.a_offset.assign(model.num_layers * kNumLoraTargets, arch::LoraWeights::kAbsent);
  w.b_offset = w.a_offset;
  for (const LoraSlot& slot : adapter.layout.slots()) {
    const size_t idx = slot.layer * kNumLoraTargets + static_cast<size_t>(slot.target);
    w.a_offset[idx] = slot.a_offset;
    w.b_offset[idx] = slot.b_offset;
  }
  w.params = std::move(adapter.params);
  return w;
}

std::string AdaptedTensorName(const LoraSlot& slot) {
  return "blk." + std::to_string(slot.layer) + "." + std::string(LoraTargetTensor(slot.target)) + ".weight";
}

static_assert(std::tuple_size_v<decltype(std::declval<arch::LayerWeights&>().Matrices())> ==
                  kNumLoraTargets,
              "LayerWeights::Matrices() lists a layer's matrices in LoraTarget's order");

void MergeLoraAdapter(const LoadedAdapter& adapter, float scale, arch::Model* model) {
  for (const LoraSlot& slot : adapter.layout.slots()) {
    arch::LayerWeights& lw = model->mutable_layer(slot.layer);
    cpu::MatView* w = lw.Matrices()[static_cast<size_t>(slot.target)];
    *w = model->KeepMatrix(MergedMatrix(adapter, slot, scale, *w), w->rows, w->cols);
  }
}

}  // namespace llmasos::train
