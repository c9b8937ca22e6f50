// From a request body to what the routes need: the one parser of request bodies
// (api/request.h, shared with `llmasos batch`) validates; these functions map its structs to
// GenerationRequest and the API's own options. An invalid body gives the ApiError (400,
// naming the field).
#ifndef LLMASOS_API_REQUEST_BRIDGE_H_
#define LLMASOS_API_REQUEST_BRIDGE_H_

#include <string_view>
#include <variant>

#include "api/errors.h"
#include "api/generation.h"

namespace llmasos::api {

struct OpenAiGeneration {
  GenerationRequest gen;
  bool include_usage = false;  // stream_options.include_usage
};

struct OllamaGeneration {
  GenerationRequest gen;
  bool load_only = false;  // no prompt / no messages: load (or, keep_alive 0, unload) only
};

std::variant<OpenAiGeneration, ApiError> BridgeChatCompletion(std::string_view body);
std::variant<OpenAiGeneration, ApiError> BridgeCompletion(std::string_view body);
std::variant<OllamaGeneration, ApiError> BridgeOllamaGenerate(std::string_view body);
std::variant<OllamaGeneration, ApiError> BridgeOllamaChat(std::string_view body);

}  // namespace llmasos::api

#endif  // LLMASOS_API_REQUEST_BRIDGE_H_
