#include <algorithm>
#include <limits>

#include "api/request.h"

namespace llmasos::api {
namespace {

// InvalidArgument "<path>: <what>", with the path in *error_param (as the parser does).
Status Fail(std::string* error_param, const std::string& path, std::string_view what) {
  if (error_param != nullptr) *error_param = path;
  return InvalidArgumentError(path + ": " + std::string(what));
}

}  // namespace

void ApplySamplingFields(const ParsedGeneration& r, size_t context, sampling::SamplingParams* params) {
  sampling::SamplingParams& s = *params;
  if (r.temperature) s.temperature = *r.temperature;
  if (r.top_k) s.top_k = *r.top_k;
  if (r.top_p) {
    if (*r.top_p > 0) {
      s.top_p = *r.top_p;
    } else {  // nucleus of zero mass: only the most likely token
      s.top_p = 1.0f;
      s.top_k = 1;
    }
  }
  if (r.min_p) s.min_p = *r.min_p;
  if (r.repeat_penalty) s.repeat_penalty = *r.repeat_penalty;
  if (r.repeat_last_n) {
    s.penalty_last_n = *r.repeat_last_n < 0 ? static_cast<int32_t>(context) : *r.repeat_last_n;
  }
  // OpenAI counts generated tokens only and subtracts; llama.cpp's window includes the prompt.
  s.penalty_mode = r.penalty_mode;
  if (r.presence_penalty) s.presence_penalty = *r.presence_penalty;
  if (r.frequency_penalty) s.frequency_penalty = *r.frequency_penalty;
  // Without one, the default's seed; none there either: the kernel draws a fresh one.
  if (r.seed) s.seed = r.seed;
}

StatusOr<kernel::ProcessSpec> ToProcessSpec(const ParsedGeneration& r, std::vector<sampling::TokenId> prompt,
                                            const SpecDefaults& d, std::string* error_param) {
  CHECK(d.context_tokens > 0 && d.vocab_size > 0) << "SpecDefaults needs the context and vocabulary sizes";
  CHECK(!r.load_only) << "a load-only request has no process";
  if (error_param != nullptr) error_param->clear();
  const bool ollama = IsOllama(r.endpoint);
  const std::string prompt_field = r.use_chat_template ? "messages" : "prompt";
  if (prompt.empty()) return Fail(error_param, prompt_field, "encodes to no tokens");
  const size_t context = std::min<size_t>(d.context_tokens, std::numeric_limits<int32_t>::max());
  if (prompt.size() >= context) {
    return Fail(error_param, prompt_field, "is " + std::to_string(prompt.size()) + " tokens; the context holds " +
                                      std::to_string(context) + ", leaving no room to generate");
  }
  const size_t room = context - prompt.size();
  kernel::ProcessSpec spec;
  if (r.max_tokens) {
    if (static_cast<size_t>(*r.max_tokens) > room) {
      return Fail(error_param, ollama ? "options.num_predict" : "max_tokens",
                      "asks for " + std::to_string(*r.max_tokens) + " tokens, but the prompt's " +
                          std::to_string(prompt.size()) + " tokens leave room for " + std::to_string(room) +
                          " in the context of " + std::to_string(context));
    }
    spec.limits.max_tokens = *r.max_tokens;
  } else {
    const size_t cap = d.max_tokens > 0 ? std::min<size_t>(d.max_tokens, room) : room;
    spec.limits.max_tokens = static_cast<int32_t>(cap);
  }

  sampling::SamplingParams& s = spec.sampling;
  s = d.sampling;
  ApplySamplingFields(r, context, &s);

  for (const auto& [token, bias] : r.logit_bias) {
    if (static_cast<size_t>(token) >= d.vocab_size) {
      return Fail(error_param, "logit_bias", "token " + std::to_string(token) + " is outside the vocabulary (" +
                                        std::to_string(d.vocab_size) + " tokens)");
    }
  }
  s.logit_bias = r.logit_bias;
  // The kernel delivers them (StreamEvent::logprobs); the responses carry them.
  s.logprobs = r.logprobs;
  s.top_logprobs = r.top_logprobs;

  if (Status valid = sampling::ValidateSamplingParams(s); !valid.ok()) {
    return Fail(error_param, "sampling", valid.message());  // a default the caller passed is out of range
  }
  spec.priority = r.priority.value_or(0);
  spec.tenant = r.tenant.value_or(d.tenant);
  spec.prompt = std::move(prompt);
  return spec;
}

}  // namespace llmasos::api
