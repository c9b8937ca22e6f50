// Vocabularies for tests and fuzzers: the SmolLM2 tokenizer.json (tests/data) with the ids
// its GGUF sets, and tiny hand-made vocabularies that need no file.
#ifndef LLMASOS_MODEL_TOKENIZER_TEST_VOCABS_H_
#define LLMASOS_MODEL_TOKENIZER_TEST_VOCABS_H_

#include <string>

#include "model/tokenizer/tokenizer.h"
#include "util/status.h"

namespace llmasos::tokenizer::testing {

// Path of the SmolLM2 tokenizer.json: tests/data/smollm2-135m-instruct/tokenizer.json in the
// source tree, baked in at build time.
std::string SmolLm2TokenizerJsonPath();
bool SmolLm2Available();
// The SmolLM2 vocab from tokenizer.json, with the special ids and flags the model's GGUF
// carries (bos <|im_start|> = 1, eos <|im_end|> = 2, unk <|endoftext|> = 0, pad = 2, no BOS).
StatusOr<Vocab> SmolLm2Vocab();

// SentencePiece-style vocab: <unk>, <s>, </s>, 256 <0xXX> byte tokens, and a few scored pieces
// spelling "▁hello" and "▁world". add_bos and add_space_prefix are on.
Vocab TinySpmVocab();

// Byte-level BPE vocab with the GPT-2 pre-tokenizer: one token per byte, a few merges
// (building "Ġthe" and "Ġhello") and two control tokens "<|end|>" and "<|endoftext|>" plus
// the user-defined "<tool>".
Vocab TinyBpeVocab();

}  // namespace llmasos::tokenizer::testing

#endif  // LLMASOS_MODEL_TOKENIZER_TEST_VOCABS_H_
