// The llama family of decoder-only transformers (llama, mistral, qwen2, smollm): the
// configuration and the weights as read from a GGUF file.
//
// Weights stay in the memory-mapped file in their stored type; only the small 1-D tensors
// (norm weights, biases) are converted to float at load. Where the CPU driver has faster
// kernels for a repacked layout (cpu::PackMatrix), matrices are also repacked at load and the
// file's pages of them are dropped from memory, so resident memory stays about the file's
// size; LLMASOS_REPACK=0 turns this off. A Model is immutable after Load and shared by every
// Context that runs it.
#ifndef LLMASOS_MODEL_ARCH_LLAMA_MODEL_H_
#define LLMASOS_MODEL_ARCH_LLAMA_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "drivers/cpu/ops.h"
#include "model/gguf/gguf.h"
#include "util/status.h"

namespace llmasos::arch {

enum class RopeMode {
  kNormal,  // rotate adjacent pairs (x[2i], x[2i+1]): llama (the converter permutes Q/K)
  kNeox,    // rotate pairs (x[i], x[i + rope_dims/2]): qwen2 and other NeoX-style models
};

// How an embedding pools a prompt's final hidden states (GGUF "<arch>.pooling_type", with
// llama.cpp's numbering: 1 mean, 2 cls, 3 last; absent or 0 (none) pools by mean).
enum class Pooling { kMean, kCls, kLast };
std::string_view PoolingName(Pooling pooling);

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

  size_t q_dim() const { return num_heads * head_dim; }
  size_t kv_dim() const { return num_kv_heads * head_dim; }
};

// Reads and validates the hyperparameters. Unknown architectures give kUnimplemented.
StatusOr<ModelConfig> ConfigFromGguf(const gguf::GgufFile& file);

struct LayerWeights {
  std::vector<float> attn_norm;  // [embd]
  cpu::MatView wq, wk, wv;       // [q_dim, embd], [kv_dim, embd], [kv_dim, embd]
  std::vector<float> bq, bk, bv; // [q_dim], [kv_dim], [kv_dim]; empty when the model has none
  cpu::MatView wo;               // [embd, q_dim]
  std::vector<float> ffn_norm;   // [embd]
  cpu::MatView gate, up;         // [ffn, embd]
  cpu::MatView down;             // [embd, ffn]
};

class Model {
 public:
  // Takes ownership of the parsed file; checks every tensor's presence, type and shape.
  static StatusOr<std::unique_ptr<Model>> FromGguf(std::unique_ptr<gguf::GgufFile> file);
  static StatusOr<std::unique_ptr<Model>> Load(const std::string& path);

  const ModelConfig& config() const { return config_; }
  const gguf::GgufFile& file() const { return *file_; }
  const cpu::MatView& token_embd() const { return token_embd_; }  // [vocab, embd]
  const cpu::MatView& output() const { return output_; }          // [vocab, embd]; may be token_embd
  const std::vector<float>& output_norm() const { return output_norm_; }
  const LayerWeights& layer(size_t idx) const { return layers_[idx]; }
  // Bytes of weights read to produce one token (every matrix once): the bandwidth cost.
  size_t weight_bytes() const { return weight_bytes_; }

  // For merging an adapter into the weights at load (model/train/adapter.h): layer idx's
  // weights, whose matrix views may be pointed at float32 storage handed to KeepMatrix.
  // REQUIRES: before the model is shared with any Context.
  LayerWeights& mutable_layer(size_t idx) { return layers_[idx]; }
  // Keeps `values` [rows, cols] alive as long as the model and returns an F32 view of them.
  cpu::MatView KeepMatrix(std::vector<float> values, size_t rows, size_t cols);

 private:
  Model() = default;

  std::unique_ptr<gguf::GgufFile> file_;
  ModelConfig config_;
  cpu::MatView token_embd_{};
  cpu::MatView output_{};
  std::vector<float> output_norm_;
  std::vector<LayerWeights> layers_;
  std::vector<std::unique_ptr<cpu::PackedMatrix>> packed_;  // what the views' `packed` point at
  std::vector<std::vector<float>> kept_;  // merged matrices (KeepMatrix)
  size_t weight_bytes_ = 0;

  void RepackMatrices();
};

}  // namespace llmasos::arch

#endif  // LLMASOS_MODEL_ARCH_LLAMA_MODEL_H_
