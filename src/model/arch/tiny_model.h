// Tiny llama-family models with random weights and a byte-level BPE vocabulary, written with
// the project's GGUF writer: for tests that need a model of a given shape, architecture or
// tensor type (and for the make_tiny_model tool).
#ifndef LLMASOS_MODEL_ARCH_TINY_MODEL_H_
#define LLMASOS_MODEL_ARCH_TINY_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "drivers/cpu/tensor_type.h"
#include "model/arch/llama_model.h"
#include "util/status.h"

namespace llmasos::arch {

struct TinyModelSpec {
  // "llama" (normal RoPE), "qwen2" (NeoX RoPE, QKV bias), "qwen3" (NeoX, Q/K norm),
  // "gemma3" (Q/K norm, post-norms, GeGLU, sliding layers with `sliding_window` in a pattern of
  // `swa_pattern`: the last layer of each run of swa_pattern is global) or
  // "phi3" (NeoX, fused attn_qkv and ffn_up, every layer sliding with `sliding_window`, and
  // LongRoPE factors when longrope_orig > 0).
  std::string arch = "llama";
  cpu::TensorType type = cpu::TensorType::kQ8_0;  // type of every 2-D weight
  uint64_t seed = 1;
  uint32_t layers = 2;
  uint32_t embd = 64;
  uint32_t heads = 4;
  uint32_t kv_heads = 2;
  uint32_t ff = 128;
  uint32_t vocab = 320;  // at least 264: 256 bytes, 5 merges, 3 control tokens
  uint32_t context = 256;
  bool tied = false;  // output shares token_embd
  uint32_t sliding_window = 5;  // gemma3, phi3 (0: none)
  uint32_t swa_pattern = 2;     // gemma3: every 2nd layer global (Gemma 3 itself: 6)
  // phi3: rope.scaling.original_context_length; a context beyond it takes the long factors.
  uint32_t longrope_orig = 32;
};

// The GGUF file bytes. InvalidArgument names the inconsistent field.
StatusOr<std::vector<uint8_t>> MakeTinyModel(const TinyModelSpec& spec);

// A tiny model made and loaded in memory, for tests. `model` reads from `bytes`: keep them
// together (moving the struct keeps the bytes where they are).
struct LoadedTinyModel {
  std::vector<uint8_t> bytes;
  std::unique_ptr<Model> model;
};
StatusOr<LoadedTinyModel> LoadTinyModel(const TinyModelSpec& spec);

}  // namespace llmasos::arch

#endif  // LLMASOS_MODEL_ARCH_TINY_MODEL_H_
