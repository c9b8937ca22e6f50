// The batched forward pass: one pass of the model over many sequences at once, each at its
// own position, mixing prefill chunks and single decode tokens. The weight matrices are read
// once for all the batch's tokens (what makes serving many processes cheaper than serving
// them one by one); attention reads each sequence's K/V through its block table, so the
// cache may be paged (kernel/kv_memory) or one contiguous region (Context).
//
// Thread safety: a BatchForward holds scratch buffers; one thread uses it at a time (the
// engine thread of a model instance). Run uses the thread pool it was given.
#ifndef LLMASOS_MODEL_ARCH_BATCH_FORWARD_H_
#define LLMASOS_MODEL_ARCH_BATCH_FORWARD_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "drivers/cpu/kv_type.h"
#include "drivers/cpu/ops.h"
#include "model/arch/llama_model.h"
#include "model/arch/lora_weights.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace llmasos::arch {

using TokenId = int32_t;
using BlockId = uint32_t;

// Where the K and V rows of a KV cache the forward pass does not own live: the `block_tokens`
// rows of layer `layer` of block `block` start at byte
//   k_base + block * block_stride + layer * layer_stride       (V: v_base + ...)
// and are laid out as k_type (v_type) says (drivers/cpu/kv_type.h): V row r (position p with
// p % block_tokens == r) is KvRowBytes(v_type, kv_dim) bytes further per row; F32 and F16 keys
// are stored transposed within the block, element d of position p's key at [d * block_tokens
// + r], so attention reads a block's keys as vectors over positions (cpu::AttentionScores);
// Q8_0 keys are rows like the values. The pass rounds each new key (after RoPE) and value to
// its type once, when it stores it.
// kernel::KvMemory's pool and Context's contiguous cache (blocks 0, 1, 2, ... in order) are both
// this shape.
//
// With layer groups (KvLayerGroups below) a block is a page of one group's layers: layer l
// lives at place layer_index[l] of a page of group layer_group[l], reached through that
// group's block table (BatchSegment::group_tables), so `layer` above reads as its place.
struct KvLayout {
  std::byte* k_base = nullptr;
  std::byte* v_base = nullptr;
  size_t block_stride = 0;  // bytes from one block to the next
  size_t layer_stride = 0;  // bytes from one layer of a block to the next
  size_t block_tokens = 0;  // rows per block
  cpu::KvType k_type = cpu::KvType::kF32;
  cpu::KvType v_type = cpu::KvType::kF32;
  // Both empty: one group, layer l at place l. Otherwise [num_layers] each.
  std::span<const uint32_t> layer_group;
  std::span<const uint32_t> layer_index;
  size_t num_groups = 1;

  size_t GroupOf(size_t layer) const { return layer_group.empty() ? 0 : layer_group[layer]; }
  size_t PlaceOf(size_t layer) const { return layer_index.empty() ? layer : layer_index[layer]; }
  std::byte* K(BlockId block, size_t layer) const {
    return k_base + block * block_stride + PlaceOf(layer) * layer_stride;
  }
  std::byte* V(BlockId block, size_t layer) const {
    return v_base + block * block_stride + PlaceOf(layer) * layer_stride;
  }
};

// How a paged cache splits a model's layers into groups of one page size, so that sliding-
// window layers can give back what falls out of their window while global layers keep every
// position (docs/kv-memory.md): every group has layers_per_group layers of one kind, and a
// page holds block_tokens positions of one group's layers.
struct KvLayerGroups {
  size_t layers_per_group = 0;
  std::vector<uint32_t> layer_group;  // [num_layers]: the group of layer l
  std::vector<uint32_t> layer_index;  // [num_layers]: layer l's place in its group's pages
  std::vector<size_t> group_window;   // [num_groups]: the window its layers attend within; 0: global
  size_t num_groups() const { return group_window.size(); }
};
// One group of every layer, with the model's all-layers window (ModelConfig::AllLayersWindow):
// the layout of a cache without groups.
KvLayerGroups SingleLayerGroup(const ModelConfig& c);
// For a model with global layers beside sliding ones: groups of gcd(global, sliding) layers of
// one kind, in layer order, the global groups first (Gemma 3 270M: 3 global and 15 sliding
// layers make one global group and five sliding groups of 3). Any other model: SingleLayerGroup.
KvLayerGroups LayerGroupsOf(const ModelConfig& c);
// `kv` with the groups' layer mapping. REQUIRES: groups outlives the result.
KvLayout WithLayerGroups(KvLayout kv, const KvLayerGroups& groups);

