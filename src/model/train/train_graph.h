// The training pass of a llama-family model with LoRA adapters: a forward pass over a packed
// batch of token sequences that keeps the activations the backward needs, the cross-entropy
// loss on the tokens marked as targets, and the backward pass down to the LoRA matrices. The
// base weights stay frozen in their stored (quantised) types: forward products dequantize
// them against float32 activations (cpu::MatMulFloatActivations), backward products read them
// a tile of rows at a time (MatMulTransposedAdd). Activations and gradients are float32.
//
// Per layer, as in the inference forward (model/arch/batch_forward.cc):
//   xn1 = RmsNorm(x); q,k,v = xn1 W^T (+bias) + LoRA; RoPE(q, k); att = causal GQA attention;
//   h = x + att Wo^T + LoRA;  xn2 = RmsNorm(h); a = silu(gate) * up; x' = h + a Wd^T + LoRA;
// then RmsNorm and the output projection, for the target rows only.
//
// Each sequence of a batch starts at position 0 and attends only to itself, so packing several
// sequences into one batch changes nothing but speed: every matrix product runs once over all
// the batch's tokens.
//
// Thread safety: a TrainGraph owns its activation buffers; one thread at a time. It runs its
// parallel loops on the pool it was given. Results do not depend on the number of threads.
#ifndef LLMASOS_MODEL_TRAIN_TRAIN_GRAPH_H_
#define LLMASOS_MODEL_TRAIN_TRAIN_GRAPH_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "model/arch/llama_model.h"
#include "model/train/backward_ops.h"
#include "model/train/lora.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace llmasos::train {

// One training sequence: is_target[i] says whether token i is predicted (contributes to the
// loss); is_target[0] is ignored since nothing precedes it.
struct TrainSequence {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> is_target;  // [tokens.size()]
  size_t source_line = 0;          // the data line it came from (1-based), for messages
};

struct LossSum {
  double sum = 0.0;        // sum over target tokens of -log p(target)
  size_t num_tokens = 0;   // target tokens counted
};

class TrainGraph {
 public:
  // max_tokens: the most tokens one batch may hold (sizes every activation buffer, which is
  // allocated here). REQUIRES: model, layout and pool outlive the graph.
  TrainGraph(const arch::Model& model, const LoraLayout& layout, ThreadPool& pool,
             size_t max_tokens);

  // Forward over `batch`, the loss on its target tokens, and, when grads is not null, the
  // backward pass adding grad_scale * d(loss sum)/d(params) into grads [layout.num_params()].
  // dropout_key makes this call's dropout masks (same key, same masks). InvalidArgument for
  // an empty batch, more than max_tokens tokens, a sequence longer than the model's context,
  // or a token outside the vocabulary.
  StatusOr<LossSum> Run(std::span<const TrainSequence* const> batch, const float* params,
                        float* grads, float grad_scale, uint64_t dropout_key);

  size_t max_tokens() const { return max_tokens_; }
  // Bytes of the activation and scratch buffers (what a batch of max_tokens costs).
  size_t buffer_bytes() const;
  // The bytes buffer_bytes() would be for a given batch size, without building a graph.
  static size_t EstimateBufferBytes(const arch::ModelConfig& c, const LoraConfig& lora,
                                    size_t max_tokens, size_t num_threads);

 private:
  struct LayerActs {
    std::vector<float> x_in;   // [n, embd] residual entering the layer
    std::vector<float> inv1;   // [n] RmsNorm factors
    std::vector<float> xn1;    // [n, embd]
    std::vector<float> q;      // [n, q_dim] after RoPE
    std::vector<float> k;      // [n, kv_dim] after RoPE
    std::vector<float> v;      // [n, kv_dim]
    std::vector<float> att;    // [n, q_dim]
    std::vector<float> h;      // [n, embd] residual after attention
    std::vector<float> inv2;   // [n]
    std::vector<float> xn2;    // [n, embd]
    std::vector<float> gate;   // [n, ffn] before the activation
    std::vector<float> up;     // [n, ffn]
    // Per adapted target: U = dropout(x) A^T [n, rank], and dropout(x) [n, in] when dropout > 0.
    std::vector<float> lora_u[kNumLoraTargets];
    std::vector<float> lora_x[kNumLoraTargets];
  };

  // y [n, out] += scale * B (A dropout(x)); saves U (and dropout(x)) in acts.
  void LoraForward(const LoraSlot& slot, const float* params, const float* x, size_t n,
                   uint64_t key, LayerActs& acts, float* y);
  // Given dy [n, out]: adds to grads (A, B) and dx [n, in].
  void LoraBackward(const LoraSlot& slot, const float* params, float* grads, const float* x,
                    size_t n, uint64_t key, const LayerActs& acts, const float* dy, float* dx);
  // Base projection plus bias plus LoRA (if adapted).
  void Project(size_t layer, LoraTarget t, const cpu::MatView& w, const std::vector<float>& bias,
               const float* params, const float* x, size_t n, uint64_t key, LayerActs& acts,
               float* y);
  // dx += dy W + LoRA backward.
  void ProjectBackward(size_t layer, LoraTarget t, const cpu::MatView& w, const float* params,
                       float* grads, const float* x, size_t n, uint64_t key,
                       const LayerActs& acts, const float* dy, float* dx);
  // Sequence s of the current batch as an attention problem.
  AttentionShape SequenceShape(size_t s) const;
  void Attention(size_t n, const LayerActs& acts, float* out);
  void AttentionGrad(size_t n, const LayerActs& acts, const float* dout, float* dq, float* dk,
                     float* dv);
  void RopeRows(size_t n, size_t width, bool inverse, float* x);
  // The loss rows: RmsNorm, output projection, cross-entropy; adds d/dx into dx if wanted.
  LossSum OutputLoss(size_t n, const float* x, float grad_scale, float* dx);

  const arch::Model& model_;
  const LoraLayout& layout_;
  ThreadPool& pool_;
  const size_t max_tokens_;

  // The current batch: per token its position in its sequence, its sequence, and its target
  // (-1: no loss on this row). Sequence s covers rows [seq_begin_[s], seq_begin_[s + 1]).
  std::vector<size_t> pos_;
  std::vector<int32_t> target_;
  std::vector<size_t> seq_begin_;

  std::vector<LayerActs> acts_;
  std::vector<float> x_;           // [n, embd] residual stream / its gradient in backward
  std::vector<float> dx_;          // [n, embd]
  std::vector<float> dxn_;         // [n, embd]
  std::vector<float> dq_, dk_, dv_, datt_;  // like q, k, v, att
  std::vector<float> a_, da_, dgate_, dup_;  // [n, ffn]
  std::vector<float> lora_tmp_;    // [n, max(out, in)]
  std::vector<float> lora_du_;     // [n, rank]
  std::vector<float> lora_bt_;     // [rank, max(out, in)]: A^T, scale * B^T, dB^T
  std::vector<float> lora_ft_;     // [rank, n]: U^T, dU^T
  std::vector<float> rope_cos_, rope_sin_;  // [max_tokens, rope_dims / 2]
  std::vector<float> attn_scratch_;          // [num_threads, AttentionScratchFloats(head_dim, max_tokens)]
  std::vector<float> loss_x_, loss_logits_, loss_dx_;  // output chunk buffers
  std::vector<float> loss_inv_;
};

}  // namespace llmasos::train

#endif  // LLMASOS_MODEL_TRAIN_TRAIN_GRAPH_H_
