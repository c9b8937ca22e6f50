#include "model/arch/batch_forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "util/fp16.h"
#include "util/logging.h"

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

// x = cap * tanh(x / cap), i < n (soft-capping).
void SoftCap(float cap, size_t n, float* x) {
  const float inv = 1.0f / cap;
  for (size_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv);
}

// theta^(-2i / rope_dims) / (linear_factor * factors[i]), i < rope_dims / 2.
std::vector<float> InverseFrequencies(size_t rope_dims, float theta, float linear_factor,
                                      const std::vector<float>& factors) {
  std::vector<float> out(rope_dims / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    double f = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / rope_dims);
    f /= linear_factor;
    if (!factors.empty()) f /= factors[i];
    out[i] = static_cast<float>(f);
  }
  return out;
}

size_t LogitRows(const BatchSegment& s) {
  switch (s.logits) {
    case LogitsMode::kNone:
      return 0;
    case LogitsMode::kLast:
      return 1;
    case LogitsMode::kAll:
      return s.tokens.size();
  }
  return 0;
}

// Folds one attention part into the running one: both records are [group, head_dim] value
// sums, then group score maxima, then group exp-sums (BatchForward::PartRecordFloats). The sums
// are rescaled to the larger maximum, as a softmax over both parts' scores would weigh them.
void FoldPart(size_t group, size_t head_dim, const float* part, float* acc) {
  const float* part_max = part + group * head_dim;
  const float* part_sum = part_max + group;
  float* acc_max = acc + group * head_dim;
  float* acc_sum = acc_max + group;
  for (size_t g = 0; g < group; ++g) {
    const float m = std::max(acc_max[g], part_max[g]);
    const float a = std::exp(acc_max[g] - m);
    const float b = std::exp(part_max[g] - m);
    acc_max[g] = m;
    acc_sum[g] = acc_sum[g] * a + part_sum[g] * b;
    float* o = acc + g * head_dim;
    const float* p = part + g * head_dim;
    for (size_t d = 0; d < head_dim; ++d) o[d] = o[d] * a + p[d] * b;
  }
}

}  // namespace

BatchForward::BatchForward(const Model& model, ThreadPool& pool, size_t max_batch_tokens,
                           size_t max_context, bool float_activations)
    : model_(model),
      pool_(pool),
      max_batch_tokens_(max_batch_tokens),
      max_context_(max_context),
      float_activations_(float_activations) {
  const ModelConfig& c = model.config();
  const size_t n = max_batch_tokens_;
  token_segment_.resize(n);
  token_pos_.resize(n);
  x_.resize(n * c.embd);
  xn_.resize(n * c.embd);
  q_.resize(n * c.q_dim());
  k_.resize(n * c.kv_dim());
  v_.resize(n * c.kv_dim());
  att_.resize(n * c.q_dim());
  proj_.resize(n * c.embd);
  gate_.resize(n * c.ffn);
  up_.resize(n * c.ffn);
  scores_.resize(pool.num_threads() * (c.num_heads / c.num_kv_heads) * max_context_);
  part_scratch_.resize(pool.num_threads() * 2 * PartRecordFloats());
  ropes_.resize(1);
  // LongRoPE picks its factors by the context this pass serves (max_context).
  ropes_[0].inv_freq = InverseFrequencies(c.rope_dims, c.rope_theta, c.rope_linear_factor,
                                          model.RopeFreqFactors(max_context_));
  if (c.sliding_window > 0 && c.swa_own_rope) {
    // Sliding layers rotating with their own base and scaling (gemma3).
    std::vector<float> local =
        InverseFrequencies(c.rope_dims, c.rope_theta_swa, c.rope_linear_factor_swa, {});
    if (local != ropes_[0].inv_freq) ropes_.push_back(Rope{std::move(local), {}, {}});
  }
  for (Rope& r : ropes_) {
    r.cos.resize(n * c.rope_dims / 2);
    r.sin.resize(n * c.rope_dims / 2);
  }
}

