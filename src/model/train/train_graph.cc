#include "model/train/train_graph.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "drivers/cpu/gemm.h"
#include "model/train/backward_ops.h"

namespace llmasos::train {
namespace {

// Output rows per chunk of the loss. Each chunk decodes the output matrix twice (forward and
// backward; a third of all the weights a step decodes for SmolLM2's 49152 x 576 at 32 rows),
// so a chunk takes as many rows as a [rows, vocab] logits buffer of 32 MiB holds, 32 to 128.
size_t LossRows(size_t vocab_size) {
  return std::clamp<size_t>((size_t{32} << 20) / sizeof(float) / vocab_size, 32, 128);
}

void Zero(std::vector<float>& v, size_t n) { std::fill(v.begin(), v.begin() + n, 0.0f); }

// Tasks per thread for work split in contiguous ranges (see backward_ops.cc).
constexpr size_t kChunksPerThread = 4;

// A dropout key per (call, layer, target).
uint64_t SlotKey(uint64_t key, const LoraSlot& slot) {
  return key * 1315423911ull + slot.layer * kNumLoraTargets + static_cast<size_t>(slot.target);
}

}  // namespace

size_t TrainGraph::EstimateBufferBytes(const arch::ModelConfig& c, const LoraConfig& lora,
                                       size_t n, size_t num_threads) {
  const size_t max_io = std::max({c.embd, c.q_dim(), c.ffn});
  size_t per_layer = n * (5 * c.embd + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * c.ffn + 2);
  for (size_t t = 0; t < kNumLoraTargets; ++t) {
    if (!lora.targets[t]) continue;
    per_layer += n * lora.rank;
    if (lora.dropout > 0.0f) per_layer += n * max_io;
  }
  size_t floats = c.num_layers * per_layer;
  floats += n * (3 * c.embd + 2 * c.q_dim() + 2 * c.kv_dim() + 4 * c.ffn + max_io + 2 * lora.rank);
  floats += lora.rank * max_io + 2 * c.context_length * (c.rope_dims / 2);
  floats += num_threads * AttentionScratchFloats(c.head_dim, n) + LossRows(c.vocab_size) * (2 * c.embd + c.vocab_size + 1);
  return floats * sizeof(float);
}

size_t TrainGraph::buffer_bytes() const {
  return EstimateBufferBytes(model_.config(), layout_.config(), max_tokens_, pool_.num_threads());
}

TrainGraph::TrainGraph(const arch::Model& model, const LoraLayout& layout, ThreadPool& pool,
                       size_t max_tokens)
    : model_(model), layout_(layout), pool_(pool), max_tokens_(max_tokens) {
  const arch::ModelConfig& c = model.config();
  const LoraConfig& lc = layout.config();
  const size_t n = max_tokens;
  pos_.resize(n);
  target_.resize(n);
  acts_.resize(c.num_layers);
  for (size_t l = 0; l < c.num_layers; ++l) {
    LayerActs& a = acts_[l];
    a.x_in.resize(n * c.embd);
    a.inv1.resize(n);
    a.xn1.resize(n * c.embd);
    a.q.resize(n * c.q_dim());
    a.k.resize(n * c.kv_dim());
    a.v.resize(n * c.kv_dim());
    a.att.resize(n * c.q_dim());
    a.h.resize(n * c.embd);
    a.inv2.resize(n);
    a.xn2.resize(n * c.embd);
    a.gate.resize(n * c.ffn);
    a.up.resize(n * c.ffn);
    for (size_t t = 0; t < kNumLoraTargets; ++t) {
      const LoraSlot* slot = layout.Find(l, static_cast<LoraTarget>(t));
      if (slot == nullptr) continue;
      a.lora_u[t].resize(n * lc.rank);
      if (lc.dropout > 0.0f) a.lora_x[t].resize(n * slot->in);
    }
  }
  const size_t max_io = std::max({c.embd, c.q_dim(), c.ffn});
  x_.resize(n * c.embd);
  dx_.resize(n * c.embd);
  dxn_.resize(n * c.embd);
  dq_.resize(n * c.q_dim());
  datt_.resize(n * c.q_dim());
  dk_.resize(n * c.kv_dim());
  dv_.resize(n * c.kv_dim());
  a_.resize(n * c.ffn);
  da_.resize(n * c.ffn);
  dgate_.resize(n * c.ffn);
  dup_.resize(n * c.ffn);
  lora_tmp_.resize(n * max_io);
  lora_du_.resize(n * lc.rank);
  lora_ft_.resize(lc.rank * n);
  lora_bt_.resize(lc.rank * max_io);
  const size_t half = c.rope_dims / 2;
  const size_t positions = std::min(n, c.context_length);
  rope_cos_.resize(positions * half);
  rope_sin_.resize(positions * half);
  for (size_t p = 0; p < positions; ++p) {
    for (size_t i = 0; i < half; ++i) {
      // As batch_forward.cc computes them, so training sees the angles inference uses.
      const float inv_freq = static_cast<float>(std::pow(
          static_cast<double>(c.rope_theta), -2.0 * static_cast<double>(i) / c.rope_dims));
      const float angle = static_cast<float>(p) * inv_freq;
      rope_cos_[p * half + i] = std::cos(angle);
      rope_sin_[p * half + i] = std::sin(angle);
    }
  }
  attn_scratch_.resize(pool.num_threads() * AttentionScratchFloats(c.head_dim, n));
  const size_t loss_rows = LossRows(c.vocab_size);
  loss_x_.resize(loss_rows * c.embd);
  loss_dx_.resize(loss_rows * c.embd);
  loss_logits_.resize(loss_rows * c.vocab_size);
  loss_inv_.resize(loss_rows);
}

void TrainGraph::LoraForward(const LoraSlot& slot, const float* params, const float* x, size_t n,
                             uint64_t key, LayerActs& acts, float* y) {
  const LoraConfig& lc = layout_.config();
  const size_t t = static_cast<size_t>(slot.target);
  const float* in = x;
  if (lc.dropout > 0.0f) {
    float* xd = acts.lora_x[t].data();
    const float keep = 1.0f / (1.0f - lc.dropout);
    const uint64_t k = SlotKey(key, slot);
    pool_.ParallelFor(n, 1, [&](size_t b, size_t e, size_t) {
      for (size_t r = b; r < e; ++r) {
        for (size_t i = 0; i < slot.in; ++i) {
          const bool drop = HashUniform(k, r, i, 0xD0) < lc.dropout;
          xd[r * slot.in + i] = drop ? 0.0f : x[r * slot.in + i] * keep;
        }
      }
    });
    in = xd;
  }
  // u = x A^T, then y += u (scale B)^T: GEMMs over chunks of tokens with the small factors
  // transposed once (lora_bt_ holds A^T, then scale * B^T).
  const size_t rank = lc.rank;
  const float* a = params + slot.a_offset;  // [rank, in]
  const float* b = params + slot.b_offset;  // [out, rank]
  float* u = acts.lora_u[t].data();         // [n, rank]
  float* ft = lora_bt_.data();
  Transpose(a, slot.in, rank, slot.in, ft);
  std::fill(u, u + n * rank, 0.0f);
  pool_.ParallelFor(n, 1, [&](size_t r0, size_t r1, size_t) {
    cpu::GemmAccumulate(in + r0 * slot.in, slot.in, r1 - r0, ft, rank, slot.in, rank, u + r0 * rank, rank);
  }, kChunksPerThread);
  const float scale = lc.scale();
  for (size_t o = 0; o < slot.out; ++o) {
    for (size_t j = 0; j < rank; ++j) ft[j * slot.out + o] = scale * b[o * rank + j];
  }
  pool_.ParallelFor(n, 1, [&](size_t r0, size_t r1, size_t) {
    cpu::GemmAccumulate(u + r0 * rank, rank, r1 - r0, ft, slot.out, rank, slot.out, y + r0 * slot.out, slot.out);
  }, kChunksPerThread);
}

void TrainGraph::LoraBackward(const LoraSlot& slot, const float* params, float* grads,
                              const float* x, size_t n, uint64_t key, const LayerActs& acts,
                              const float* dy, float* dx) {
  // Every product is a GEMM (cpu::GemmAccumulate) split by tokens or by columns, so each
  // element sums in one order whatever the thread count.
  const LoraConfig& lc = layout_.config();
  const size_t rank = lc.rank;
  const size_t t = static_cast<size_t>(slot.target);
  const float scale = lc.scale();
  const float* xd = lc.dropout > 0.0f ? acts.lora_x[t].data() : x;
  const float* u = acts.lora_u[t].data();   // [n, rank]
  const float* a = params + slot.a_offset;  // [rank, in]
  const float* b = params + slot.b_offset;  // [out, rank]
  float* ga = grads + slot.a_offset;
  float* gb = grads + slot.b_offset;
  float* ft = lora_ft_.data();              // [rank, n]: U^T, then dU^T
  // dB^T = U^T dy (into lora_bt_, [rank, out]); dB[o, j] += scale * dB^T[j, o].
  Transpose(u, rank, n, rank, ft);
  float* gbt = lora_bt_.data();
  std::fill(gbt, gbt + rank * slot.out, 0.0f);
  pool_.ParallelFor(slot.out, 16, [&](size_t o0, size_t o1, size_t) {
    cpu::GemmAccumulate(ft, n, rank, dy + o0, slot.out, n, o1 - o0, gbt + o0, slot.out);
    for (size_t o = o0; o < o1; ++o) {
      for (size_t j = 0; j < rank; ++j) gb[o * rank + j] += scale * gbt[j * slot.out + o];
    }
  }, kChunksPerThread);
  // dU = scale * dy B.
  float* du = lora_du_.data();  // [n, rank]
  std::fill(du, du + n * rank, 0.0f);
  pool_.ParallelFor(n, 1, [&](size_t r0, size_t r1, size_t) {
    cpu::GemmAccumulate(dy + r0 * slot.out, slot.out, r1 - r0, b, rank, slot.out, rank, du + r0 * rank, rank);
    for (size_t i = r0 * rank; i < r1 * rank; ++i) du[i] *= scale;
  }, kChunksPerThread);
  // dA += dU^T dropout(x), split over input columns.
  Transpose(du, rank, n, rank, ft);
  pool_.ParallelFor(slot.in, 16, [&](size_t c0, size_t c1, size_t) {
    cpu::GemmAccumulate(ft, n, rank, xd + c0, slot.in, n, c1 - c0, ga + c0, slot.in);
  }, kChunksPerThread);
  // dx += mask * (dU A): straight into dx without dropout, through lora_tmp_ with it.
  const uint64_t k = SlotKey(key, slot);
  const float keep = lc.dropout > 0.0f ? 1.0f / (1.0f - lc.dropout) : 1.0f;
  float* tmp = lora_tmp_.data();  // [n, in]
  pool_.ParallelFor(n, 1, [&](size_t r0, size_t r1, size_t) {
    if (lc.dropout == 0.0f) {
      cpu::GemmAccumulate(du + r0 * rank, rank, r1 - r0, a, slot.in, rank, slot.in, dx + r0 * slot.in, slot.in);
      return;
    }
    std::fill(tmp + r0 * slot.in, tmp + r1 * slot.in, 0.0f);
    cpu::GemmAccumulate(du + r0 * rank, rank, r1 - r0, a, slot.in, rank, slot.in, tmp + r0 * slot.in, slot.in);
    for (size_t r = r0; r < r1; ++r) {
      for (size_t i = 0; i < slot.in; ++i) {
        if (HashUniform(k, r, i, 0xD0) >= lc.dropout) dx[r * slot.in + i] += keep * tmp[r * slot.in + i];
      }
    }
  }, kChunksPerThread);
}

void TrainGraph::Project(size_t layer, LoraTarget t, const cpu::MatView& w,
                         const std::vector<float>& bias, const float* params, const float* x,
                         size_t n, uint64_t key, LayerActs& acts, float* y) {
  MatMulTiled(w, x, n, y, pool_);
  if (!bias.empty()) {
    for (size_t r = 0; r < n; ++r) cpu::AddInPlace(bias.data(), bias.size(), y + r * bias.size());
  }
  if (const LoraSlot* slot = layout_.Find(layer, t)) LoraForward(*slot, params, x, n, key, acts, y);
}

void TrainGraph::ProjectBackward(size_t layer, LoraTarget t, const cpu::MatView& w,
                                 const float* params, float* grads, const float* x, size_t n,
                                 uint64_t key, const LayerActs& acts, const float* dy, float* dx) {
  MatMulTransposedAdd(w, dy, n, dx, pool_);
  if (const LoraSlot* slot = layout_.Find(layer, t)) {
    LoraBackward(*slot, params, grads, x, n, key, acts, dy, dx);
  }
}

void TrainGraph::RopeRows(size_t n, size_t width, bool inverse, float* x) {
  const arch::ModelConfig& c = model_.config();
  const size_t half = c.rope_dims / 2;
  pool_.ParallelFor(n, 1, [&](size_t b, size_t e, size_t) {
    for (size_t r = b; r < e; ++r) {
      const float* cos = &rope_cos_[pos_[r] * half];
      const float* sin = &rope_sin_[pos_[r] * half];
      for (size_t h = 0; h < width / c.head_dim; ++h) {
        Rope(c.rope_mode, cos, sin, c.rope_dims, inverse, x + r * width + h * c.head_dim);
      }
    }
  });
}

AttentionShape TrainGraph::SequenceShape(size_t s) const {
  const arch::ModelConfig& c = model_.config();
  return AttentionShape{seq_begin_[s + 1] - seq_begin_[s], c.num_heads / c.num_kv_heads, c.head_dim,
                        c.q_dim(), c.kv_dim(), 1.0f / std::sqrt(static_cast<float>(c.head_dim))};
}

void TrainGraph::Attention(size_t n, const LayerActs& acts, float* out) {
  const arch::ModelConfig& c = model_.config();
  const size_t num_seqs = seq_begin_.size() - 1;
  pool_.Run(num_seqs * c.num_kv_heads, [&](size_t task, size_t thread) {
    const size_t s = task / c.num_kv_heads, kvh = task % c.num_kv_heads;
    const size_t b = seq_begin_[s];
    AttentionForward(SequenceShape(s), kvh, &acts.q[b * c.q_dim()], &acts.k[b * c.kv_dim()],
                     &acts.v[b * c.kv_dim()], out + b * c.q_dim(),
                     &attn_scratch_[thread * AttentionScratchFloats(c.head_dim, max_tokens_)]);
  });
  (void)n;
}

void TrainGraph::AttentionGrad(size_t n, const LayerActs& acts, const float* dout, float* dq,
                               float* dk, float* dv) {
  const arch::ModelConfig& c = model_.config();
  const size_t num_seqs = seq_begin_.size() - 1;
  std::fill(dq, dq + n * c.q_dim(), 0.0f);
  std::fill(dk, dk + n * c.kv_dim(), 0.0f);
  std::fill(dv, dv + n * c.kv_dim(), 0.0f);
  pool_.Run(num_seqs * c.num_kv_heads, [&](size_t task, size_t thread) {
    const size_t s = task / c.num_kv_heads, kvh = task % c.num_kv_heads;
    const size_t b = seq_begin_[s];
    AttentionBackward(SequenceShape(s), kvh, &acts.q[b * c.q_dim()], &acts.k[b * c.kv_dim()],
                      &acts.v[b * c.kv_dim()], dout + b * c.q_dim(), dq + b * c.q_dim(),
                      dk + b * c.kv_dim(), dv + b * c.kv_dim(),
                      &attn_scratch_[thread * AttentionScratchFloats(c.head_dim, max_tokens_)]);
  });
}

LossSum TrainGraph::OutputLoss(size_t n, const float* x, float grad_scale, float* dx) {
  const arch::ModelConfig& c = model_.config();
  LossSum loss;
  std::vector<size_t> rows;
  for (size_t r = 0; r < n; ++r) {
    if (target_[r] >= 0) rows.push_back(r);
  }
  const size_t chunk = LossRows(c.vocab_size);
  for (size_t i0 = 0; i0 < rows.size(); i0 += chunk) {
    const size_t m = std::min(chunk, rows.size() - i0);
    for (size_t i = 0; i < m; ++i) {
      loss_inv_[i] = RmsNormForward(x + rows[i0 + i] * c.embd, model_.output_norm().data(), c.embd,
                                    c.rms_eps, &loss_x_[i * c.embd]);
    }
    MatMulTiled(model_.output(), loss_x_.data(), m, loss_logits_.data(), pool_);
    std::vector<double> row_loss(m);
    pool_.Run(m, [&](size_t i, size_t) {
      row_loss[i] = CrossEntropyForwardBackward(&loss_logits_[i * c.vocab_size], c.vocab_size,
                                                static_cast<size_t>(target_[rows[i0 + i]]), grad_scale);
    });
    for (size_t i = 0; i < m; ++i) loss.sum += row_loss[i];
    loss.num_tokens += m;
    if (dx == nullptr) continue;
    Zero(loss_dx_, m * c.embd);
    MatMulTransposedAdd(model_.output(), loss_logits_.data(), m, loss_dx_.data(), pool_);
    for (size_t i = 0; i < m; ++i) {
      const size_t r = rows[i0 + i];
      RmsNormBackward(x + r * c.embd, model_.output_norm().data(), loss_inv_[i],
                      &loss_dx_[i * c.embd], c.embd, dx + r * c.embd);
    }
  }
  return loss;
}

StatusOr<LossSum> TrainGraph::Run(std::span<const TrainSequence* const> batch, const float* params,
                                  float* grads, float grad_scale, uint64_t dropout_key) {
  const arch::ModelConfig& c = model_.config();
  if (batch.empty()) return InvalidArgumentError("training batch is empty");
  size_t n = 0;
  seq_begin_.assign(1, 0);
  for (const TrainSequence* seq : batch) {
    const size_t len = seq->tokens.size();
    if (len == 0 || seq->is_target.size() != len) {
      return InvalidArgumentError("training sequence from line " + std::to_string(seq->source_line) +
                                  " is empty or its target mask has the wrong length");
    }
    if (len > c.context_length) {
      return InvalidArgumentError("training sequence from line " + std::to_string(seq->source_line) +
                                  " has " + std::to_string(len) + " tokens, beyond the model's context of " +
                                  std::to_string(c.context_length));
    }
    if (n + len > max_tokens_) {
      return InvalidArgumentError("training batch exceeds " + std::to_string(max_tokens_) + " tokens");
    }
    for (size_t i = 0; i < len; ++i) {
      if (seq->tokens[i] < 0 || static_cast<size_t>(seq->tokens[i]) >= c.vocab_size) {
        return InvalidArgumentError("training sequence from line " + std::to_string(seq->source_line) +
                                    ": token id " + std::to_string(seq->tokens[i]) +
                                    " is outside the vocabulary");
      }
      pos_[n + i] = i;
      target_[n + i] = i + 1 < len && seq->is_target[i + 1] ? seq->tokens[i + 1] : -1;
    }
    n += len;
    seq_begin_.push_back(n);
  }
  for (size_t s = 0; s + 1 < seq_begin_.size(); ++s) {
    for (size_t i = seq_begin_[s]; i < seq_begin_[s + 1]; ++i) {
      cpu::DequantizeRow(model_.token_embd(), static_cast<size_t>(batch[s]->tokens[i - seq_begin_[s]]),
                         &x_[i * c.embd]);
    }
  }

  // Forward.
  const size_t E = c.embd;
  for (size_t l = 0; l < c.num_layers; ++l) {
    const arch::LayerWeights& w = model_.layer(l);
    LayerActs& a = acts_[l];
    std::memcpy(a.x_in.data(), x_.data(), n * E * sizeof(float));
    pool_.ParallelFor(n, 1, [&](size_t b, size_t e, size_t) {
      for (size_t r = b; r < e; ++r) {
        a.inv1[r] = RmsNormForward(&a.x_in[r * E], w.attn_norm.data(), E, c.rms_eps, &a.xn1[r * E]);
      }
    });
    Project(l, LoraTarget::kQ, w.wq, w.bq, params, a.xn1.data(), n, dropout_key, a, a.q.data());
    Project(l, LoraTarget::kK, w.wk, w.bk, params, a.xn1.data(), n, dropout_key, a, a.k.data());
    Project(l, LoraTarget::kV, w.wv, w.bv, params, a.xn1.data(), n, dropout_key, a, a.v.data());
    RopeRows(n, c.q_dim(), false, a.q.data());
    RopeRows(n, c.kv_dim(), false, a.k.data());
    Attention(n, a, a.att.data());
    static const std::vector<float> kNoBias;
    Project(l, LoraTarget::kO, w.wo, kNoBias, params, a.att.data(), n, dropout_key, a, a.h.data());
    cpu::AddInPlace(a.x_in.data(), n * E, a.h.data());
    pool_.ParallelFor(n, 1, [&](size_t b, size_t e, size_t) {
      for (size_t r = b; r < e; ++r) {
        a.inv2[r] = RmsNormForward(&a.h[r * E], w.ffn_norm.data(), E, c.rms_eps, &a.xn2[r * E]);
      }
    });
    Project(l, LoraTarget::kGate, w.gate, kNoBias, params, a.xn2.data(), n, dropout_key, a, a.gate.data());
    Project(l, LoraTarget::kUp, w.up, kNoBias, params, a.xn2.data(), n, dropout_key, a, a.up.data());
    cpu::SwiGlu(a.gate.data(), a.up.data(), n * c.ffn, a_.data());
    Project(l, LoraTarget::kDown, w.down, kNoBias, params, a_.data(), n, dropout_key, a, x_.data());
    cpu::AddInPlace(a.h.data(), n * E, x_.data());
  }
  float* dx = grads != nullptr ? dx_.data() : nullptr;
  if (dx != nullptr) Zero(dx_, n * E);
  const LossSum loss = OutputLoss(n, x_.data(), grad_scale, dx);
  if (grads == nullptr || loss.num_tokens == 0) return loss;

  // Backward. dx_ holds d loss / d (layer output).
  for (size_t l = c.num_layers; l-- > 0;) {
    const arch::LayerWeights& w = model_.layer(l);
    LayerActs& a = acts_[l];
    // MLP: x' = h + down(silu(gate) * up). The down projection's input is needed again only
    // by a LoRA on it.
    if (layout_.Find(l, LoraTarget::kDown) != nullptr) {
      cpu::SwiGlu(a.gate.data(), a.up.data(), n * c.ffn, a_.data());
    }
    Zero(da_, n * c.ffn);
    ProjectBackward(l, LoraTarget::kDown, w.down, params, grads, a_.data(), n, dropout_key, a,
                    dx_.data(), da_.data());
    pool_.ParallelFor(n * c.ffn, 256, [&](size_t b, size_t e, size_t) {
      cpu::SwiGluBackward(&a.gate[b], &a.up[b], &da_[b], e - b, &dgate_[b], &dup_[b]);
    });
    Zero(dxn_, n * E);
    ProjectBackward(l, LoraTarget::kGate, w.gate, params, grads, a.xn2.data(), n, dropout_key, a,
                    dgate_.data(), dxn_.data());
    ProjectBackward(l, LoraTarget::kUp, w.up, params, grads, a.xn2.data(), n, dropout_key, a,
                    dup_.data(), dxn_.data());
    // dx_ becomes d/dh: the residual plus the norm's backward.
    pool_.ParallelFor(n, 1, [&](size_t b, size_t e, size_t) {
      for (size_t r = b; r < e; ++r) {
        RmsNormBackward(&a.h[r * E], w.ffn_norm.data(), a.inv2[r], &dxn_[r * E], E, &dx_[r * E]);
      }
    });
    // Attention: h = x + o(att).
    Zero(datt_, n * c.q_dim());
    ProjectBackward(l, LoraTarget::kO, w.wo, params, grads, a.att.data(), n, dropout_key, a,
                    dx_.data(), datt_.data());
    AttentionGrad(n, a, datt_.data(), dq_.data(), dk_.data(), dv_.data());
    RopeRows(n, c.q_dim(), true, dq_.data());
    RopeRows(n, c.kv_dim(), true, dk_.data());
    Zero(dxn_, n * E);
    ProjectBackward(l, LoraTarget::kQ, w.wq, params, grads, a.xn1.data(), n, dropout_key, a,
                    dq_.data(), dxn_.data());
    ProjectBackward(l, LoraTarget::kK, w.wk, params, grads, a.xn1.data(), n, dropout_key, a,
                    dk_.data(), dxn_.data());
    ProjectBackward(l, LoraTarget::kV, w.wv, params, grads, a.xn1.data(), n, dropout_key, a,
                    dv_.data(), dxn_.data());
    pool_.ParallelFor(n, 1, [&](size_t b, size_t e, size_t) {
      for (size_t r = b; r < e; ++r) {
        RmsNormBackward(&a.x_in[r * E], w.attn_norm.data(), a.inv1[r], &dxn_[r * E], E, &dx_[r * E]);
      }
    });
  }
  return loss;
}

}  // namespace llmasos::train
