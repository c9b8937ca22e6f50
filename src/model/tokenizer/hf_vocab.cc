#include "model/tokenizer/hf_vocab.h"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "model/tokenizer/vocab_util.h"

namespace llmasos::tokenizer {
namespace {

using nlohmann::json;

// The Split regexes Llama 3 and Qwen2 publish in their tokenizer.json files.
constexpr std::string_view kLlama3Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Split =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The "type" of a component, or "" when j is not an object with a string type.
std::string TypeOf(const json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) return "";
  return j["type"].get<std::string>();
}

bool IsByteLevel(const json& j, bool use_regex) {
  return TypeOf(j) == "ByteLevel" &&
         j.value("use_regex", true) == use_regex && !j.value("add_prefix_space", false);
}

// Maps the pre_tokenizer section to a tokenizer.ggml.pre name.
StatusOr<std::string> PreName(const json& pre) {
  if (IsByteLevel(pre, true)) return std::string("gpt2");
  if (TypeOf(pre) == "Sequence" && pre.contains("pretokenizers")) {
    const json& steps = pre["pretokenizers"];
    if (steps.is_array() && steps.size() == 2) {
      const json& first = steps[0];
      if (TypeOf(first) == "Digits" && first.value("individual_digits", false) &&
          IsByteLevel(steps[1], true)) {
        return std::string("smollm");
      }
      if (TypeOf(first) == "Split" && first.contains("pattern") &&
          first["pattern"].is_object() && first["pattern"].contains("Regex") &&
          first["pattern"]["Regex"].is_string() && IsByteLevel(steps[1], false)) {
        std::string regex = first["pattern"]["Regex"];
        if (regex == kLlama3Split) return std::string("llama-bpe");
        if (regex == kQwen2Split) return std::string("qwen2");
      }
    }
  }
  return UnimplementedError("tokenizer.json: pre_tokenizer " + pre.dump().substr(0, 200) +
                            " is not one of the supported byte-level BPE pre-tokenizers");
}

StatusOr<Vocab> Build(const json& root) {
  if (!root.is_object()) return InvalidArgumentError("tokenizer.json: top level is not an object");
  if (!root.contains("model") || !root["model"].is_object()) {
    return InvalidArgumentError("tokenizer.json: 'model' is missing");
  }
  const json& model = root["model"];
  if (TypeOf(model) != "BPE") {
    return UnimplementedError("tokenizer.json: model.type '" + TypeOf(model) +
                              "' is not supported (supported: BPE)");
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return InvalidArgumentError("tokenizer.json: model.vocab is missing or not an object");
  }
  Vocab vocab;
  vocab.model = "gpt2";
  ASSIGN_OR_RETURN(vocab.pre, PreName(root.value("pre_tokenizer", json())));

  // Ids may come from model.vocab and added_tokens; together they must cover 0..n-1, so no id
  // can exceed the number of entries (which also bounds what is allocated).
  size_t num_entries = model["vocab"].size();
  if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
    num_entries += root["added_tokens"].size();
  }
  std::vector<std::string> tokens;
  std::vector<bool> seen;
  std::vector<TokenType> types;
  auto place = [&](int64_t id, const std::string& text, TokenType type) -> Status {
    if (id < 0 || static_cast<uint64_t>(id) >= num_entries) {
      return InvalidArgumentError("tokenizer.json: token '" + text + "' has id " +
                                  std::to_string(id) + ", outside 0.." +
                                  std::to_string(num_entries - 1) + " (one id per entry)");
    }
    if (static_cast<size_t>(id) >= tokens.size()) {
      tokens.resize(id + 1);
      seen.resize(id + 1);
      types.resize(id + 1, TokenType::kNormal);
    }
    tokens[id] = text;
    seen[id] = true;
    types[id] = type;
    return OkStatus();
  };
  for (const auto& [text, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) {
      return InvalidArgumentError("tokenizer.json: model.vocab['" + text + "'] is not an integer");
    }
    RETURN_IF_ERROR(place(id.get<int64_t>(), text, TokenType::kNormal));
  }
  if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
    for (const json& added : root["added_tokens"]) {
      if (!added.is_object() || !added.contains("id") || !added["id"].is_number_integer() ||
          !added.contains("content") || !added["content"].is_string()) {
        return InvalidArgumentError("tokenizer.json: an added_tokens entry lacks id or content");
      }
      bool special = added.value("special", false);
      RETURN_IF_ERROR(place(added["id"].get<int64_t>(), added["content"].get<std::string>(),
                            special ? TokenType::kControl : TokenType::kUserDefined));
    }
  }
  for (size_t i = 0; i < seen.size(); ++i) {
    if (!seen[i]) {
      return InvalidArgumentError("tokenizer.json: no token has id " + std::to_string(i));
    }
  }
  vocab.tokens = std::move(tokens);
  vocab.types = std::move(types);

  if (!model.contains("merges") || !model["merges"].is_array()) {
    return InvalidArgumentError("tokenizer.json: model.merges is missing or not an array");
  }
  const json& merges = model["merges"];
  vocab.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {
      vocab.merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      vocab.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    } else {
      return InvalidArgumentError("tokenizer.json: model.merges[" + std::to_string(i) +
                                  "] is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  RETURN_IF_ERROR(ValidateVocab(vocab));
  FillEndOfGeneration(&vocab);
  return vocab;
}

}  // namespace

StatusOr<Vocab> VocabFromHfTokenizerJson(std::string_view json_text) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return InvalidArgumentError("tokenizer.json is not valid JSON");
  // nlohmann::json throws type_error when a field has an unexpected type; that is a bad file,
  // reported as such, and the exception does not leave this function.
  try {
    return Build(root);
  } catch (const json::exception& e) {
    return InvalidArgumentError(std::string("tokenizer.json: unexpected structure: ") + e.what());
  }
}

StatusOr<Vocab> VocabFromHfTokenizerJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open tokenizer.json '" + path + "'");
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto vocab = VocabFromHfTokenizerJson(buffer.str());
  if (!vocab.ok()) return vocab.status().Annotate("'" + path + "'");
  return vocab;
}

}  // namespace llmasos::tokenizer