void BatchForward::HeadNorm(const std::vector<float>& weight, size_t n, size_t heads,
                            float* rows) const {
  if (weight.empty()) return;
  const ModelConfig& c = model_.config();
  for (size_t r = 0; r < n * heads; ++r) {
    cpu::RmsNorm(rows + r * c.head_dim, weight.data(), c.head_dim, c.rms_eps, rows + r * c.head_dim);
  }
}

void BatchForward::MatMul(const cpu::MatView& w, const float* x, size_t num_tokens, float* out) {
  if (float_activations_) {
    cpu::MatMulFloatActivations(w, x, num_tokens, out, pool_);
  } else {
    cpu::MatMul(w, x, num_tokens, out, pool_);
  }
}

KvLayerGroups SingleLayerGroup(const ModelConfig& c) {
  KvLayerGroups g;
  g.layers_per_group = c.num_layers;
  g.layer_group.assign(c.num_layers, 0);
  g.layer_index.resize(c.num_layers);
  std::iota(g.layer_index.begin(), g.layer_index.end(), 0u);
  g.group_window = {c.AllLayersWindow()};
  return g;
}

KvLayerGroups LayerGroupsOf(const ModelConfig& c) {
  std::vector<uint32_t> global, sliding;
  for (size_t l = 0; l < c.num_layers; ++l) (c.IsSlidingLayer(l) ? sliding : global).push_back(static_cast<uint32_t>(l));
  if (global.empty() || sliding.empty()) return SingleLayerGroup(c);
  KvLayerGroups g;
  g.layers_per_group = std::gcd(global.size(), sliding.size());
  g.layer_group.resize(c.num_layers);
  g.layer_index.resize(c.num_layers);
  for (const auto* kind : {&global, &sliding}) {
    for (size_t i = 0; i < kind->size(); ++i) {
      if (i % g.layers_per_group == 0) g.group_window.push_back(kind == &global ? 0 : c.sliding_window);
      g.layer_group[(*kind)[i]] = static_cast<uint32_t>(g.group_window.size() - 1);
      g.layer_index[(*kind)[i]] = static_cast<uint32_t>(i % g.layers_per_group);
    }
  }
  return g;
}

KvLayout WithLayerGroups(KvLayout kv, const KvLayerGroups& groups) {
  kv.layer_group = groups.layer_group;
  kv.layer_index = groups.layer_index;
  kv.num_groups = groups.num_groups();
  return kv;
}

Status BatchForward::CheckLayerGroups(const KvLayout& kv) {
  const ModelConfig& c = model_.config();
  group_window_.assign(kv.num_groups, 0);
  if (kv.layer_group.empty() && kv.layer_index.empty()) {
    if (kv.num_groups != 1) return InvalidArgumentError("KV layout has " + std::to_string(kv.num_groups) + " layer groups and no layer map");
    group_window_[0] = c.AllLayersWindow();
    return OkStatus();
  }
  if (kv.layer_group.size() != c.num_layers || kv.layer_index.size() != c.num_layers || kv.num_groups == 0) {
    return InvalidArgumentError("KV layout's layer groups map " + std::to_string(kv.layer_group.size()) +
                                " layers; the model has " + std::to_string(c.num_layers));
  }
  // A group's window: its layers' window when every one of them slides, else 0 (a layer of
  // the group reads every position).
  std::vector<bool> seen(kv.num_groups, false);
  const size_t places = kv.layer_stride == 0 ? 0 : kv.block_stride / kv.layer_stride;
  for (size_t l = 0; l < c.num_layers; ++l) {
    const size_t g = kv.layer_group[l];
    if (g >= kv.num_groups || kv.layer_index[l] >= places) {
      return InvalidArgumentError("KV layout maps layer " + std::to_string(l) + " to group " + std::to_string(g) +
                                  " place " + std::to_string(kv.layer_index[l]) + ", beyond its " +
                                  std::to_string(kv.num_groups) + " groups of " + std::to_string(places) + " layers");
    }
    const size_t window = c.IsSlidingLayer(l) ? c.sliding_window : 0;
    group_window_[g] = seen[g] ? std::min(group_window_[g], window) : window;
    seen[g] = true;
  }
  return OkStatus();
}

