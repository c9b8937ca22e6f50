// The llama family of decoder-only transformers (llama, mistral, qwen2, qwen3, gemma2, gemma3,
// phi3, smollm): the configuration and the weights as read from a GGUF file. The variants differ by
// the features in ModelConfig (Q/K norms, post-norms, GeGLU, soft-capping, sliding windows,
// rotary frequency factors); each architecture's table entry says which it has, and the
// loader refuses a file whose tensors or metadata disagree with its architecture.
//
// Weights stay in the memory-mapped file in their stored type; only the small 1-D tensors
// (norm weights, biases) are converted to float at load. Where the CPU driver has faster
// kernels for a repacked layout (cpu::PackMatrix), matrices are also repacked at load and the
// file's pages of them are dropped from memory, so resident memory stays about the file's
// size; LLMASOS_REPACK=0 turns this off. A Model is immutable after Load and shared by every
// Context that runs it.
#ifndef LLMASOS_MODEL_ARCH_LLAMA_MODEL_H_
#define LLMASOS_MODEL_ARCH_LLAMA_MODEL_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "drivers/cpu/ops.h"
#include "model/gguf/gguf.h"
#include "util/mapped_file.h"
#include "util/status.h"
#include "util/thread_pool.h"

namespace llmasos::arch {

enum class RopeMode {
  kNormal,  // rotate adjacent pairs (x[2i], x[2i+1]): llama (the converter permutes Q/K)
  kNeox,    // rotate pairs (x[i], x[i + rope_dims/2]): qwen2 and other NeoX-style models
};

// How an embedding pools a prompt's final hidden states (GGUF "<arch>.pooling_type", with
// llama.cpp's numbering: 1 mean, 2 cls, 3 last; absent or 0 (none) pools by mean).
enum class Pooling { kMean, kCls, kLast };
std::string_view PoolingName(Pooling pooling);
enum class FfnActivation {
  kSilu,      // down(silu(gate x) * up x): llama, qwen
  kGeluTanh,  // down(gelu_tanh(gate x) * up x) (GeGLU): gemma
};

struct ModelConfig {
  std::string architecture;  // general.architecture
  size_t num_layers = 0;
  size_t embd = 0;         // hidden size
  size_t ffn = 0;          // feed-forward hidden size
  size_t num_heads = 0;
  size_t num_kv_heads = 0;
  size_t head_dim = 0;     // per-head width of Q, K and V
  size_t rope_dims = 0;    // leading dims of each head that RoPE rotates
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;
  size_t context_length = 0;  // trained context
  size_t vocab_size = 0;
  RopeMode rope_mode = RopeMode::kNormal;
  Pooling pooling = Pooling::kMean;
  // Linear RoPE scaling (rope.scaling.type "linear"): positions are divided by this factor.
  // Gemma 3 applies it to its global layers only.
  float rope_linear_factor = 1.0f;
  bool rope_freq_factors = false;  // the file has rope_freqs.weight (Llama 3.x rotary scaling)
  // LongRoPE (phi3): the file has rope_factors_short.weight and rope_factors_long.weight, the
  // per-pair factors for a context of at most rope_orig_context tokens and for a longer one.
  bool longrope = false;
  size_t rope_orig_context = 0;  // rope.scaling.original_context_length (context_length if absent)
  // Multiplies the rotated dims of Q and K (cos and sin): rope.scaling.attn_factor, which
  // LongRoPE files carry as sqrt(1 + ln(context / orig_context) / ln(orig_context)).
  float rope_attn_factor = 1.0f;

  // Architecture features beyond plain llama.
  bool qk_norm = false;          // per-head RMSNorm of Q and K before RoPE (qwen3, gemma3)
  bool post_norms = false;       // RMSNorm of the attention and FFN outputs (gemma2, gemma3)
  bool embd_scale = false;       // token embeddings multiplied by sqrt(embd) (gemma)
  FfnActivation ffn_activation = FfnActivation::kSilu;
  float query_scale = 0.0f;      // multiplies q.k; 1/sqrt(head_dim) unless the model says
  float attn_softcap = 0.0f;     // > 0: scores become cap * tanh(score / cap) (gemma2)
  float final_softcap = 0.0f;    // > 0: the same on the output logits (gemma2)
  // Sliding-window attention: 0 = none. Otherwise layer i attends to the `sliding_window`
  // latest positions (its own included) when i % swa_pattern < swa_pattern - 1, or on every
  // layer when swa_pattern is 0 (phi3); the other layers are global. With swa_own_rope
  // (gemma3) sliding layers rotate with base rope_theta_swa, linear factor
  // rope_linear_factor_swa and no frequency factors; otherwise as the global layers.
  size_t sliding_window = 0;
  size_t swa_pattern = 0;
  bool swa_own_rope = false;
  float rope_theta_swa = 10000.0f;
  float rope_linear_factor_swa = 1.0f;

