// make_tiny_model: writes a small llama-family GGUF with random weights and a byte-level BPE
// vocabulary, for tests that need a model of a given shape, architecture or tensor type.
//
//   make_tiny_model --arch llama|qwen2|qwen3|gemma3|phi3 --type f32|f16|bf16|q8_0|q4_0|q4_1 --out FILE
//                   [--seed S] [--layers L] [--embd E] [--heads H] [--kv-heads K] [--ff F]
//                   [--vocab V] [--context C] [--tied]
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "model/arch/tiny_model.h"
#include "model/gguf/gguf_writer.h"
#include "util/file.h"

int main(int argc, char** argv) {
  llmasos::arch::TinyModelSpec s;
  std::string type = "q8_0", out;
  CLI::App app{"make a tiny random llama-family GGUF model for tests"};
  app.add_option("--arch", s.arch, "llama, qwen2, qwen3, gemma3 or phi3");
  app.add_option("--type", type, "weight type: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k");
  app.add_option("--out", out, "output .gguf path")->required();
  app.add_option("--seed", s.seed, "random seed");
  app.add_option("--layers", s.layers)->check(CLI::Range(1, 64));
  app.add_option("--embd", s.embd)->check(CLI::Range(2, 4096));
  app.add_option("--heads", s.heads)->check(CLI::Range(1, 64));
  app.add_option("--kv-heads", s.kv_heads)->check(CLI::Range(1, 64));
  app.add_option("--ff", s.ff)->check(CLI::Range(1, 16384));
  app.add_option("--vocab", s.vocab)->check(CLI::Range(1, 1 << 20));
  app.add_option("--context", s.context)->check(CLI::Range(1, 1 << 20));
  app.add_flag("--tied", s.tied, "share the output matrix with the token embeddings");
  CLI11_PARSE(app, argc, argv);
  auto parsed = llmasos::gguf::WritableTensorType(type);
  llmasos::Status st = parsed.status();
  if (st.ok()) {
    s.type = *parsed;
    auto bytes = llmasos::arch::MakeTinyModel(s);
    st = bytes.status();
    if (st.ok()) {
      st = llmasos::WriteFileAtomically(out, std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
    }
  }
  if (!st.ok()) {
    std::fprintf(stderr, "make_tiny_model: %s\n", st.ToString().c_str());
    return 2;
  }
  return 0;
}
