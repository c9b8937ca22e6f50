#include "model/tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

namespace llmasos::tokenizer {
namespace {

// The published pre-tokenizer regexes use \s and \S. Their reference engine (Oniguruma, in the
// `tokenizers` package) takes \s as the Unicode White_Space property, while PCRE2's \s with UCP
// also matches U+180E. Spelling the class out keeps both engines in agreement.
constexpr std::string_view kWhite = R"(\t\n\x{0B}\f\r \x{85}\p{Z})";

// Replaces the placeholders {W} (white space members, for use inside a class) in `pattern`.
std::string Expand(std::string_view pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern.substr(i).starts_with("{W}")) {
      out.append(kWhite);
      i += 2;
    } else {
      out.push_back(pattern[i]);
    }
  }
  return out;
}

// GPT-2 (also the ByteLevel pre-tokenizer's built-in regex).
constexpr std::string_view kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^{W}\p{L}\p{N}]+|[{W}]+(?![^{W}])|[{W}]+)";
// Llama 3: case-insensitive contractions, a letter run with one leading non-letter, numbers in
// groups of at most three digits, punctuation runs that swallow trailing newlines.
constexpr std::string_view kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^{W}\p{L}\p{N}]+[\r\n]*|[{W}]*[\r\n]+|[{W}]+(?![^{W}])|[{W}]+)";
// Qwen2: as Llama 3 but every digit on its own.
constexpr std::string_view kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^{W}\p{L}\p{N}]+[\r\n]*|[{W}]*[\r\n]+|[{W}]+(?![^{W}])|[{W}]+)";
// SmolLM2's Digits(individual_digits) step: every numeric character (Rust's char::is_numeric,
// i.e. categories Nd, Nl, No) becomes its own piece before the GPT-2 regex runs.
constexpr std::string_view kEachDigit = R"(\p{N})";

}  // namespace

struct PreTokenizer::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

PreTokenizer::~PreTokenizer() = default;

StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(std::string_view name) {
  std::vector<std::string_view> patterns;
  if (name == "default" || name == "gpt2" || name.empty()) {
    patterns = {kGpt2};
  } else if (name == "smollm") {
    patterns = {kEachDigit, kGpt2};
  } else if (name == "llama-bpe" || name == "llama3") {
    patterns = {kLlama3};
  } else if (name == "qwen2") {
    patterns = {kQwen2};
  } else {
    return UnimplementedError("tokenizer.ggml.pre '" + std::string(name) +
                              "' is not supported (supported: default, gpt2, smollm, llama-bpe, "
                              "llama3, qwen2)");
  }
  std::vector<std::string> expanded;
  for (std::string_view p : patterns) expanded.push_back(Expand(p));
  return FromPatterns(expanded);
}

StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromPatterns(
    const std::vector<std::string>& patterns) {
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
  for (const std::string& pattern : patterns) {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    auto regex = std::make_unique<Regex>();
    regex->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                PCRE2_UTF | PCRE2_UCP, &error, &error_offset, nullptr);
    if (regex->code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      return InvalidArgumentError("pre-tokenizer regex '" + pattern + "' does not compile at " +
                                  std::to_string(error_offset) + ": " +
                                  reinterpret_cast<const char*>(message));
    }
    // JIT is an optimisation: without it pcre2_match interprets the same pattern.
    (void)pcre2_jit_compile(regex->code, PCRE2_JIT_COMPLETE);
    pre->regexes_.push_back(std::move(regex));
  }
  return pre;
}

void PreTokenizer::Split(std::string_view text, std::vector<std::string_view>* pieces) const {
  std::vector<std::string_view> current{text};
  std::vector<std::string_view> next;
  for (size_t r = 0; r < regexes_.size(); ++r) {
    const pcre2_code* code = regexes_[r]->code;
    pcre2_match_data* match = pcre2_match_data_create_from_pattern(code, nullptr);
    CHECK(match != nullptr) << "out of memory for PCRE2 match data";
    next.clear();
    for (std::string_view piece : current) {
      auto subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t gap_start = 0;
      size_t offset = 0;
      while (offset < piece.size()) {
        int rc = pcre2_match(code, subject, piece.size(), offset, PCRE2_NO_UTF_CHECK, match,
                             nullptr);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
          // The JIT's fixed stack can run out where the interpreter (heap-backed) does not.
          rc = pcre2_match(code, subject, piece.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                           match, nullptr);
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        // Any other error is a resource limit; the rest of the piece is kept whole, so no text
        // is lost, only split less finely.
        if (rc < 0) break;
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
        size_t start = ov[0];
        size_t end = ov[1];
        if (start > gap_start) next.push_back(piece.substr(gap_start, start - gap_start));
        if (end > start) {
          next.push_back(piece.substr(start, end - start));
          offset = end;
        } else {
          // An empty match: step over one whole character so the loop advances.
          offset = start + 1;
          while (offset < piece.size() && (static_cast<uint8_t>(piece[offset]) & 0xC0) == 0x80) {
            ++offset;
          }
          if (start > gap_start) gap_start = start;
          continue;
        }
        gap_start = end;
      }
      if (gap_start < piece.size()) next.push_back(piece.substr(gap_start));
    }
    pcre2_match_data_free(match);
    current.swap(next);
  }
  pieces->insert(pieces->end(), current.begin(), current.end());
}

}  // namespace llmasos::tokenizer