Status BatchForward::Run(std::span<const BatchSegment> segments, const KvLayout& kv,
                         size_t num_blocks) {
  const ModelConfig& c = model_.config();
  // Validate everything before anything is written.
  if (segments.empty()) return InvalidArgumentError("batch has no segments");
  if (kv.block_tokens == 0) return InvalidArgumentError("KV layout has 0 tokens per block");
  RETURN_IF_ERROR(cpu::CheckKvTypesFit(kv.k_type, kv.v_type, c.head_dim));
  RETURN_IF_ERROR(CheckLayerGroups(kv));
  num_blocks_ = num_blocks;
  size_t n = 0;
  for (size_t s = 0; s < segments.size(); ++s) {
    const BatchSegment& seg = segments[s];
    // Built only for an error: Run sits on the engine's per-step path.
    auto where = [s] { return "batch segment " + std::to_string(s) + ": "; };
    if (seg.tokens.empty()) return InvalidArgumentError(where() + "no tokens");
    n += seg.tokens.size();
    if (n > max_batch_tokens_) {
      return InvalidArgumentError(where() + "the batch exceeds " + std::to_string(max_batch_tokens_) + " tokens");
    }
    const size_t end = seg.pos0 + seg.tokens.size();
    if (end > max_context_) {
      return InvalidArgumentError(where() + "position " + std::to_string(end - 1) +
                                  " is beyond the context of " + std::to_string(max_context_));
    }
    if (kv.num_groups > 1 && seg.group_tables.size() != kv.num_groups) {
      return InvalidArgumentError(where() + std::to_string(seg.group_tables.size()) + " block tables for " +
                                  std::to_string(kv.num_groups) + " layer groups");
    }
    for (size_t g = 0; g < kv.num_groups; ++g) {
      const std::span<const BlockId> table = kv.num_groups == 1 ? seg.block_table : seg.group_tables[g];
      if (end > table.size() * kv.block_tokens) {
        return InvalidArgumentError(where() + "block table of " + std::to_string(table.size()) +
                                    " blocks does not cover position " + std::to_string(end - 1));
      }
      // The first position any token of the segment reads in this group: all of them, unless
      // its layers slide (entries before the window may name a released block). This check is
      // what keeps Attention from reading a block the cache gave back.
      const size_t window = group_window_[g];
      const size_t first_read = window > 0 && seg.pos0 + 1 > window ? seg.pos0 + 1 - window : 0;
      for (size_t b = first_read / kv.block_tokens; b < (end + kv.block_tokens - 1) / kv.block_tokens; ++b) {
        if (table[b] >= num_blocks) {
          return InvalidArgumentError(where() + "block id " + std::to_string(table[b]) +
                                      " is not one of the " + std::to_string(num_blocks) + " blocks");
        }
      }
    }
    for (size_t i = 0; i < seg.tokens.size(); ++i) {
      if (seg.tokens[i] < 0 || static_cast<size_t>(seg.tokens[i]) >= c.vocab_size) {
        return InvalidArgumentError(where() + "token id " + std::to_string(seg.tokens[i]) +
                                    " is outside the vocabulary of " + std::to_string(c.vocab_size));
      }
    }
    if (seg.logits != LogitsMode::kNone && seg.logits_out == nullptr) {
      return InvalidArgumentError(where() + "logits requested without an output buffer");
    }
    if (seg.lora != nullptr && (seg.lora->num_layers != c.num_layers ||
                                seg.lora->a_offset.size() != c.num_layers * kNumLoraTargets ||
                                seg.lora->b_offset.size() != c.num_layers * kNumLoraTargets)) {
      return InvalidArgumentError(where() + "adapter '" + seg.lora->name + "' was read for a " +
                                  std::to_string(seg.lora->num_layers) + "-layer model, this one has " +
                                  std::to_string(c.num_layers));
    }
  }

  const size_t half = c.rope_dims / 2;
  lora_groups_.clear();
  size_t t = 0;
  for (size_t s = 0; s < segments.size(); ++s) {
    if (const LoraWeights* lora = segments[s].lora; lora != nullptr) {
      auto g = std::find_if(lora_groups_.begin(), lora_groups_.end(),
                            [lora](const LoraGroup& x) { return x.lora == lora; });
      if (g == lora_groups_.end()) g = lora_groups_.insert(lora_groups_.end(), LoraGroup{lora, {}});
      for (size_t i = 0; i < segments[s].tokens.size(); ++i) g->rows.push_back(static_cast<uint32_t>(t + i));
    }
    for (size_t i = 0; i < segments[s].tokens.size(); ++i, ++t) {
      token_segment_[t] = static_cast<uint32_t>(s);
      token_pos_[t] = segments[s].pos0 + i;
      cpu::DequantizeRow(model_.token_embd(), segments[s].tokens[i], &x_[t * c.embd]);
      const float pos = static_cast<float>(token_pos_[t]);
      // The attention factor scales the rotated dims of Q and K (both: scores by its square).
      const float mscale = c.rope_attn_factor;
      for (Rope& r : ropes_) {
        for (size_t j = 0; j < half; ++j) {
          const float angle = pos * r.inv_freq[j];
          r.cos[t * half + j] = mscale * std::cos(angle);
          r.sin[t * half + j] = mscale * std::sin(angle);
        }
      }
    }
  }
  if (c.embd_scale) {
    const float scale = std::sqrt(static_cast<float>(c.embd));
    for (size_t i = 0; i < n * c.embd; ++i) x_[i] *= scale;
  }

  for (size_t layer_idx = 0; layer_idx < c.num_layers; ++layer_idx) {
    if (interrupt_ != nullptr && interrupt_->load(std::memory_order_relaxed)) {
      return CancelledError(std::string(kInterrupted));
    }
    const LayerWeights& w = model_.layer(layer_idx);
    // Attention block.
    for (size_t i = 0; i < n; ++i) {
      cpu::RmsNorm(&x_[i * c.embd], w.attn_norm.data(), c.embd, c.rms_eps, &xn_[i * c.embd]);
    }
    MatMul(w.wq, xn_.data(), n, q_.data());
    MatMul(w.wk, xn_.data(), n, k_.data());
    MatMul(w.wv, xn_.data(), n, v_.data());
    AddLora(layer_idx, LoraTarget::kQ, xn_.data(), c.embd, q_.data(), c.q_dim());
    AddLora(layer_idx, LoraTarget::kK, xn_.data(), c.embd, k_.data(), c.kv_dim());
    AddLora(layer_idx, LoraTarget::kV, xn_.data(), c.embd, v_.data(), c.kv_dim());
    AddBias(w.bq, n, q_.data());
    AddBias(w.bk, n, k_.data());
    AddBias(w.bv, n, v_.data());
    HeadNorm(w.q_norm, n, c.num_heads, q_.data());
    HeadNorm(w.k_norm, n, c.num_kv_heads, k_.data());
    const Rope& rope = ropes_[c.IsSlidingLayer(layer_idx) && ropes_.size() > 1 ? 1 : 0];
    for (size_t i = 0; i < n; ++i) {
      const float* cos = &rope.cos[i * half];
      const float* sin = &rope.sin[i * half];
      for (size_t h = 0; h < c.num_heads; ++h) {
        ApplyRope(c.rope_mode, cos, sin, c.rope_dims, &q_[i * c.q_dim() + h * c.head_dim]);
      }
      for (size_t h = 0; h < c.num_kv_heads; ++h) {
        ApplyRope(c.rope_mode, cos, sin, c.rope_dims, &k_[i * c.kv_dim() + h * c.head_dim]);
      }
      StoreKv(i, layer_idx, segments, kv);
    }
    Attention(layer_idx, segments, kv);
    MatMul(w.wo, att_.data(), n, proj_.data());
    AddLora(layer_idx, LoraTarget::kO, att_.data(), c.q_dim(), proj_.data(), c.embd);
    if (!w.post_attn_norm.empty()) {
      for (size_t i = 0; i < n; ++i) {
        cpu::RmsNorm(&proj_[i * c.embd], w.post_attn_norm.data(), c.embd, c.rms_eps, &proj_[i * c.embd]);
      }
    }
    cpu::AddInPlace(proj_.data(), n * c.embd, x_.data());

    // MLP block.
    for (size_t i = 0; i < n; ++i) {
      cpu::RmsNorm(&x_[i * c.embd], w.ffn_norm.data(), c.embd, c.rms_eps, &xn_[i * c.embd]);
    }
    MatMul(w.gate, xn_.data(), n, gate_.data());
    MatMul(w.up, xn_.data(), n, up_.data());
    AddLora(layer_idx, LoraTarget::kGate, xn_.data(), c.embd, gate_.data(), c.ffn);
    AddLora(layer_idx, LoraTarget::kUp, xn_.data(), c.embd, up_.data(), c.ffn);
    if (c.ffn_activation == FfnActivation::kGeluTanh) {
      cpu::GeGlu(gate_.data(), up_.data(), n * c.ffn, gate_.data());
    } else {
      cpu::SwiGlu(gate_.data(), up_.data(), n * c.ffn, gate_.data());
    }
    MatMul(w.down, gate_.data(), n, proj_.data());
    AddLora(layer_idx, LoraTarget::kDown, gate_.data(), c.ffn, proj_.data(), c.embd);
    if (!w.post_ffn_norm.empty()) {
      for (size_t i = 0; i < n; ++i) {
        cpu::RmsNorm(&proj_[i * c.embd], w.post_ffn_norm.data(), c.embd, c.rms_eps, &proj_[i * c.embd]);
      }
    }
    cpu::AddInPlace(proj_.data(), n * c.embd, x_.data());
  }

  // Final hidden states, for embeddings: every token of the segments that want them.
  t = 0;
  for (const BatchSegment& seg : segments) {
    if (seg.hidden_out != nullptr) {
      for (size_t i = 0; i < seg.tokens.size(); ++i) {
        cpu::RmsNorm(&x_[(t + i) * c.embd], model_.output_norm().data(), c.embd, c.rms_eps,
                     seg.hidden_out + i * c.embd);
      }
    }
    t += seg.tokens.size();
  }

  // Logits: the wanted rows, normalised and gathered, through the output matrix in one
  // product (the output matrix is the largest one; it is read once for the whole batch).
  size_t rows = 0;
  size_t wanting = 0;
  t = 0;
  for (const BatchSegment& seg : segments) {
    const size_t want = LogitRows(seg);
    const size_t first = t + seg.tokens.size() - want;
    for (size_t i = 0; i < want; ++i, ++rows) {
      cpu::RmsNorm(&x_[(first + i) * c.embd], model_.output_norm().data(), c.embd, c.rms_eps,
                   &xn_[rows * c.embd]);
    }
    wanting += want > 0;
    t += seg.tokens.size();
  }
  if (rows == 0) return OkStatus();
  if (wanting == 1) {  // one segment: straight into its buffer
    for (const BatchSegment& seg : segments) {
      if (LogitRows(seg) == 0) continue;
      MatMul(model_.output(), xn_.data(), rows, seg.logits_out);
      if (c.final_softcap > 0) SoftCap(c.final_softcap, rows * c.vocab_size, seg.logits_out);
    }
    return OkStatus();
  }
  logits_.resize(rows * c.vocab_size);
  MatMul(model_.output(), xn_.data(), rows, logits_.data());
  if (c.final_softcap > 0) SoftCap(c.final_softcap, rows * c.vocab_size, logits_.data());
  rows = 0;
  for (const BatchSegment& seg : segments) {
    const size_t want = LogitRows(seg);
    if (want == 0) continue;
    std::memcpy(seg.logits_out, &logits_[rows * c.vocab_size], want * c.vocab_size * sizeof(float));
    rows += want;
  }
  return OkStatus();
}