enum class LogitsMode { kNone, kLast, kAll };

// One sequence's part of a batch: `tokens` at positions pos0 .. pos0 + tokens.size() - 1.
// K/V of positions < pos0 are already in the cache; block_table must cover every position up
// to pos0 + tokens.size() - 1. The pass writes the new positions' K/V into their slots. When
// every layer slides (ModelConfig::AllLayersWindow() = w > 0) the entries of blocks wholly
// before pos0 + 1 - w are never read and may name no block (a paged cache released them).
// With layer groups (KvLayout::num_groups > 1) group_tables holds one such table per group
// instead, and block_table is unused; a sliding group's entries before its window may name no
// block, a global group's may not.
struct BatchSegment {
  std::span<const TokenId> tokens;
  size_t pos0 = 0;
  std::span<const BlockId> block_table;
  LogitsMode logits = LogitsMode::kLast;
  float* logits_out = nullptr;  // [tokens.size(), vocab] for kAll, [vocab] for kLast
  // If set: [tokens.size(), embd] receives every token's final hidden state, after the final
  // RMSNorm (what embeddings pool).
  float* hidden_out = nullptr;
  // If set: the segment's rows run with this unmerged LoRA adapter (see lora_weights.h).
  // Segments with the same pointer form one group whose A and B are read once per matrix.
  // Must outlive Run.
  const LoraWeights* lora = nullptr;
  std::span<const std::span<const BlockId>> group_tables = {};  // [num_groups] with layer groups
};

class BatchForward {
 public:
  // max_batch_tokens: the most tokens one Run may hold, summed over segments.
  // max_context: the most positions any sequence may reach (sizes the attention scratch).
  // REQUIRES: model and pool outlive this object; both limits >= 1.
  BatchForward(const Model& model, ThreadPool& pool, size_t max_batch_tokens, size_t max_context,
               bool float_activations);

  // Runs the segments through the model. InvalidArgument (nothing written) for an empty
  // segment, too many tokens, a position beyond max_context or the block table, a block id
  // the caller says it does not have (>= num_blocks) where the pass reads or writes, a token id outside the vocabulary, or
  // an adapter read for a model with another number of layers.
  // Cancelled (kInterrupted) when the interrupt flag was found set at a layer boundary: the
  // segments' K/V are then written for some layers only (positions the caller had not computed
  // yet, so they are rewritten when the segments run again) and no logits are.
  // REQUIRES: kv's types fit the model (cpu::CheckKvTypesFit with its head_dim).
  Status Run(std::span<const BatchSegment> segments, const KvLayout& kv, size_t num_blocks);
  // A flag another thread may set to stop the Run in progress at its next layer (a preemptive
  // scheduler's higher-priority arrival); read with relaxed order. nullptr: never interrupted.
  // REQUIRES: the flag outlives this object.
  void set_interrupt(const std::atomic<bool>* flag) { interrupt_ = flag; }
  static constexpr std::string_view kInterrupted = "the step was interrupted";

  // Attention cuts each token's visible positions at multiples of this many positions and
  // merges the parts' softmax sums (flash-decoding), so that a long context's attention is
  // shared by every thread even for one token of a model with one KV head.
  static constexpr size_t kAttentionPart = 256;

  size_t max_batch_tokens() const { return max_batch_tokens_; }
  size_t max_context() const { return max_context_; }

