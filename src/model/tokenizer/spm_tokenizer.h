// SentencePiece-style BPE (GGUF tokenizer.ggml.model = "llama"): spaces become U+2581 "▁",
// adjacent pieces merge while their concatenation is a token, highest score first, and
// characters with no token fall back to <0xXX> byte tokens (or unk). Internal: reached through
// Tokenizer::Create.
#ifndef LLMASOS_MODEL_TOKENIZER_SPM_TOKENIZER_H_
#define LLMASOS_MODEL_TOKENIZER_SPM_TOKENIZER_H_

#include <memory>

#include "model/tokenizer/tokenizer.h"

namespace llmasos::tokenizer {

// REQUIRES: ValidateVocabExceptMerges(vocab) is OK. Fails when scores are missing.
StatusOr<std::unique_ptr<Tokenizer>> NewSpmTokenizer(Vocab vocab);

}  // namespace llmasos::tokenizer

#endif  // LLMASOS_MODEL_TOKENIZER_SPM_TOKENIZER_H_
