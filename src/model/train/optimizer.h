// The optimiser side of training: AdamW over the flat LoRA parameter vector, gradient
// clipping by global norm, and a linear warm-up followed by cosine decay of the learning rate.
//
// Thread safety: values; one trainer owns its optimiser.
#ifndef LLMASOS_MODEL_TRAIN_OPTIMIZER_H_
#define LLMASOS_MODEL_TRAIN_OPTIMIZER_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "util/status.h"

namespace llmasos::train {

struct AdamWOptions {
  float lr = 2e-4f;           // peak learning rate
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: p -= lr * wd * p
  float clip_norm = 1.0f;     // clip the gradient to this global L2 norm; 0 turns it off
  size_t warmup_steps = 0;    // lr rises linearly from lr/warmup to lr over these steps
  size_t total_steps = 1;     // then decays along a half cosine to min_lr_ratio * lr
  float min_lr_ratio = 0.0f;
};

// InvalidArgument naming the bad option.
Status ValidateAdamWOptions(const AdamWOptions& o);

// The learning rate of optimiser step `step` (0-based).
float LearningRate(const AdamWOptions& o, size_t step);

// Scales grads so their L2 norm is at most max_norm (when max_norm > 0); returns the norm
// before clipping. The sum runs in double in index order, so it is reproducible.
double ClipGradNorm(std::span<float> grads, float max_norm);

class AdamW {
 public:
  AdamW(const AdamWOptions& options, size_t num_params);

  // One update of params with grads (already clipped) at step `step` (0-based): the bias
  // corrections use step + 1. Returns the learning rate used.
  float Step(size_t step, std::span<const float> grads, std::span<float> params);

  // The moment estimates, for checkpoints.
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  const AdamWOptions& options() const { return options_; }

 private:
  AdamWOptions options_;
  std::vector<float> m_;  // [num_params] first moment
  std::vector<float> v_;  // [num_params] second moment
};

}  // namespace llmasos::train

#endif  // LLMASOS_MODEL_TRAIN_OPTIMIZER_H_