  bool IsSlidingLayer(size_t layer) const {
    return sliding_window > 0 && (swa_pattern == 0 || layer % swa_pattern < swa_pattern - 1);
  }
  // The window every layer attends within, when all of them slide (phi3 with a window, or a
  // model too shallow for its pattern's global layer): a token at position p reads no K/V
  // before p + 1 - AllLayersWindow(), so a paged cache may release it. 0 when a layer is global.
  size_t AllLayersWindow() const {
    for (size_t layer = 0; layer < num_layers; ++layer) {
      if (!IsSlidingLayer(layer)) return 0;
    }
    return num_layers > 0 ? sliding_window : 0;
  }
  size_t q_dim() const { return num_heads * head_dim; }
  size_t kv_dim() const { return num_kv_heads * head_dim; }
};

// Reads and validates the hyperparameters. Unknown architectures give kUnimplemented.
StatusOr<ModelConfig> ConfigFromGguf(const gguf::GgufFile& file);

// A phi3 file fuses Q, K and V into attn_qkv [q_dim + 2 kv_dim, embd] and gate and up into
// ffn_up [2 ffn, embd]; wq/wk/wv and gate/up are then views of consecutive rows of the fused
// tensor (no copy), so the forward pass and the repacking see the same five matrices either way.
struct LayerWeights {
  std::vector<float> attn_norm;  // [embd]
  cpu::MatView wq, wk, wv;       // [q_dim, embd], [kv_dim, embd], [kv_dim, embd]
  std::vector<float> bq, bk, bv; // [q_dim], [kv_dim], [kv_dim]; empty when the model has none
  cpu::MatView wo;               // [embd, q_dim]
  std::vector<float> q_norm, k_norm;  // [head_dim] each, when config.qk_norm
  std::vector<float> post_attn_norm;  // [embd], when config.post_norms
  std::vector<float> ffn_norm;   // [embd]
  cpu::MatView gate, up;         // [ffn, embd]
  cpu::MatView down;             // [embd, ffn]
  std::vector<float> post_ffn_norm;   // [embd], when config.post_norms

  // The seven matrices, in LoraTarget's order: wq, wk, wv, wo, gate, up, down.
  std::array<cpu::MatView*, 7> Matrices() { return {&wq, &wk, &wv, &wo, &gate, &up, &down}; }
  std::array<const cpu::MatView*, 7> Matrices() const {
    return {&wq, &wk, &wv, &wo, &gate, &up, &down};
  }
};

struct LoadOptions {
  // false keeps every matrix in the file's layout (training reads it there, so a repacked
  // copy would only double the memory); LLMASOS_REPACK=0 makes it false for all.
  bool repack = true;
  // The threads the repack is spread over (the engine's pool, not used concurrently during
  // the load); null: a pool of ThreadPool::DefaultNumThreads() for the load's duration.
  ThreadPool* pool = nullptr;
  // The derived blob that keeps this model's packed matrices (packed_blob.h; the registry
  // names it): mapped instead of repacking when it is valid for this file, layout and CPU
  // target; written after repacking when it is missing or invalid (an invalid one is logged
  // and replaced; a failed write is logged), on a background thread of low priority, so the
  // first token does not wait for the disk (Model::WaitForPackedBlob). Empty: repack at every
  // load.
  std::string packed_blob_path;
  std::string packed_blob_source;  // the file's digest, "sha256:<hex>"; the blob's key
  // For tests on CPUs without the packed kernels: pack every matrix that has a layout (MatMul
  // then reads the file's layout, DequantizeRow the packed one), and key the blob by this
  // target name instead of cpu::ChosenTarget() when not empty.
  bool pack_without_kernel = false;
  std::string target_for_test;
};

// Where a model's packed matrices came from.
enum class PackedFrom { kNone, kRepacked, kBlob };

class Model {
 public:
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  // Takes ownership of the parsed file; checks every tensor's presence, type and shape.
  static StatusOr<std::unique_ptr<Model>> FromGguf(std::unique_ptr<gguf::GgufFile> file,
                                                   const LoadOptions& options);
  static StatusOr<std::unique_ptr<Model>> Load(const std::string& path, const LoadOptions& options);
  static StatusOr<std::unique_ptr<Model>> FromGguf(std::unique_ptr<gguf::GgufFile> file, bool repack = true) {
    LoadOptions options;
    options.repack = repack;
    return FromGguf(std::move(file), options);
  }
  static StatusOr<std::unique_ptr<Model>> Load(const std::string& path, bool repack = true) {
    LoadOptions options;
    options.repack = repack;
    return Load(path, options);
  }