void BatchForward::AddLora(size_t layer_idx, LoraTarget target, const float* x, size_t in,
                           float* out, size_t out_dim) {
  for (const LoraGroup& g : lora_groups_) {
    const float* a = g.lora->A(layer_idx, target);  // [rank, in]
    const float* b = g.lora->B(layer_idx, target);  // [out_dim, rank]
    if (a == nullptr || b == nullptr) continue;
    const size_t rank = g.lora->rank;
    const float scale = g.lora->scale;
    // Two passes of rank-sized work per row (A x, then B times it): the cost is
    // rank * (in + out_dim) per row, small beside W's in * out_dim, and only for this group.
    lora_ax_.resize(g.rows.size() * rank);
    pool_.Run(g.rows.size(), [&](size_t i, size_t) {
      const float* xr = x + static_cast<size_t>(g.rows[i]) * in;
      float* ax = &lora_ax_[i * rank];
      for (size_t j = 0; j < rank; ++j) ax[j] = scale * cpu::Dot(a + j * in, xr, in);
      float* yr = out + static_cast<size_t>(g.rows[i]) * out_dim;
      for (size_t o = 0; o < out_dim; ++o) yr[o] += cpu::Dot(b + o * rank, ax, rank);
    });
  }
}

void BatchForward::StoreKv(size_t i, size_t layer_idx, std::span<const BatchSegment> segments,
                           const KvLayout& kv) {
  const size_t kv_dim = model_.config().kv_dim();
  const BatchSegment& seg = segments[token_segment_[i]];
  const size_t pos = token_pos_[i];
  const BlockId block = TableOf(seg, kv, layer_idx)[pos / kv.block_tokens];
  const size_t row = pos % kv.block_tokens;
  const float* k = &k_[i * kv_dim];
  const float* v = &v_[i * kv_dim];
  std::byte* k_plane = kv.K(block, layer_idx);
  switch (kv.k_type) {
    case cpu::KvType::kF32: {  // transposed: element d of this key in row d
      float* kt = reinterpret_cast<float*>(k_plane);
      for (size_t d = 0; d < kv_dim; ++d) kt[d * kv.block_tokens + row] = k[d];
      break;
    }
    case cpu::KvType::kF16: {
      uint16_t* kt = reinterpret_cast<uint16_t*>(k_plane);
      for (size_t d = 0; d < kv_dim; ++d) kt[d * kv.block_tokens + row] = F32ToF16(k[d]);
      break;
    }
    case cpu::KvType::kQ8_0:
      cpu::QuantizeRow(cpu::TensorType::kQ8_0, k, kv_dim,
                       k_plane + row * cpu::KvRowBytes(cpu::KvType::kQ8_0, kv_dim));
      break;
  }
  std::byte* v_row = kv.V(block, layer_idx) + row * cpu::KvRowBytes(kv.v_type, kv_dim);
  switch (kv.v_type) {
    case cpu::KvType::kF32:
      std::memcpy(v_row, v, kv_dim * sizeof(float));
      break;
    case cpu::KvType::kF16:
      cpu::F32ToF16Row(v, kv_dim, reinterpret_cast<uint16_t*>(v_row));
      break;
    case cpu::KvType::kQ8_0:
      cpu::QuantizeRow(cpu::TensorType::kQ8_0, v, kv_dim, v_row);
      break;
  }
}

