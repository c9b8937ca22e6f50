#include "api/request_bridge.h"

namespace llmasos::api {
namespace {

ApiError NotBuilt() {
  return {.http_status = 501, .message = "request parsing is not built yet (api/request.h)"};
}

}  // namespace

std::variant<OpenAiGeneration, ApiError> BridgeChatCompletion(std::string_view) { return NotBuilt(); }
std::variant<OpenAiGeneration, ApiError> BridgeCompletion(std::string_view) { return NotBuilt(); }
std::variant<OllamaGeneration, ApiError> BridgeOllamaGenerate(std::string_view) { return NotBuilt(); }
std::variant<OllamaGeneration, ApiError> BridgeOllamaChat(std::string_view) { return NotBuilt(); }

}  // namespace llmasos::api
