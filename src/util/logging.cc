#include "util/logging.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace llmasos {
namespace {

LogLevel LevelFromEnv() {
  const char* env = std::getenv("LLMASOS_LOG");
  if (env == nullptr) return LogLevel::kWarning;
  if (std::strcmp(env, "debug") == 0) return LogLevel::kDebug;
  if (std::strcmp(env, "info") == 0) return LogLevel::kInfo;
  if (std::strcmp(env, "error") == 0) return LogLevel::kError;
  return LogLevel::kWarning;
}

std::atomic<int>& MinLevelStorage() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnv())};
  return level;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "D";
    case LogLevel::kInfo: return "I";
    case LogLevel::kWarning: return "W";
    case LogLevel::kError: return "E";
  }
  return "?";
}

}  // namespace

LogLevel MinLogLevel() { return static_cast<LogLevel>(MinLevelStorage().load(std::memory_order_relaxed)); }
void SetMinLogLevel(LogLevel level) { MinLevelStorage().store(static_cast<int>(level)); }

namespace internal {

LogMessage::LogMessage(const char* file, int line, LogLevel level, bool fatal)
    : file_(file), line_(line), level_(level), fatal_(fatal) {}

LogMessage::~LogMessage() {
  const char* base = std::strrchr(file_, '/');
  std::string text = stream_.str();
  std::fprintf(stderr, "%s %s:%d] %s\n", LevelName(level_), base ? base + 1 : file_, line_, text.c_str());
  if (fatal_) {
    std::fflush(stderr);
    std::abort();
  }
}

}  // namespace internal
}  // namespace llmasos
