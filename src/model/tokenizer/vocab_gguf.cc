// VocabFromGguf: the tokenizer.ggml.* metadata of a GGUF file.
#include <string>

#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/vocab_util.h"

namespace llmasos::tokenizer {
namespace {

// A NotFound from a getter means "absent"; any other error (wrong type) is returned.
bool Absent(const Status& status) { return status.code() == StatusCode::kNotFound; }

Status ReadTokenId(const gguf::GgufFile& file, std::string_view key, size_t num_tokens,
                   TokenId* id) {
  auto value = file.GetInt(key);
  if (!value.ok()) return Absent(value.status()) ? OkStatus() : value.status();
  // Some converters write -1 for "no such token".
  if (*value == -1) return OkStatus();
  if (*value < 0 || static_cast<uint64_t>(*value) >= num_tokens) {
    return OutOfRangeError(std::string(key) + " is " + std::to_string(*value) +
                           ", outside the vocabulary of " + std::to_string(num_tokens) +
                           " tokens");
  }
  *id = static_cast<TokenId>(*value);
  return OkStatus();
}

Status ReadBool(const gguf::GgufFile& file, std::string_view key, bool* out) {
  auto value = file.GetBool(key);
  if (!value.ok()) return Absent(value.status()) ? OkStatus() : value.status();
  *out = *value;
  return OkStatus();
}

}  // namespace

StatusOr<Vocab> VocabFromGguf(const gguf::GgufFile& file) {
  Vocab vocab;
  ASSIGN_OR_RETURN(std::string_view model, file.GetString("tokenizer.ggml.model"));
  vocab.model = std::string(model);
  if (vocab.model != "gpt2" && vocab.model != "llama") {
    return UnimplementedError("tokenizer.ggml.model '" + vocab.model +
                              "' is not supported (supported: gpt2, llama)");
  }
  auto pre = file.GetString("tokenizer.ggml.pre");
  if (pre.ok()) {
    vocab.pre = std::string(*pre);
  } else if (Absent(pre.status())) {
    vocab.pre = "default";
  } else {
    return pre.status();
  }

  ASSIGN_OR_RETURN(const std::vector<std::string_view>* tokens,
                   file.GetStringArray("tokenizer.ggml.tokens"));
  if (tokens->empty()) return DataLossError("tokenizer.ggml.tokens is empty");
  if (tokens->size() > static_cast<size_t>(INT32_MAX)) {
    return DataLossError("tokenizer.ggml.tokens has " + std::to_string(tokens->size()) +
                         " entries, more than token ids can address");
  }
  vocab.tokens.assign(tokens->begin(), tokens->end());
  const size_t num_tokens = vocab.tokens.size();

  auto scores = file.GetFloatArray("tokenizer.ggml.scores");
  if (scores.ok()) {
    vocab.scores = std::move(scores).value();
    if (vocab.scores.size() != num_tokens) {
      return DataLossError("tokenizer.ggml.scores has " + std::to_string(vocab.scores.size()) +
                           " entries but tokenizer.ggml.tokens has " + std::to_string(num_tokens));
    }
  } else if (!Absent(scores.status())) {
    return scores.status();
  }

  auto types = file.GetIntArray("tokenizer.ggml.token_type");
  if (types.ok()) {
    if (types->size() != num_tokens) {
      return DataLossError("tokenizer.ggml.token_type has " + std::to_string(types->size()) +
                           " entries but tokenizer.ggml.tokens has " + std::to_string(num_tokens));
    }
    vocab.types.reserve(num_tokens);
    for (size_t i = 0; i < types->size(); ++i) {
      int64_t t = (*types)[i];
      if (t < 0 || t > static_cast<int64_t>(TokenType::kByte)) {
        return DataLossError("tokenizer.ggml.token_type[" + std::to_string(i) + "] is " +
                             std::to_string(t) + ", not a token type (0..6)");
      }
      vocab.types.push_back(static_cast<TokenType>(t));
    }
  } else if (Absent(types.status())) {
    vocab.types.assign(num_tokens, TokenType::kNormal);
  } else {
    return types.status();
  }

  auto merges = file.GetStringArray("tokenizer.ggml.merges");
  if (merges.ok()) {
    vocab.merges.assign((*merges)->begin(), (*merges)->end());
  } else if (!Absent(merges.status())) {
    return merges.status();
  } else if (vocab.model == "gpt2") {
    return DataLossError("tokenizer.ggml.merges is missing; a 'gpt2' (BPE) tokenizer needs it");
  }
  if (vocab.model == "llama" && vocab.scores.empty()) {
    return DataLossError("tokenizer.ggml.scores is missing; a 'llama' tokenizer needs it");
  }

  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.bos_token_id", num_tokens, &vocab.bos));
  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.eos_token_id", num_tokens, &vocab.eos));
  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.eot_token_id", num_tokens, &vocab.eot));
  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.unknown_token_id", num_tokens, &vocab.unk));
  RETURN_IF_ERROR(ReadTokenId(file, "tokenizer.ggml.padding_token_id", num_tokens, &vocab.pad));

  // Defaults when the keys are absent follow the model families: SentencePiece models add BOS
  // and a space prefix, byte-level BPE models add neither.
  const bool spm = vocab.model == "llama";
  vocab.add_bos = spm;
  vocab.add_space_prefix = spm;
  RETURN_IF_ERROR(ReadBool(file, "tokenizer.ggml.add_bos_token", &vocab.add_bos));
  RETURN_IF_ERROR(ReadBool(file, "tokenizer.ggml.add_eos_token", &vocab.add_eos));
  RETURN_IF_ERROR(ReadBool(file, "tokenizer.ggml.add_space_prefix", &vocab.add_space_prefix));

  auto chat_template = file.GetString("tokenizer.chat_template");
  if (chat_template.ok()) {
    vocab.chat_template = std::string(*chat_template);
  } else if (!Absent(chat_template.status())) {
    return chat_template.status();
  }

  Status valid = ValidateVocab(vocab);
  if (!valid.ok()) return DataLossError(valid.message());
  FillEndOfGeneration(&vocab);
  return vocab;
}

}  // namespace llmasos::tokenizer
