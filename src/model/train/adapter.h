// LoRA adapters as GGUF files, in llama.cpp's adapter layout:
//   general.architecture = the base model's, general.type = "adapter", adapter.type = "lora",
//   adapter.lora.alpha = alpha (float32);
//   per adapted projection W (GGUF dims [in, out]) of layer N, float32 tensors
//     blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_a  dims [in, rank]
//     blk.N.<...>.weight.lora_b                                                        dims [rank, out]
//   i.e. A [rank, in] and B [out, rank] row-major, applied as W x + (alpha / rank) B A x
//   (llama.cpp takes the rank from lora_b's first dimension).
// Extra llmasos.* keys record how the adapter was trained; readers ignore what they do not know.
//
// Thread safety: functions of their arguments.
#ifndef LLMASOS_MODEL_TRAIN_ADAPTER_H_
#define LLMASOS_MODEL_TRAIN_ADAPTER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/arch/llama_model.h"
#include "model/arch/lora_weights.h"
#include "model/gguf/gguf.h"
#include "model/train/lora.h"
#include "util/status.h"

namespace llmasos::train {

struct AdapterInfo {
  std::string name;                                   // general.name
  std::vector<std::pair<std::string, std::string>> notes;  // written as llmasos.<key> strings
};

// The adapter file's bytes.
StatusOr<std::vector<uint8_t>> SerializeLoraAdapter(const arch::ModelConfig& model,
                                                    const LoraLayout& layout,
                                                    const std::vector<float>& params,
                                                    const AdapterInfo& info);

struct LoadedAdapter {
  LoraLayout layout;
  std::vector<float> params;  // [layout.num_params()]
};

// Reads an adapter for `model`. InvalidArgument naming what does not fit: not an adapter, not
// LoRA, another architecture, a tensor that names no projection of the model, a shape that
// does not match it, unequal ranks, a non-F32/F16 type, lora_a without lora_b.
StatusOr<LoadedAdapter> ReadLoraAdapter(const gguf::GgufFile& file, const arch::ModelConfig& model);

// The float32 rows of one adapted matrix: W + scale * (alpha / rank) * B A, where W is the
// stored matrix of `slot` (dequantized). REQUIRES: w is that matrix of the model the adapter
// was read for.
std::vector<float> MergedMatrix(const LoadedAdapter& adapter, const LoraSlot& slot, float scale,
                                const cpu::MatView& w);

// The adapter as the batched forward pass applies it, unmerged (arch/lora_weights.h): its A
// and B moved over, scale = (alpha / rank) * `scale`. `name` is what the process table shows,
// `cache_key` what keeps its prefix-cache blocks apart from other adapters' (say the file's
// digest and the scale). REQUIRES: adapter read for `model`.
arch::LoraWeights UnmergedLoraWeights(LoadedAdapter adapter, float scale, const arch::ModelConfig& model,
                                      std::string name, std::string cache_key);

// The GGUF tensor name of the matrix a slot adapts: "blk.N.attn_q.weight".
std::string AdaptedTensorName(const LoraSlot& slot);

// Folds `scale` x the adapter into the model's weights: each adapted matrix W becomes the
// float32 matrix W + scale * (alpha / rank) * B A (dequantized, then kept by the model), so
// every forward path runs the adapted model unchanged. Several adapters may be merged in turn.
// REQUIRES: adapter read for this model's config; the model not yet shared with a Context.
void MergeLoraAdapter(const LoadedAdapter& adapter, float scale, arch::Model* model);

}  // namespace llmasos::train

#endif  // LLMASOS_MODEL_TRAIN_ADAPTER_H_
