// Test tool: dequantises tensors of a GGUF file to float32 with the CPU driver's
// DequantizeRow, the values the forward pass reads, for the gguf-py oracle in
// tests/e2e/test_quant_formats.py.
//   gguf_dequantize FILE OUT [NAME ...]
// writes the named tensors (every tensor when none is named), in the order given, to OUT as
// raw little-endian float32, one after the other.
#include <cstdio>
#include <string>
#include <vector>

#include "drivers/cpu/ops.h"
#include "model/gguf/gguf.h"

namespace llmasos::gguf {
namespace {

int Run(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: gguf_dequantize FILE OUT [NAME ...]\n");
    return 2;
  }
  auto file = GgufFile::Open(argv[1]);
  if (!file.ok()) {
    std::fprintf(stderr, "gguf_dequantize: %s\n", file.status().ToString().c_str());
    return 1;
  }
  std::vector<const TensorInfo*> tensors;
  for (int i = 3; i < argc; ++i) {
    const TensorInfo* t = (*file)->FindTensor(argv[i]);
    if (t == nullptr) {
      std::fprintf(stderr, "gguf_dequantize: no tensor '%s'\n", argv[i]);
      return 1;
    }
    tensors.push_back(t);
  }
  if (argc == 3) {
    for (const TensorInfo& t : (*file)->tensors()) tensors.push_back(&t);
  }
  std::FILE* out = std::fopen(argv[2], "wb");
  if (out == nullptr) {
    std::fprintf(stderr, "gguf_dequantize: cannot write '%s'\n", argv[2]);
    return 1;
  }
  for (const TensorInfo* t : tensors) {
    const size_t cols = t->dims.empty() ? 1 : t->dims[0];
    const size_t rows = cols == 0 ? 0 : t->num_elements / cols;
    const cpu::MatView view{t->type, t->data, rows, cols, cpu::RowBytes(t->type, cols)};
    std::vector<float> row(cols);
    for (size_t r = 0; r < rows; ++r) {
      cpu::DequantizeRow(view, r, row.data());
      if (std::fwrite(row.data(), sizeof(float), cols, out) != cols) {
        std::fprintf(stderr, "gguf_dequantize: write to '%s' failed\n", argv[2]);
        std::fclose(out);
        return 1;
      }
    }
  }
  return std::fclose(out) == 0 ? 0 : 1;
}

}  // namespace
}  // namespace llmasos::gguf

int main(int argc, char** argv) { return llmasos::gguf::Run(argc, argv); }
