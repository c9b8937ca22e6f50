// Byte-level BPE (GGUF tokenizer.ggml.model = "gpt2"), as used by GPT-2, SmolLM2, Llama 3 and
// Qwen2. Internal: reached through Tokenizer::Create.
#ifndef LLMASOS_MODEL_TOKENIZER_BPE_TOKENIZER_H_
#define LLMASOS_MODEL_TOKENIZER_BPE_TOKENIZER_H_

#include <array>
#include <memory>
#include <string>

#include "model/tokenizer/tokenizer.h"

namespace llmasos::tokenizer {

// REQUIRES: ValidateVocabExceptMerges(vocab) is OK. Fails when a merge is not two tokens whose
// join is a token (ResolveMerges).
StatusOr<std::unique_ptr<Tokenizer>> NewBpeTokenizer(Vocab vocab);

// The GPT-2 byte-to-unicode table: byte b stands for the code point ByteToUnicode()[b] in
// token texts. Printable Latin-1 bytes map to themselves; the other 68 bytes (controls,
// space, DEL, NBSP, soft hyphen...) are moved to U+0100 upward in byte order.
const std::array<uint32_t, 256>& ByteToUnicode();

}  // namespace llmasos::tokenizer

#endif  // LLMASOS_MODEL_TOKENIZER_BPE_TOKENIZER_H_
