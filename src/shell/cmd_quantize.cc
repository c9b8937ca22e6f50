// llmasos quantize IN OUT --type T: rewrites a GGUF model with its weight matrices in another
// tensor type, as llama.cpp's llama-quantize does for the types LLMasOS supports. Metadata is
// copied unchanged except general.file_type; 1-D tensors (norms, biases) stay F32; every 2-D
// tensor whose rows are whole blocks is dequantized and requantized to T. Converting a lossy
// source to a wider type (Q4_1 -> F16) keeps its values exactly as they decode; it does not
// recover what the source lost.
#include <algorithm>
#include <memory>
#include <string>
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

struct Target {
  const char* name;
  cpu::TensorType type;
  uint32_t file_type;  // llama.cpp's general.file_type (LLAMA_FTYPE_*)
};

constexpr Target kTargets[] = {
    {"f32", cpu::TensorType::kF32, 0},   {"f16", cpu::TensorType::kF16, 1},
    {"q4_0", cpu::TensorType::kQ4_0, 2}, {"q4_1", cpu::TensorType::kQ4_1, 3},
    {"q8_0", cpu::TensorType::kQ8_0, 7}, {"bf16", cpu::TensorType::kBF16, 32},
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
  std::vector<float> values;
  for (const gguf::TensorInfo& t : in->tensors()) {
    const size_t cols = t.dims[0];
    const size_t rows = t.num_elements / std::max<size_t>(cols, 1);
    const bool matrix = t.dims.size() >= 2 && cols % 32 == 0;
    const cpu::TensorType type = matrix ? target.type : cpu::TensorType::kF32;
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
  return ReportError(InvalidArgumentError("--type '" + f.type +
                                          "' is not one of f32, f16, bf16, q8_0, q4_0, q4_1"));
}

}  // namespace

void AddQuantizeCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<QuantizeFlags>();
  CLI::App* cmd = app.add_subcommand("quantize", "rewrite a GGUF model's weights in another tensor type");
  cmd->add_option("input", flags->in, "the source .gguf file or a registry reference")->required();
  cmd->add_option("output", flags->out, "the .gguf to write (atomically)")->required();
  cmd->add_option("--type", flags->type, "f32, f16, bf16, q8_0, q4_0 or q4_1")->required();
  cmd->callback([flags, exit_code] { *exit_code = QuantizeMain(*flags); });
}

}  // namespace llmasos::shell
