// tokenize_tool MODEL [--vocab-info]
//
// Loads the tokenizer of MODEL (a GGUF file, or a Hugging Face tokenizer.json when the name
// ends in ".json") and answers JSON lines on stdin, one per line:
//   in:  {"text_b64": "...", "parse_special": false, "add_special": false,
//         "render_special": <parse_special>}
//   out: {"ids": [...], "decoded_b64": "...", "incremental_b64": "..."}
// decoded is Decode(ids); incremental is the IncrementalDecoder's output over ids, flushed.
// A request with "pre_tokenizer": NAME (a tokenizer.ggml.pre value) is answered with the
// pre-tokenizer's pieces instead: {"pieces_b64": [...]}, of the text with invalid UTF-8
// replaced by U+FFFD.
// A malformed line gets {"error": "..."} and the tool goes on. --vocab-info prints the vocab's
// model, pre, size, special ids and eog list as one JSON object and exits.
//
// Text travels as base64 so that any bytes, invalid UTF-8 included, survive the JSON.
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "model/tokenizer/hf_vocab.h"
#include "model/tokenizer/pre_tokenizer.h"
#include "util/utf8.h"
#include "model/tokenizer/tokenizer.h"
#ifdef LLMASOS_HAVE_GGUF
#include "model/gguf/gguf.h"
#endif

namespace llmasos::tokenizer {
namespace {

using nlohmann::json;

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64Encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out.push_back(kAlphabet[(v >> s) & 63]);
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {kAlphabet[v >> 18], kAlphabet[(v >> 12) & 63], kAlphabet[(v >> 6) & 63], '='};
  }
  return out;
}

StatusOr<std::string> Base64Decode(std::string_view in) {
  if (in.size() % 4 != 0) return InvalidArgumentError("text_b64: length is not a multiple of 4");
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      char c = in[i + k];
      int d;
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        d = 0;
        ++pad;
      } else if (const char* p = c != 0 ? std::strchr(kAlphabet, c) : nullptr; p != nullptr && pad == 0) {
        d = static_cast<int>(p - kAlphabet);
      } else {
        return InvalidArgumentError("text_b64: invalid character at " + std::to_string(i + k));
      }
      v = (v << 6) | d;
    }
    out.push_back(static_cast<char>(v >> 16));
    if (pad < 2) out.push_back(static_cast<char>((v >> 8) & 255));
    if (pad < 1) out.push_back(static_cast<char>(v & 255));
  }
  return out;
}

StatusOr<Vocab> LoadVocab(const std::string& path) {
  if (path.size() >= 5 && path.ends_with(".json")) return VocabFromHfTokenizerJsonFile(path);
#ifdef LLMASOS_HAVE_GGUF
  ASSIGN_OR_RETURN(auto file, gguf::GgufFile::Open(path));
  return VocabFromGguf(*file);
#else
  return UnimplementedError("this build has no GGUF reader; pass a tokenizer.json");
#endif
}

json Answer(const Tokenizer& tok, const json& request) {
  if (!request.is_object() || !request.contains("text_b64") || !request["text_b64"].is_string()) {
    return {{"error", "each line must be an object with a string field text_b64"}};
  }
  auto get_bool = [&](const char* key, bool fallback) {
    return request.contains(key) && request[key].is_boolean() ? request[key].get<bool>()
                                                                : fallback;
  };
  auto text = Base64Decode(request["text_b64"].get<std::string>());
  if (!text.ok()) return {{"error", text.status().message()}};
  if (request.contains("pre_tokenizer")) {
    if (!request["pre_tokenizer"].is_string()) return {{"error", "pre_tokenizer must be a string"}};
    auto pre = PreTokenizer::Create(request["pre_tokenizer"].get<std::string>());
    if (!pre.ok()) return {{"error", pre.status().message()}};
    std::string sanitized = SanitizeUtf8(*text);
    std::vector<std::string_view> pieces;
    (*pre)->Split(sanitized, &pieces);
    json encoded = json::array();
    for (std::string_view piece : pieces) encoded.push_back(Base64Encode(piece));
    return {{"pieces_b64", encoded}};
  }
  bool parse_special = get_bool("parse_special", false);
  bool add_special = get_bool("add_special", false);
  bool render_special = get_bool("render_special", parse_special);
  std::vector<TokenId> ids = tok.Encode(*text, add_special, parse_special);
  IncrementalDecoder decoder(tok, render_special);
  std::string incremental;
  for (TokenId id : ids) incremental += decoder.Push(id);
  incremental += decoder.Flush();
  return {{"ids", ids},
          {"decoded_b64", Base64Encode(tok.Decode(ids, render_special))},
          {"incremental_b64", Base64Encode(incremental)}};
}

int Main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || (argc == 3 && std::string(argv[2]) != "--vocab-info")) {
    std::fprintf(stderr, "usage: tokenize_tool MODEL.gguf|tokenizer.json [--vocab-info]\n");
    return 2;
  }
  auto vocab = LoadVocab(argv[1]);
  if (!vocab.ok()) {
    std::fprintf(stderr, "tokenize_tool: %s\n", vocab.status().ToString().c_str());
    return 1;
  }
  auto tok = Tokenizer::Create(std::move(vocab).value());
  if (!tok.ok()) {
    std::fprintf(stderr, "tokenize_tool: %s\n", tok.status().ToString().c_str());
    return 1;
  }
  const Vocab& v = (*tok)->vocab();
  if (argc == 3) {
    json info = {{"model", v.model}, {"pre", v.pre},        {"num_tokens", v.tokens.size()},
                 {"bos", v.bos},     {"eos", v.eos},        {"eot", v.eot},
                 {"unk", v.unk},     {"pad", v.pad},        {"add_bos", v.add_bos},
                 {"add_eos", v.add_eos}, {"add_space_prefix", v.add_space_prefix},
                 {"num_merges", v.merges.size()}, {"eog", v.eog},
                 {"has_chat_template", !v.chat_template.empty()}};
    std::cout << info.dump() << std::endl;
    return 0;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
    json answer = request.is_discarded() ? json{{"error", "line is not valid JSON"}}
                                         : Answer(**tok, request);
    std::cout << answer.dump() << '\n';
    std::cout.flush();
  }
  return 0;
}

}  // namespace
}  // namespace llmasos::tokenizer

int main(int argc, char** argv) { return llmasos::tokenizer::Main(argc, argv); }
