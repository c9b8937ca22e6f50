#include "model/arch/llama_context.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "drivers/cpu/ops.h"

namespace llmasos::arch {
namespace {

// Rotates the first rope_dims dims of one head vector by the angles whose cos/sin are given.
//   kNormal pairs (x[2i], x[2i+1]); kNeox pairs (x[i], x[i + rope_dims/2]).
void ApplyRope(RopeMode mode, const float* cos, const float* sin, size_t rope_dims, float* x) {
  const size_t half = rope_dims / 2;
  if (mode == RopeMode::kNormal) {
    for (size_t i = 0; i < half; ++i) {
      const float a = x[2 * i], b = x[2 * i + 1];
      x[2 * i] = a * cos[i] - b * sin[i];
      x[2 * i + 1] = a * sin[i] + b * cos[i];
    }
  } else {
    for (size_t i = 0; i < half; ++i) {
      const float a = x[i], b = x[i + half];
      x[i] = a * cos[i] - b * sin[i];
      x[i + half] = a * sin[i] + b * cos[i];
    }
  }
}

void AddBias(const std::vector<float>& bias, size_t n, float* rows) {
  if (bias.empty()) return;
  for (size_t t = 0; t < n; ++t) cpu::AddInPlace(bias.data(), bias.size(), rows + t * bias.size());
}

}  // namespace

StatusOr<std::unique_ptr<Context>> Context::Create(const Model& model, ThreadPool& pool,
                                                   const ContextOptions& options) {
  const ModelConfig& c = model.config();
  if (options.max_tokens == 0) return InvalidArgumentError("context size must be at least 1 token");
  if (options.max_batch_tokens == 0) return InvalidArgumentError("batch size must be at least 1 token");
  size_t max_tokens = std::min(options.max_tokens, c.context_length);
  size_t max_batch = std::min(options.max_batch_tokens, max_tokens);
  auto ctx = std::unique_ptr<Context>(new Context(model, pool, max_tokens, max_batch));
  ctx->float_activations_ = options.float_activations;
  return ctx;
}

void Context::MatMul(const cpu::MatView& w, const float* x, size_t num_tokens, float* out) {
  if (float_activations_) {
    cpu::MatMulFloatActivations(w, x, num_tokens, out, pool_);
  } else {
    cpu::MatMul(w, x, num_tokens, out, pool_);
  }
}

Context::Context(const Model& model, ThreadPool& pool, size_t max_tokens, size_t max_batch_tokens)
    : model_(model), pool_(pool), max_tokens_(max_tokens), max_batch_tokens_(max_batch_tokens) {
  const ModelConfig& c = model.config();
  const size_t cache_floats = c.num_layers * max_tokens_ * c.kv_dim();
  k_cache_.reset(new float[cache_floats]);
  v_cache_.reset(new float[cache_floats]);
  const size_t n = max_batch_tokens_;
  x_.resize(n * c.embd);
  xn_.resize(n * c.embd);
  q_.resize(n * c.q_dim());
  k_.resize(n * c.kv_dim());
  v_.resize(n * c.kv_dim());
  att_.resize(n * c.q_dim());
  proj_.resize(n * c.embd);
  gate_.resize(n * c.ffn);
  up_.resize(n * c.ffn);
  rope_cos_.resize(n * c.rope_dims / 2);
  rope_sin_.resize(n * c.rope_dims / 2);
  scores_.resize(pool.num_threads() * max_tokens_);
  inv_freq_.resize(c.rope_dims / 2);
  for (size_t i = 0; i < c.rope_dims / 2; ++i) {
    inv_freq_[i] = static_cast<float>(
        std::pow(static_cast<double>(c.rope_theta), -2.0 * static_cast<double>(i) / c.rope_dims));
  }
}

size_t Context::kv_cache_bytes() const {
  const ModelConfig& c = model_.config();
  return 2 * c.num_layers * max_tokens_ * c.kv_dim() * sizeof(float);
}

void Context::Truncate(size_t num_tokens) { num_tokens_ = std::min(num_tokens_, num_tokens); }

Status Context::Forward(std::span<const TokenId> tokens, bool all_logits, float* logits_out) {
  const ModelConfig& c = model_.config();
  if (tokens.empty()) return InvalidArgumentError("no tokens to evaluate");
  if (tokens.size() > max_tokens_ - num_tokens_) {
    return OutOfRangeError("context is full: " + std::to_string(num_tokens_) + " + " +
                           std::to_string(tokens.size()) + " tokens exceed the context size of " +
                           std::to_string(max_tokens_));
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || static_cast<size_t>(tokens[i]) >= c.vocab_size) {
      return OutOfRangeError("token id " + std::to_string(tokens[i]) + " at index " +
                             std::to_string(i) + " is outside the vocabulary of " +
                             std::to_string(c.vocab_size));
    }
  }
  for (size_t begin = 0; begin < tokens.size(); begin += max_batch_tokens_) {
    const size_t n = std::min(max_batch_tokens_, tokens.size() - begin);
    const bool last_chunk = begin + n == tokens.size();
    float* out = nullptr;
    if (logits_out != nullptr && all_logits) out = logits_out + begin * c.vocab_size;
    if (logits_out != nullptr && !all_logits && last_chunk) out = logits_out;
    ForwardChunk(tokens.subspan(begin, n), all_logits, out);
  }
  return OkStatus();
}

