// libFuzzer target: arbitrary bytes as a model file. When they parse as GGUF, Model::FromGguf
// reads the configuration and every tensor for the file's architecture (shapes against the
// metadata, phi3's fused QKV and gate/up views, rotary factors, sliding windows) and repacks
// what the CPU packs; a refusal must be a Status of the kinds the loader documents, with a
// message (InvalidArgument: a metadata value of the wrong type). A file that loads runs one
// two-token forward pass in a four-token context, so a view or a factor table the loader let
// through with the wrong size faults under ASan.
// Seeds: the GGUF fuzzer's corpus (src/model/gguf/fuzz_seeds), with its tiny phi3 model.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "model/arch/llama_context.h"
#include "model/arch/llama_model.h"
#include "model/gguf/gguf.h"
#include "util/thread_pool.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using llmasos::StatusCode;
  auto file = llmasos::gguf::GgufFile::Parse(std::span<const uint8_t>(data, size));
  if (!file.ok()) return 0;  // the GGUF format itself is gguf_fuzzer's
  auto model = llmasos::arch::Model::FromGguf(std::move(file).value());
  if (!model.ok()) {
    const StatusCode code = model.status().code();
    if ((code != StatusCode::kDataLoss && code != StatusCode::kNotFound &&
         code != StatusCode::kUnimplemented && code != StatusCode::kInvalidArgument) ||
        model.status().message().empty()) {
      __builtin_trap();  // refusals name a bad, missing, mistyped or unsupported field
    }
    return 0;
  }
  static llmasos::ThreadPool pool(1);
  llmasos::arch::ContextOptions options;
  options.max_tokens = 4;
  auto context = llmasos::arch::Context::Create(**model, pool, options);
  if (!context.ok()) return 0;
  const llmasos::arch::TokenId tokens[2] = {0, 1};
  if ((*model)->config().vocab_size < 2 || (*context)->max_tokens() < 2) return 0;
  std::vector<float> logits((*model)->config().vocab_size);
  (void)(*context)->Forward(tokens, /*all_logits=*/false, logits.data());
  return 0;
}
