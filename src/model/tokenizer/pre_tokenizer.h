// Regex pre-tokenizers for byte-level BPE. Text is cut into pieces by a sequence of regexes;
// each regex splits every current piece into its matches and the gaps between them (nothing
// is dropped), and BPE merges never cross a piece boundary.
//
// Thread safety: immutable after Create; Split may run concurrently.
#ifndef LLMASOS_MODEL_TOKENIZER_PRE_TOKENIZER_H_
#define LLMASOS_MODEL_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace llmasos::tokenizer {

class PreTokenizer {
 public:
  // `name` is a tokenizer.ggml.pre value: "default"/"gpt2", "smollm", "llama-bpe"/"llama3",
  // "qwen2". Unknown names are an error naming the value and the supported ones.
  static StatusOr<std::unique_ptr<PreTokenizer>> Create(std::string_view name);
  // A pre-tokenizer from explicit patterns (PCRE2 syntax), applied in order.
  static StatusOr<std::unique_ptr<PreTokenizer>> FromPatterns(
      const std::vector<std::string>& patterns);
  ~PreTokenizer();

  // Appends the pieces of `text` in order. REQUIRES: text is well-formed UTF-8.
  void Split(std::string_view text, std::vector<std::string_view>* pieces) const;

 private:
  struct Regex;
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Regex>> regexes_;
};

}  // namespace llmasos::tokenizer

#endif  // LLMASOS_MODEL_TOKENIZER_PRE_TOKENIZER_H_
