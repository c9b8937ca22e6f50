// An unmerged LoRA adapter as the batched forward pass applies it: for each adapted projection
// W ([out, in], frozen in its stored type) two float32 matrices A [rank, in] and B [out, rank],
// and y = W x + scale * B (A x) for the rows of the processes that carry the adapter. Rows
// without an adapter pay nothing; W is shared by every row.
//
// train::ReadLoraAdapter reads the file and train::UnmergedLoraWeights makes one of these
// (model/train/adapter.h is the one loader); the model manager caches them per loaded base
// model and processes hold them (kernel::ProcessSpec::adapter) while they run.
//
// Thread safety: immutable once built; shared read-only by the engine thread and the cache.
#ifndef LLMASOS_MODEL_ARCH_LORA_WEIGHTS_H_
#define LLMASOS_MODEL_ARCH_LORA_WEIGHTS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace llmasos::arch {

// The projections LoRA can adapt, in the order their slots are laid out (train::LoraLayout).
enum class LoraTarget : uint32_t { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr size_t kNumLoraTargets = 7;

struct LoraWeights {
  static constexpr size_t kAbsent = SIZE_MAX;

  std::string name;  // what the process table shows: the adapter's reference
  // Identifies the weights and the scale (digest and scale): two processes share prefix-cache
  // blocks only when their keys are equal.
  std::string cache_key;
  size_t num_layers = 0;  // of the base model it was read for
  size_t rank = 0;
  float scale = 0;        // (alpha / rank) * the user's scale
  std::vector<float> params;  // every A and B
  // [num_layers * kNumLoraTargets]: where A [rank, in] and B [out, rank] start in params;
  // kAbsent when that projection is not adapted.
  std::vector<size_t> a_offset, b_offset;

  // A and B of (layer, target), or null when it is not adapted. REQUIRES: layer < num_layers.
  const float* A(size_t layer, LoraTarget t) const { return At(a_offset, layer, t); }
  const float* B(size_t layer, LoraTarget t) const { return At(b_offset, layer, t); }
  size_t bytes() const { return params.size() * sizeof(float); }

 private:
  const float* At(const std::vector<size_t>& offsets, size_t layer, LoraTarget t) const {
    const size_t o = offsets[layer * kNumLoraTargets + static_cast<size_t>(t)];
    return o == kAbsent ? nullptr : params.data() + o;
  }
};

}  // namespace llmasos::arch

#endif  // LLMASOS_MODEL_ARCH_LORA_WEIGHTS_H_