 private:
  void MatMul(const cpu::MatView& w, const float* x, size_t num_tokens, float* out);
  // out[r] += scale * B (A x[r]) for the rows r of each adapter group that adapts (layer,
  // target). x: [n, in], out: [n, out_dim]. Nothing when the batch carries no adapter.
  void AddLora(size_t layer_idx, LoraTarget target, const float* x, size_t in, float* out,
               size_t out_dim);
  void Attention(size_t layer_idx, std::span<const BatchSegment> segments, const KvLayout& kv);
  // A batch runs its attention parts as tasks while their records take at most this many
  // floats (see Attention).
  static constexpr size_t kMaxPartFloats = size_t{8} << 20;
  // A part's record: [group, head_dim] value sums weighted by exp(score - max), then the
  // group's score maxima, then their exp-sums.
  size_t PartRecordFloats() const {
    const ModelConfig& c = model_.config();
    return c.num_heads / c.num_kv_heads * (c.head_dim + 2);
  }
  // Token i's query heads on KV head kvh over positions [p0, p1) of its visible ones: writes
  // the part's record, using thread thread_idx's rows of scores_.
  void AttendPart(size_t layer_idx, const KvLayout& kv, std::span<const BatchSegment> segments,
                  size_t i, size_t kvh, size_t p0, size_t p1, size_t thread_idx,
                  float* record);
  // Stores token i's K and V rows (k_, v_) of layer_idx into its slot, rounded to kv's types.
  void StoreKv(size_t i, size_t layer_idx, std::span<const BatchSegment> segments,
               const KvLayout& kv);
  // Per-head RMSNorm of n tokens' rows of `heads` heads (Q/K norm).
  void HeadNorm(const std::vector<float>& weight, size_t n, size_t heads, float* rows) const;
  // The block table `layer` reads and writes for segment `seg`.
  static std::span<const BlockId> TableOf(const BatchSegment& seg, const KvLayout& kv, size_t layer) {
    return kv.num_groups == 1 ? seg.block_table : seg.group_tables[kv.GroupOf(layer)];
  }
  // Checks kv's layer groups against the model and fills group_window_. InvalidArgument for a
  // mapping of another number of layers, a place beyond the pages or a group mixing windows.
  Status CheckLayerGroups(const KvLayout& kv);

  // A rotary table: the global layers' and, for models with sliding-window layers that rotate
  // differently (gemma3), the sliding layers'.
  struct Rope {
    std::vector<float> inv_freq;  // [rope_dims / 2]: theta^(-2i / rope_dims) / factors
    std::vector<float> cos, sin;  // [n, rope_dims / 2] for the current batch
  };

  const Model& model_;
  ThreadPool& pool_;
  const size_t max_batch_tokens_;
  const size_t max_context_;
  const bool float_activations_;
  const std::atomic<bool>* interrupt_ = nullptr;
  size_t num_blocks_ = 0;  // blocks of the current Run's cache (for the debug checks)
  std::vector<size_t> group_window_;  // [kv.num_groups] of the current Run: 0 for global

  // Per token of the current batch: its segment and its position.
  std::vector<uint32_t> token_segment_;
  std::vector<size_t> token_pos_;
  // Scratch for n <= max_batch_tokens tokens.
  std::vector<float> x_;         // [n, embd] residual stream
  std::vector<float> xn_;        // [n, embd] normalised
  std::vector<float> q_;         // [n, q_dim]
  std::vector<float> k_;         // [n, kv_dim]
  std::vector<float> v_;         // [n, kv_dim]
  std::vector<float> att_;       // [n, q_dim] attention output
  std::vector<float> proj_;      // [n, embd]
  std::vector<float> gate_;      // [n, ffn]
  std::vector<float> up_;        // [n, ffn]
  std::vector<Rope> ropes_;      // [0] global layers, [1] sliding layers when they differ
  std::vector<float> scores_;    // [num_threads, max_context] attention scores per thread
  std::vector<float> part_scratch_;  // [num_threads, 2 records]: a pair's fold and its next part
  std::vector<float> parts_;         // [parts, record] when a batch's parts run as tasks
  std::vector<size_t> part_offset_;  // [pairs + 1]: each (token, KV head) pair's first part
  std::vector<float> logits_;    // [rows wanted, vocab] before they are copied out
  // The current batch's adapters: each distinct LoraWeights and the token rows that use it.
  struct LoraGroup {
    const LoraWeights* lora = nullptr;
    std::vector<uint32_t> rows;
  };
  std::vector<LoraGroup> lora_groups_;
  std::vector<float> lora_ax_;   // [rows of a group, rank]: A x
};

}  // namespace llmasos::arch

#endif  // LLMASOS_MODEL_ARCH_BATCH_FORWARD_H_
