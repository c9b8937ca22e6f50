// Builds a Vocab from a Hugging Face tokenizer.json, for tests, fuzzers and tools that work
// without a GGUF file. Supports byte-level BPE models whose pre-tokenizer is one of those the
// GGUF path knows (GPT-2's ByteLevel regex, SmolLM2's Digits + ByteLevel, Llama 3 / Qwen2
// Split regexes).
//
// tokenizer.json carries no BOS/EOS ids (those live in tokenizer_config.json): bos, eos and
// eot stay kNoToken, and eog holds the conventional end-of-turn control tokens.
#ifndef LLMASOS_MODEL_TOKENIZER_HF_VOCAB_H_
#define LLMASOS_MODEL_TOKENIZER_HF_VOCAB_H_

#include <string>
#include <string_view>

#include "model/tokenizer/tokenizer.h"
#include "util/status.h"

namespace llmasos::tokenizer {

// Errors name the JSON field that is missing or malformed.
StatusOr<Vocab> VocabFromHfTokenizerJson(std::string_view json_text);
StatusOr<Vocab> VocabFromHfTokenizerJsonFile(const std::string& path);

}  // namespace llmasos::tokenizer

#endif  // LLMASOS_MODEL_TOKENIZER_HF_VOCAB_H_
