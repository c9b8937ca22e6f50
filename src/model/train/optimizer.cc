#include "model/train/optimizer.h"

#include <cmath>
#include <numbers>
#include <string>

namespace llmasos::train {

Status ValidateAdamWOptions(const AdamWOptions& o) {
  if (!(o.lr > 0.0f && o.lr < 10.0f)) return InvalidArgumentError("learning rate must be in (0, 10)");
  if (!(o.beta1 >= 0.0f && o.beta1 < 1.0f) || !(o.beta2 >= 0.0f && o.beta2 < 1.0f)) {
    return InvalidArgumentError("Adam betas must be in [0, 1)");
  }
  if (!(o.eps > 0.0f)) return InvalidArgumentError("Adam epsilon must be positive");
  if (!(o.weight_decay >= 0.0f && o.weight_decay < 1.0f)) {
    return InvalidArgumentError("weight decay must be in [0, 1)");
  }
  if (!(o.clip_norm >= 0.0f) || !std::isfinite(o.clip_norm)) {
    return InvalidArgumentError("gradient clip norm must be >= 0 (0 turns clipping off)");
  }
  if (o.total_steps == 0) return InvalidArgumentError("training needs at least 1 step");
  if (!(o.min_lr_ratio >= 0.0f && o.min_lr_ratio <= 1.0f)) {
    return InvalidArgumentError("minimum learning-rate ratio must be in [0, 1]");
  }
  return OkStatus();
}

float LearningRate(const AdamWOptions& o, size_t step) {
  if (step < o.warmup_steps) {
    return o.lr * static_cast<float>(step + 1) / static_cast<float>(o.warmup_steps);
  }
  const size_t decay_steps = o.total_steps > o.warmup_steps ? o.total_steps - o.warmup_steps : 1;
  const double progress =
      std::min(1.0, static_cast<double>(step - o.warmup_steps) / static_cast<double>(decay_steps));
  const double cosine = 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
  return static_cast<float>(o.lr * (o.min_lr_ratio + (1.0 - o.min_lr_ratio) * cosine));
}

double ClipGradNorm(std::span<float> grads, float max_norm) {
  double sum = 0.0;
  for (float g : grads) sum += static_cast<double>(g) * g;
  const double norm = std::sqrt(sum);
  if (max_norm > 0.0f && norm > max_norm) {
    const float scale = static_cast<float>(max_norm / (norm + 1e-6));
    for (float& g : grads) g *= scale;
  }
  return norm;
}

AdamW::AdamW(const AdamWOptions& options, size_t num_params)
    : options_(options), m_(num_params, 0.0f), v_(num_params, 0.0f) {}

float AdamW::Step(size_t step, std::span<const float> grads, std::span<float> params) {
  const AdamWOptions& o = options_;
  const float lr = LearningRate(o, step);
  const double t = static_cast<double>(step + 1);
  const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta1), t));
  const float bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(o.beta2), t));
  for (size_t i = 0; i < params.size(); ++i) {
    const float g = grads[i];
    m_[i] = o.beta1 * m_[i] + (1.0f - o.beta1) * g;
    v_[i] = o.beta2 * v_[i] + (1.0f - o.beta2) * g * g;
    const float m_hat = m_[i] / bc1;
    const float v_hat = v_[i] / bc2;
    params[i] -= lr * (m_hat / (std::sqrt(v_hat) + o.eps) + o.weight_decay * params[i]);
  }
  return lr;
}

}  // namespace llmasos::train
