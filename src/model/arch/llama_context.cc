#include "model/arch/llama_context.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "drivers/cpu/ops.h"

namespace llmasos::arch {
StatusOr<std::unique_ptr<Context>> Context::Create(const Model& model, ThreadPool& pool,
                                                   const ContextOptions& options) {
  const ModelConfig& c = model.config();
  if (options.max_tokens == 0) return InvalidArgumentError("context size must be at least 1 token");
  if (options.max_batch_tokens == 0) return InvalidArgumentError("batch size must be at least 1 token");
  RETURN_IF_ERROR(cpu::CheckKvTypesFit(options.cache_type_k, options.cache_type_v, c.head_dim));
  size_t max_tokens = std::min(options.max_tokens, c.context_length);
  size_t max_batch = std::min(options.max_batch_tokens, max_tokens);
  return std::unique_ptr<Context>(new Context(model, pool, max_tokens, max_batch, options));
}

Context::Context(const Model& model, ThreadPool& pool, size_t max_tokens, size_t max_batch_tokens,
                 const ContextOptions& options)
    : model_(model),
      max_tokens_(max_tokens),
      max_batch_tokens_(max_batch_tokens),
      k_type_(options.cache_type_k),
      v_type_(options.cache_type_v),
      batch_(model, pool, max_batch_tokens, max_tokens, options.float_activations) {
  kv_cache_.reset(new std::byte[kv_cache_bytes()]);
}

size_t Context::kv_cache_bytes() const {
  const ModelConfig& c = model_.config();
  return c.num_layers * max_tokens_ *
         (cpu::KvRowBytes(k_type_, c.kv_dim()) + cpu::KvRowBytes(v_type_, c.kv_dim()));
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
    RETURN_IF_ERROR(ForwardChunk(tokens.subspan(begin, n), all_logits, out));
  }
  return OkStatus();
}

// The contiguous cache is a paged cache of one block holding every position.
Status Context::ForwardChunk(std::span<const TokenId> tokens, bool all_logits, float* logits_out) {
  const ModelConfig& c = model_.config();
  KvLayout kv;
  kv.k_type = k_type_;
  kv.v_type = v_type_;
  kv.block_stride = 0;
  kv.block_tokens = max_tokens_;
  const size_t k_plane = max_tokens_ * cpu::KvRowBytes(k_type_, c.kv_dim());
  kv.layer_stride = k_plane + max_tokens_ * cpu::KvRowBytes(v_type_, c.kv_dim());
  kv.k_base = kv_cache_.get();
  kv.v_base = kv_cache_.get() + k_plane;
  const BlockId only_block = 0;
  BatchSegment seg;
  seg.tokens = tokens;
  seg.pos0 = num_tokens_;
  seg.block_table = std::span<const BlockId>(&only_block, 1);
  seg.logits = logits_out == nullptr ? LogitsMode::kNone : all_logits ? LogitsMode::kAll : LogitsMode::kLast;
  seg.logits_out = logits_out;
  RETURN_IF_ERROR(batch_.Run(std::span<const BatchSegment>(&seg, 1), kv, /*num_blocks=*/1));
  num_tokens_ += tokens.size();
  return OkStatus();
}

}  // namespace llmasos::arch
