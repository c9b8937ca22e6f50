// LoRA (low-rank adaptation) parameters for the llama family: for each adapted projection W
// ([out, in], frozen in its stored type) two float32 matrices A [rank, in] and B [out, rank];
// the adapted projection is  y = W x + (alpha / rank) * B (A dropout(x)).
//
// Every A and B of every layer lives in one flat float vector (LoraParams::values), so the
// optimiser, gradient clipping, checkpoints and the adapter writer see one array; LoraSlot
// says where each matrix starts. Layout order: layer, then target in LoraTarget order, A then B.
//
// Thread safety: values; the trainer owns one LoraParams and one gradient buffer of its size.
#ifndef LLMASOS_MODEL_TRAIN_LORA_H_
#define LLMASOS_MODEL_TRAIN_LORA_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/arch/llama_model.h"
#include "model/arch/lora_weights.h"
#include "util/status.h"

namespace llmasos::train {

// The projections LoRA can adapt, in the order their slots are laid out (one enum for training
// and for the forward pass's unmerged adapters).
using arch::LoraTarget;
using arch::kNumLoraTargets;
// "q", "k", "v", "o", "gate", "up", "down".
std::string_view LoraTargetName(LoraTarget t);
// The GGUF tensor stem llama.cpp uses: "attn_q", ..., "ffn_down".
std::string_view LoraTargetTensor(LoraTarget t);

struct LoraConfig {
  size_t rank = 8;
  float alpha = 16.0f;
  float dropout = 0.0f;  // probability of zeroing an input element of the LoRA path, [0, 1)
  std::array<bool, kNumLoraTargets> targets = {true, false, true, false, false, false, false};

  float scale() const { return alpha / static_cast<float>(rank); }
  bool has(LoraTarget t) const { return targets[static_cast<size_t>(t)]; }
};

// Parses a comma-separated list such as "q,v" or "all" into config->targets. InvalidArgument
// names an unknown target.
Status ParseLoraTargets(std::string_view list, LoraConfig* config);
// The inverse: "q,v".
std::string LoraTargetList(const LoraConfig& config);
// InvalidArgument naming the bad option (rank 0 or above the layer width, alpha <= 0, dropout
// outside [0, 1), no target).
Status ValidateLoraConfig(const LoraConfig& config, const arch::ModelConfig& model);

// Where one adapted projection's matrices sit in the flat vector.
struct LoraSlot {
  size_t layer = 0;
  LoraTarget target = LoraTarget::kQ;
  size_t in = 0;        // W's input width
  size_t out = 0;       // W's output width
  size_t a_offset = 0;  // A: [rank, in] floats from here
  size_t b_offset = 0;  // B: [out, rank] floats from here
};

class LoraLayout {
 public:
  LoraLayout() = default;
  LoraLayout(const LoraConfig& config, const arch::ModelConfig& model);

  const LoraConfig& config() const { return config_; }
  size_t num_params() const { return num_params_; }
  const std::vector<LoraSlot>& slots() const { return slots_; }
  // The slot of (layer, target), or null when that projection is not adapted.
  const LoraSlot* Find(size_t layer, LoraTarget t) const {
    const int idx = index_[layer * kNumLoraTargets + static_cast<size_t>(t)];
    return idx < 0 ? nullptr : &slots_[static_cast<size_t>(idx)];
  }

 private:
  LoraConfig config_;
  std::vector<LoraSlot> slots_;
  std::vector<int> index_;  // [num_layers * kNumLoraTargets]: slot index or -1
  size_t num_params_ = 0;
};

// The usual initialisation (as PEFT does): A uniform in +-1/sqrt(in) (Kaiming-uniform with
// a = sqrt(5)), B zero, so training starts from the base model exactly. Deterministic in seed.
std::vector<float> InitLoraParams(const LoraLayout& layout, uint64_t seed);

// A counter-based random number in [0, 1): the same (seed, a, b, c) always gives the same
// value, whatever the thread or the order of calls (dropout masks, data shuffles).
float HashUniform(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

}  // namespace llmasos::train

#endif  // LLMASOS_MODEL_TRAIN_LORA_H_
