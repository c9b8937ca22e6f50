#include "model/arch/llama_context.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "drivers/cpu/ops.h"

namespace llmasos::arch {
namespace {

// Positions per block of the contiguous cache. One block of every position made a long
// context's transposed keys rows of max_tokens elements: attention then read each key
// element from its own page, 4,096 x 2 bytes apart at a 4,096-token context.
constexpr size_t kBlockTokens = 32;

}  // namespace

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
  const size_t num_blocks = (max_tokens_ + kBlockTokens - 1) / kBlockTokens;
  for (size_t b = 0; b < num_blocks; ++b) block_table_.push_back(static_cast<BlockId>(b));
  kv_cache_.reset(new std::byte[kv_cache_bytes()]);
}

size_t Context::kv_cache_bytes() const {
  const ModelConfig& c = model_.config();
  return block_table_.size() * kBlockTokens * c.num_layers *
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

// The contiguous cache is a paged cache whose block table is 0, 1, 2, ...
Status Context::ForwardChunk(std::span<const TokenId> tokens, bool all_logits, float* logits_out) {
  const ModelConfig& c = model_.config();
  KvLayout kv;
  kv.k_type = k_type_;
  kv.v_type = v_type_;
  kv.block_tokens = kBlockTokens;
  const size_t k_plane = kBlockTokens * cpu::KvRowBytes(k_type_, c.kv_dim());
  kv.layer_stride = k_plane + kBlockTokens * cpu::KvRowBytes(v_type_, c.kv_dim());
  kv.block_stride = c.num_layers * kv.layer_stride;
  kv.k_base = kv_cache_.get();
  kv.v_base = kv_cache_.get() + k_plane;
  BatchSegment seg;
  seg.tokens = tokens;
  seg.pos0 = num_tokens_;
  seg.block_table = block_table_;
  seg.logits = logits_out == nullptr ? LogitsMode::kNone : all_logits ? LogitsMode::kAll : LogitsMode::kLast;
  seg.logits_out = logits_out;
  RETURN_IF_ERROR(batch_.Run(std::span<const BatchSegment>(&seg, 1), kv, block_table_.size()));
  num_tokens_ += tokens.size();
  return OkStatus();
}

}  // namespace llmasos::arch