  const ModelConfig& config() const { return config_; }
  const gguf::GgufFile& file() const { return *file_; }
  const cpu::MatView& token_embd() const { return token_embd_; }  // [vocab, embd]
  const cpu::MatView& output() const { return output_; }          // [vocab, embd]; may be token_embd
  const std::vector<float>& output_norm() const { return output_norm_; }
  const LayerWeights& layer(size_t idx) const { return layers_[idx]; }
  // The rotary frequency factors, [rope_dims / 2], for a context of `context_tokens`
  // positions: pair i turns at inv_freq_i / f_i. Llama 3.x's rope_freqs whatever the context;
  // LongRoPE's short factors up to rope_orig_context tokens and its long ones beyond (chosen
  // once for the context, as llama.cpp does, so cached keys never change rotation). Empty
  // when the file has none.
  const std::vector<float>& RopeFreqFactors(size_t context_tokens) const;
  PackedFrom packed_from() const { return packed_from_; }
  // Returns once the derived blob this load is writing (LoadOptions::packed_blob_path) is in
  // place or has failed (logged); at once when none is being written. The destructor waits
  // too, so a process that exits normally leaves a complete blob. Not from two threads at once.
  void WaitForPackedBlob();
  // Bytes of weights read to produce one token (every matrix once): the bandwidth cost.
  size_t weight_bytes() const { return weight_bytes_; }
  // Drops from the resident set the file's pages that nothing reads any more
  // (MappedFile::ReleasePages): all but the matrices multiplied in the file's own layout (those
  // without a packed copy) and an unpacked token table. The loader calls it once the tokenizer
  // has copied the metadata. Each small tensor read at load (norms, biases; copied then) maps
  // its part of the page cache, a whole large folio where the file was just written (an
  // import): with a mapped derived blob, Qwen2.5-0.5B kept 82 MB of its file resident, none of
  // it read again. A later read of a released page (the metadata for /api/show, the exact
  // path's matrices) faults it back in from the file.
  void ReleaseUnusedFilePages();
  // The matrices a token multiplies: the output and every layer's seven, in layer order.
  std::vector<const cpu::MatView*> Matrices() const;

  // For merging an adapter into the weights at load (model/train/adapter.h): layer idx's
  // weights, whose matrix views may be pointed at float32 storage handed to KeepMatrix.
  // REQUIRES: before the model is shared with any Context.
  LayerWeights& mutable_layer(size_t idx) { return layers_[idx]; }
  // Keeps `values` [rows, cols] alive as long as the model and returns an F32 view of them.
  cpu::MatView KeepMatrix(std::vector<float> values, size_t rows, size_t cols);

 private:
  Model() = default;
  // Matrices(), to point their views at packed copies.
  std::vector<cpu::MatView*> MutableMatrices();
  // Releases every page of the file but those of the matrices and the token table for which
  // still_read(view) is true (MappedFile::ReleasePages: whole pages only).
  void ReleaseFilePagesBut(const std::function<bool(const cpu::MatView&)>& still_read);

  std::unique_ptr<gguf::GgufFile> file_;
  ModelConfig config_;
  cpu::MatView token_embd_{};
  cpu::MatView output_{};
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<float> rope_freq_factors_;  // rope_freqs, or LongRoPE's short factors
  std::vector<float> rope_factors_long_;  // LongRoPE only
  std::vector<std::unique_ptr<cpu::PackedMatrix>> packed_;  // what the views' `packed` point at
  std::unique_ptr<MappedFile> packed_blob_;  // their bytes, when mapped from a derived blob
  PackedFrom packed_from_ = PackedFrom::kNone;
  std::thread blob_writer_;  // writing the derived blob after a repack
  std::vector<std::vector<float>> kept_;  // merged matrices (KeepMatrix)
  size_t weight_bytes_ = 0;

  void RepackMatrices(const LoadOptions& options, ThreadPool& pool);
};

}  // namespace llmasos::arch

#endif  // LLMASOS_MODEL_ARCH_LLAMA_MODEL_H_