// Causal grouped-query attention for every token of the batch: token i of a segment sees its
// own sequence's positions 0 .. pos(i) (on a sliding-window layer only the last
// sliding_window of them), read through the segment's block table (the new positions' K/V
// were stored before this is called).
//
// Each (token, KV head) pair's visible positions are cut into parts at multiples of
// kAttentionPart positions; a part gives its unnormalised value sum with its score maximum and
// exp-sum, and the parts fold in position order (flash-decoding). The parts depend on
// positions only, so a token's result is the same whatever the batch or the thread count. A
// batch of few pairs (decode) runs its parts as tasks of their own, so a model with one KV head
// still shares a long context's attention over every thread; a larger batch runs one task per
// pair, with the same arithmetic.
void BatchForward::Attention(size_t layer_idx, std::span<const BatchSegment> segments,
                             const KvLayout& kv) {
  const ModelConfig& c = model_.config();
  size_t num_tokens = 0;
  for (const BatchSegment& seg : segments) num_tokens += seg.tokens.size();
  const size_t group = c.num_heads / c.num_kv_heads;
  const size_t num_pairs = num_tokens * c.num_kv_heads;
  const size_t record = PartRecordFloats();
  const size_t window = c.IsSlidingLayer(layer_idx) ? c.sliding_window : 0;
  // Token i's visible positions [first, end).
  auto visible = [&](size_t i) {
    const size_t end = token_pos_[i] + 1;
    return std::pair<size_t, size_t>{window > 0 && end > window ? end - window : 0, end};
  };
  auto num_parts = [](std::pair<size_t, size_t> range) {
    return (range.second - 1) / kAttentionPart - range.first / kAttentionPart + 1;
  };
  // Part k of a range: [max(first, b), min(end, b + kAttentionPart)), b its k-th boundary.
  auto part_range = [](std::pair<size_t, size_t> range, size_t k) {
    const size_t b = (range.first / kAttentionPart + k) * kAttentionPart;
    return std::pair<size_t, size_t>{std::max(b, range.first), std::min(b + kAttentionPart, range.second)};
  };
  // The pair's folded record, divided by its sums, into att_.
  auto finish = [&](size_t pair, const float* acc) {
    const size_t i = pair / c.num_kv_heads;
    const size_t kvh = pair % c.num_kv_heads;
    float* out = &att_[i * c.q_dim() + kvh * group * c.head_dim];
    const float* sums = acc + group * c.head_dim + group;
    for (size_t g = 0; g < group; ++g) {
      const float inv = 1.0f / sums[g];
      for (size_t d = 0; d < c.head_dim; ++d) out[g * c.head_dim + d] = acc[g * c.head_dim + d] * inv;
    }
  };

  part_offset_.assign(num_pairs + 1, 0);
  for (size_t pair = 0; pair < num_pairs; ++pair) {
    part_offset_[pair + 1] = part_offset_[pair] + num_parts(visible(pair / c.num_kv_heads));
  }
  const size_t total_parts = part_offset_[num_pairs];
  const bool parts_as_tasks = num_pairs < 2 * pool_.num_threads() && total_parts > num_pairs &&
                              total_parts * record <= kMaxPartFloats;
  if (parts_as_tasks) {
    if (parts_.size() < total_parts * record) parts_.resize(total_parts * record);
    pool_.Run(total_parts, [&](size_t task_idx, size_t thread_idx) {
      const size_t pair = static_cast<size_t>(
          std::upper_bound(part_offset_.begin(), part_offset_.end(), task_idx) - part_offset_.begin() - 1);
      const size_t i = pair / c.num_kv_heads;
      const auto [p0, p1] = part_range(visible(i), task_idx - part_offset_[pair]);
      AttendPart(layer_idx, kv, segments, i, pair % c.num_kv_heads, p0, p1, thread_idx,
                 &parts_[task_idx * record]);
    });
    pool_.Run(num_pairs, [&](size_t pair, size_t thread_idx) {
      float* acc = &part_scratch_[thread_idx * 2 * record];
      const float* first = &parts_[part_offset_[pair] * record];
      std::copy(first, first + record, acc);
      for (size_t t = part_offset_[pair] + 1; t < part_offset_[pair + 1]; ++t) {
        FoldPart(group, c.head_dim, &parts_[t * record], acc);
      }
      finish(pair, acc);
    });
    return;
  }
  pool_.Run(num_pairs, [&](size_t pair, size_t thread_idx) {
    float* acc = &part_scratch_[thread_idx * 2 * record];
    float* part = acc + record;
    const size_t i = pair / c.num_kv_heads;
    const size_t kvh = pair % c.num_kv_heads;
    const auto range = visible(i);
    const size_t parts = num_parts(range);
    for (size_t k = 0; k < parts; ++k) {
      const auto [p0, p1] = part_range(range, k);
      AttendPart(layer_idx, kv, segments, i, kvh, p0, p1, thread_idx, k == 0 ? acc : part);
      if (k > 0) FoldPart(group, c.head_dim, part, acc);
    }
    finish(pair, acc);
  });
}