void Context::ForwardChunk(std::span<const TokenId> tokens, bool all_logits, float* logits_out) {
  const ModelConfig& c = model_.config();
  const size_t n = tokens.size();
  const size_t pos0 = num_tokens_;
  const size_t half = c.rope_dims / 2;

  for (size_t t = 0; t < n; ++t) cpu::DequantizeRow(model_.token_embd(), tokens[t], &x_[t * c.embd]);
  for (size_t t = 0; t < n; ++t) {
    const float pos = static_cast<float>(pos0 + t);
    for (size_t i = 0; i < half; ++i) {
      const float angle = pos * inv_freq_[i];
      rope_cos_[t * half + i] = std::cos(angle);
      rope_sin_[t * half + i] = std::sin(angle);
    }
  }

  for (size_t layer_idx = 0; layer_idx < c.num_layers; ++layer_idx) {
    const LayerWeights& w = model_.layer(layer_idx);
    // Attention block.
    for (size_t t = 0; t < n; ++t) {
      cpu::RmsNorm(&x_[t * c.embd], w.attn_norm.data(), c.embd, c.rms_eps, &xn_[t * c.embd]);
    }
    MatMul(w.wq, xn_.data(), n, q_.data());
    MatMul(w.wk, xn_.data(), n, k_.data());
    MatMul(w.wv, xn_.data(), n, v_.data());
    AddBias(w.bq, n, q_.data());
    AddBias(w.bk, n, k_.data());
    AddBias(w.bv, n, v_.data());
    for (size_t t = 0; t < n; ++t) {
      const float* cos = &rope_cos_[t * half];
      const float* sin = &rope_sin_[t * half];
      for (size_t h = 0; h < c.num_heads; ++h) {
        ApplyRope(c.rope_mode, cos, sin, c.rope_dims, &q_[t * c.q_dim() + h * c.head_dim]);
      }
      for (size_t h = 0; h < c.num_kv_heads; ++h) {
        ApplyRope(c.rope_mode, cos, sin, c.rope_dims, &k_[t * c.kv_dim() + h * c.head_dim]);
      }
    }
    float* k_layer = k_cache_.get() + layer_idx * max_tokens_ * c.kv_dim();
    float* v_layer = v_cache_.get() + layer_idx * max_tokens_ * c.kv_dim();
    std::memcpy(k_layer + pos0 * c.kv_dim(), k_.data(), n * c.kv_dim() * sizeof(float));
    std::memcpy(v_layer + pos0 * c.kv_dim(), v_.data(), n * c.kv_dim() * sizeof(float));
    Attention(layer_idx, n);
    MatMul(w.wo, att_.data(), n, proj_.data());
    cpu::AddInPlace(proj_.data(), n * c.embd, x_.data());

    // MLP block.
    for (size_t t = 0; t < n; ++t) {
      cpu::RmsNorm(&x_[t * c.embd], w.ffn_norm.data(), c.embd, c.rms_eps, &xn_[t * c.embd]);
    }
    MatMul(w.gate, xn_.data(), n, gate_.data());
    MatMul(w.up, xn_.data(), n, up_.data());
    cpu::SwiGlu(gate_.data(), up_.data(), n * c.ffn, gate_.data());
    MatMul(w.down, gate_.data(), n, proj_.data());
    cpu::AddInPlace(proj_.data(), n * c.embd, x_.data());
  }
  num_tokens_ += n;

  if (logits_out == nullptr) return;
  const size_t first = all_logits ? 0 : n - 1;
  const size_t num_out = n - first;
  for (size_t t = first; t < n; ++t) {
    cpu::RmsNorm(&x_[t * c.embd], model_.output_norm().data(), c.embd, c.rms_eps,
                 &xn_[(t - first) * c.embd]);
  }
  MatMul(model_.output(), xn_.data(), num_out, logits_out);
}

// Causal grouped-query attention for the chunk's tokens at positions num_tokens_ ...
// num_tokens_ + num_new - 1, whose K/V are already in the cache (ForwardChunk advances
// num_tokens_ only after the last layer). One task per (token, query head).
void Context::Attention(size_t layer_idx, size_t num_new) {
  const ModelConfig& c = model_.config();
  const size_t pos0 = num_tokens_;
  const size_t group = c.num_heads / c.num_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const float* k_layer = k_cache_.get() + layer_idx * max_tokens_ * c.kv_dim();
  const float* v_layer = v_cache_.get() + layer_idx * max_tokens_ * c.kv_dim();
  pool_.Run(num_new * c.num_heads, [&](size_t task_idx, size_t thread_idx) {
    const size_t t = task_idx / c.num_heads;
    const size_t h = task_idx % c.num_heads;
    const size_t kv_h = h / group;
    const size_t num_visible = pos0 + t + 1;  // causal: positions 0 .. pos0 + t
    const float* q = &q_[t * c.q_dim() + h * c.head_dim];
    float* scores = &scores_[thread_idx * max_tokens_];
    for (size_t j = 0; j < num_visible; ++j) {
      scores[j] = scale * cpu::Dot(q, k_layer + j * c.kv_dim() + kv_h * c.head_dim, c.head_dim);
    }
    cpu::Softmax(scores, num_visible);
    float* out = &att_[t * c.q_dim() + h * c.head_dim];
    std::fill(out, out + c.head_dim, 0.0f);
    for (size_t j = 0; j < num_visible; ++j) {
      cpu::Axpy(scores[j], v_layer + j * c.kv_dim() + kv_h * c.head_dim, c.head_dim, out);
    }
  });
}

}  // namespace llmasos::arch
