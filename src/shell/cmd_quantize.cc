// llmasos quantize IN OUT --type T: rewrites a GGUF model with its weight matrices in another
// tensor type, as llama.cpp's llama-quantize does for the types LLMasOS supports, with its
// per-tensor choices for the K-quant mixes (TypeChooser). Metadata is copied unchanged except
// general.file_type; 1-D tensors (norms, biases) stay F32; every 2-D tensor whose rows are
// whole 32-element blocks is dequantized and requantized. Converting a lossy
// source to a wider type (Q4_1 -> F16) keeps its values exactly as they decode; it does not
// recover what the source lost.
#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "drivers/cpu/ops.h"
#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "shell/commands.h"

namespace llmasos::shell {
namespace {

struct QuantizeFlags {
  std::string in;
  std::string out;
  std::string type;
};

// A target file type: its base tensor type and, for the K-quant mixes, llama.cpp's choices of
// a wider type for the tensors that matter most.
struct Target {
  const char* name;
  cpu::TensorType type;
  uint32_t file_type;  // llama.cpp's general.file_type (LLAMA_FTYPE_*)
  bool k_mix = false;  // Q4_K_M / Q5_K_M: more bits for some attn_v and ffn_down tensors
};

constexpr Target kTargets[] = {
    {"f32", cpu::TensorType::kF32, 0},          {"f16", cpu::TensorType::kF16, 1},
    {"q4_0", cpu::TensorType::kQ4_0, 2},        {"q4_1", cpu::TensorType::kQ4_1, 3},
    {"q8_0", cpu::TensorType::kQ8_0, 7},        {"q5_0", cpu::TensorType::kQ5_0, 8},
    {"q5_1", cpu::TensorType::kQ5_1, 9},        {"q4_k_m", cpu::TensorType::kQ4_K, 15, true},
    {"q5_k_m", cpu::TensorType::kQ5_K, 17, true}, {"q6_k", cpu::TensorType::kQ6_K, 18},
    {"bf16", cpu::TensorType::kBF16, 32},
};

constexpr const char* kTargetNames = "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_m, q5_k_m, q6_k";

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between.
bool UseMoreBits(size_t i, size_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i >= n / 8 && (i - n / 8) % 3 == 2);
}

// The type of one matrix under `target`, llama.cpp's per-tensor rules for the mixes:
//   the output projection (or the token embedding when the output is tied to it): Q6_K;
//   attn_v and ffn_down of the layers UseMoreBits picks: Q6_K (Q4_K_M, Q5_K_M);
//   a fused attn_qkv: one step up (Q5_K for Q4_K_M, Q6_K for Q5_K_M);
// then, where the row length is no multiple of 256, the K-quant falls back to a 32-element
// format (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0).
struct TypeChooser {
  const Target& target;
  bool has_output;
  size_t n_attn_v = 0, n_ffn_down = 0;
  size_t i_attn_v = 0, i_ffn_down = 0;

  cpu::TensorType Choose(std::string_view name, size_t cols) {
    cpu::TensorType type = target.type;
    const bool k_quant = type == cpu::TensorType::kQ4_K || type == cpu::TensorType::kQ5_K ||
                         type == cpu::TensorType::kQ6_K;
    if (k_quant) {
      if (name == "output.weight" || (!has_output && name == "token_embd.weight")) {
        type = cpu::TensorType::kQ6_K;
      } else if (EndsWith(name, "attn_v.weight")) {
        if (target.k_mix && UseMoreBits(i_attn_v, n_attn_v)) type = cpu::TensorType::kQ6_K;
        ++i_attn_v;
      } else if (EndsWith(name, "ffn_down.weight")) {
        if (target.k_mix && UseMoreBits(i_ffn_down, n_ffn_down)) type = cpu::TensorType::kQ6_K;
        ++i_ffn_down;
      } else if (EndsWith(name, "attn_qkv.weight") && target.k_mix) {
        type = type == cpu::TensorType::kQ4_K ? cpu::TensorType::kQ5_K : cpu::TensorType::kQ6_K;
      }
    }
    if (cols % cpu::kSuperBlockElems != 0) {
      if (type == cpu::TensorType::kQ4_K) type = cpu::TensorType::kQ5_0;
      if (type == cpu::TensorType::kQ5_K) type = cpu::TensorType::kQ5_1;
      if (type == cpu::TensorType::kQ6_K) type = cpu::TensorType::kQ8_0;
    }
    return type;
  }
};

Status Quantize(const QuantizeFlags& f, const Target& target) {
  ASSIGN_OR_RETURN(std::string in_path, ResolveModelPath(f.in));
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> in, gguf::GgufFile::Open(in_path));
  gguf::GgufWriter w;
  for (const gguf::MetadataEntry& e : in->metadata()) {
    if (e.key == "general.file_type" || e.key == "general.alignment") continue;
    RETURN_IF_ERROR(w.CopyValue(e.key, e.value));
  }
  w.SetUint32("general.file_type", target.file_type);
  w.SetAlignment(static_cast<uint32_t>(in->alignment()));
  TypeChooser chooser{target, in->FindTensor("output.weight") != nullptr};
  for (const gguf::TensorInfo& t : in->tensors()) {
    chooser.n_attn_v += EndsWith(t.name, "attn_v.weight");
    chooser.n_ffn_down += EndsWith(t.name, "ffn_down.weight");
  }
  std::vector<float> values;
  for (const gguf::TensorInfo& t : in->tensors()) {
    const size_t cols = t.dims[0];
    const size_t rows = t.num_elements / std::max<size_t>(cols, 1);
    const bool matrix = t.dims.size() >= 2 && cols % 32 == 0;
    const cpu::TensorType type = matrix ? chooser.Choose(t.name, cols) : cpu::TensorType::kF32;
    values.resize(t.num_elements);
    cpu::MatView view{t.type, t.data, rows, cols, cpu::RowBytes(t.type, cols)};
    for (size_t r = 0; r < rows; ++r) cpu::DequantizeRow(view, r, &values[r * cols]);
    Status st = w.AddTensorFromFloats(t.name, type, t.dims, values);
    if (!st.ok()) return st.Annotate("converting tensor '" + std::string(t.name) + "'");
  }
  return w.WriteFile(f.out);
}

int QuantizeMain(const QuantizeFlags& f) {
  for (const Target& t : kTargets) {
    if (f.type == t.name) {
      Status st = Quantize(f, t);
      if (!st.ok()) return ReportError(st);
      std::fprintf(stderr, "llmasos quantize: wrote %s (%s)\n", f.out.c_str(), t.name);
      return 0;
    }
  }
  return ReportError(InvalidArgumentError("--type '" + f.type + "' is not one of " + kTargetNames));
}

}  // namespace

void AddQuantizeCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<QuantizeFlags>();
  CLI::App* cmd = app.add_subcommand("quantize", "rewrite a GGUF model's weights in another tensor type");
  cmd->add_option("input", flags->in, "the source .gguf file or a registry reference")->required();
  cmd->add_option("output", flags->out, "the .gguf to write (atomically)")->required();
  cmd->add_option("--type", flags->type, kTargetNames)->required();
  cmd->callback([flags, exit_code] { *exit_code = QuantizeMain(*flags); });
}

}  // namespace llmasos::shell