void BatchForward::AttendPart(size_t layer_idx, const KvLayout& kv,
                              std::span<const BatchSegment> segments, size_t i, size_t kvh,
                              size_t p0, size_t p1, size_t thread_idx, float* record) {
  const ModelConfig& c = model_.config();
  const size_t group = c.num_heads / c.num_kv_heads;
  const float scale = c.query_scale;
  // Q8_0 rows: blocks per kv_dim row and per head (head_dim % 32 == 0, a REQUIRES of Run).
  const size_t q8_row_blocks = c.kv_dim() / cpu::BlockQ8_0::kBlockElems;
  const size_t q8_head_blocks = c.head_dim / cpu::BlockQ8_0::kBlockElems;
  const size_t v_row_bytes = cpu::KvRowBytes(kv.v_type, c.kv_dim());
  const std::span<const BlockId> table = TableOf(segments[token_segment_[i]], kv, layer_idx);
  const float* q = &q_[i * c.q_dim() + kvh * group * c.head_dim];
  // Scores at their positions in this thread's rows; a block's keys before p0 are scored too
  // and unused.
  float* scores = &scores_[thread_idx * group * max_context_];
  const size_t first_block = p0 - p0 % kv.block_tokens;
  for (size_t j0 = first_block; j0 < p1; j0 += kv.block_tokens) {
    DCHECK_LT(size_t{table[j0 / kv.block_tokens]}, num_blocks_);  // never a released block
    const std::byte* k_plane = kv.K(table[j0 / kv.block_tokens], layer_idx);
    const size_t rows = std::min(kv.block_tokens, p1 - j0);
    switch (kv.k_type) {
      case cpu::KvType::kF32:  // transposed: element d of this head's keys is a row
        cpu::AttentionScores(q, c.head_dim, group,
                             reinterpret_cast<const float*>(k_plane) + kvh * c.head_dim * kv.block_tokens,
                             kv.block_tokens, rows, c.head_dim, scale, scores + j0, max_context_);
        break;
      case cpu::KvType::kF16:
        cpu::AttentionScoresF16(q, c.head_dim, group,
                                reinterpret_cast<const uint16_t*>(k_plane) + kvh * c.head_dim * kv.block_tokens,
                                kv.block_tokens, rows, c.head_dim, scale, scores + j0, max_context_);
        break;
      case cpu::KvType::kQ8_0:  // rows of kv_dim / 32 blocks; this head's start at kvh * head_dim / 32
        cpu::AttentionScoresQ8(q, c.head_dim, group,
                               reinterpret_cast<const cpu::BlockQ8_0*>(k_plane) + kvh * q8_head_blocks,
                               q8_row_blocks, rows, c.head_dim, scale, scores + j0, max_context_);
        break;
    }
  }
  float* out = record;
  float* maxes = record + group * c.head_dim;
  float* sums = maxes + group;
  for (size_t g = 0; g < group; ++g) {
    float* row = scores + g * max_context_ + p0;
    if (c.attn_softcap > 0) SoftCap(c.attn_softcap, p1 - p0, row);
    sums[g] = cpu::ExpMinusMax(row, p1 - p0, &maxes[g]);
  }
  std::fill(out, out + group * c.head_dim, 0.0f);
  for (size_t j0 = first_block; j0 < p1; j0 += kv.block_tokens) {
    const size_t j = std::max(j0, p0);  // the block's first position in the part
    const std::byte* v_rows = kv.V(table[j0 / kv.block_tokens], layer_idx) + (j - j0) * v_row_bytes;
    const size_t rows = std::min(j0 + kv.block_tokens, p1) - j;
    switch (kv.v_type) {
      case cpu::KvType::kF32:
        cpu::AttentionValues(scores + j, max_context_, group,
                             reinterpret_cast<const float*>(v_rows) + kvh * c.head_dim, c.kv_dim(),
                             rows, c.head_dim, out, c.head_dim);
        break;
      case cpu::KvType::kF16:
        cpu::AttentionValuesF16(scores + j, max_context_, group,
                                reinterpret_cast<const uint16_t*>(v_rows) + kvh * c.head_dim, c.kv_dim(),
                                rows, c.head_dim, out, c.head_dim);
        break;
      case cpu::KvType::kQ8_0:
        cpu::AttentionValuesQ8(scores + j, max_context_, group,
                               reinterpret_cast<const cpu::BlockQ8_0*>(v_rows) + kvh * q8_head_blocks,
                               q8_row_blocks, rows, c.head_dim, out, c.head_dim);
        break;
    }
  }
}

}  // namespace llmasos::arch
