// A Context runs a Model over one token sequence: it owns the KV cache of that sequence and the
// scratch buffers of the forward pass. The kernel (issue "The kernel") replaces the contiguous
// cache here with paged KV memory shared by many processes; this single-sequence path is what
// the shell's run/chat/perplexity/bench and the correctness oracles use.
//
// Forward pass, per layer, as in the paper:
//   RmsNorm -> Q,K,V projections (+bias) -> RoPE -> causal GQA attention -> output projection
//   -> residual -> RmsNorm -> SwiGLU MLP -> residual;  then RmsNorm -> output projection.
//
// Thread safety: a Context is used by one thread at a time. The Model may be shared.
#ifndef LLMASOS_MODEL_ARCH_LLAMA_CONTEXT_H_
#define LLMASOS_MODEL_ARCH_LLAMA_CONTEXT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "model/arch/batch_forward.h"
#include "model/arch/llama_model.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace llmasos::arch {


struct ContextOptions {
  size_t max_tokens = 4096;   // KV capacity; clamped to the model's trained context
  size_t max_batch_tokens = 512;  // tokens per forward pass; longer inputs run in chunks
  // Multiply in float32 instead of quantizing activations to 8 bits (cpu::MatMul): slower,
  // and equal to an exact float reference up to summation order. For the oracle tests.
  bool float_activations = false;
  // Element types of the cached keys and values (drivers/cpu/kv_type.h).
  cpu::KvType cache_type_k = cpu::KvType::kF16;
  cpu::KvType cache_type_v = cpu::KvType::kF16;
};

class Context {
 public:
  // REQUIRES: model and pool outlive the Context.
  static StatusOr<std::unique_ptr<Context>> Create(const Model& model, ThreadPool& pool,
                                                   const ContextOptions& options);

  // Appends `tokens` at positions num_tokens() ... and runs them through the model.
  // logits_out, if not null, receives [tokens.size(), vocab] logits when all_logits, else
  // [vocab] logits of the last token. OutOfRange if the cache would overflow or an id is
  // outside the vocabulary; nothing is appended then.
  // Create: InvalidArgument when a cache type does not fit the model (Q8_0 needs head_dim
  // % 32 == 0).
  Status Forward(std::span<const TokenId> tokens, bool all_logits, float* logits_out);

  // Forgets positions >= num_tokens (to rewind a chat or reuse a common prefix).
  void Truncate(size_t num_tokens);

  size_t num_tokens() const { return num_tokens_; }
  size_t max_tokens() const { return max_tokens_; }
  const Model& model() const { return model_; }
  // Bytes held by the KV cache at full capacity, in its types.
  size_t kv_cache_bytes() const;

 private:
  Context(const Model& model, ThreadPool& pool, size_t max_tokens, size_t max_batch_tokens,
          const ContextOptions& options);

  // Runs one chunk of at most max_batch_tokens_ tokens. logits_out as in Forward, for this
  // chunk (all rows, or the last row only).
  Status ForwardChunk(std::span<const TokenId> tokens, bool all_logits, float* logits_out);

  const Model& model_;
  const size_t max_tokens_;
  const size_t max_batch_tokens_;
  size_t num_tokens_ = 0;

  // KV cache: blocks of 32 positions in order, each [num_layers][K plane, V plane] of 32 rows
  // of kv_dim values in its type, as a KvMemory block is laid out. Allocated without touching
  // the pages, so memory becomes resident only as the sequence grows.
  const cpu::KvType k_type_;
  const cpu::KvType v_type_;
  std::vector<BlockId> block_table_;  // 0, 1, 2, ...: enough blocks for max_tokens
  std::unique_ptr<std::byte[]> kv_cache_;
  // The forward pass itself, shared with the batched (kernel) path.
  BatchForward batch_;
};

}  // namespace llmasos::arch

#endif  // LLMASOS_MODEL_ARCH_LLAMA_CONTEXT_H_
