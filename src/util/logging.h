// CHECK / DCHECK for broken invariants (bugs), and a minimal leveled log to stderr.
// A failed CHECK prints file:line and the streamed message, then aborts.
#ifndef LLMASOS_UTIL_LOGGING_H_
#define LLMASOS_UTIL_LOGGING_H_

#include <sstream>

namespace llmasos {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below this level are dropped. Default kWarning; LLMASOS_LOG=debug|info|warning|error.
LogLevel MinLogLevel();
void SetMinLogLevel(LogLevel level);

namespace internal {

class LogMessage {
 public:
  LogMessage(const char* file, int line, LogLevel level, bool fatal);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  const char* file_;
  int line_;
  LogLevel level_;
  bool fatal_;
  std::ostringstream stream_;
};

// Lets `CHECK(x) << ...` compile to nothing-but-a-branch when x holds.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace internal
}  // namespace llmasos

#define LLMASOS_LOG_ENABLED(level) (::llmasos::LogLevel::level >= ::llmasos::MinLogLevel())
#define LOG(level)                            \
  !LLMASOS_LOG_ENABLED(level)                 \
      ? (void)0                               \
      : ::llmasos::internal::Voidify() &      \
            ::llmasos::internal::LogMessage(__FILE__, __LINE__, ::llmasos::LogLevel::level, false).stream()

#define CHECK(cond)                      \
  (cond) ? (void)0                       \
         : ::llmasos::internal::Voidify() & \
               ::llmasos::internal::LogMessage(__FILE__, __LINE__, ::llmasos::LogLevel::kError, true).stream() \
                   << "CHECK failed: " #cond " "

#define CHECK_EQ(a, b) CHECK((a) == (b))
#define CHECK_NE(a, b) CHECK((a) != (b))
#define CHECK_LT(a, b) CHECK((a) < (b))
#define CHECK_LE(a, b) CHECK((a) <= (b))
#define CHECK_GT(a, b) CHECK((a) > (b))
#define CHECK_GE(a, b) CHECK((a) >= (b))

#ifdef NDEBUG
#define DCHECK(cond) \
  while (false) CHECK(cond)
#else
#define DCHECK(cond) CHECK(cond)
#endif
#define DCHECK_LT(a, b) DCHECK((a) < (b))
#define DCHECK_LE(a, b) DCHECK((a) <= (b))
#define DCHECK_EQ(a, b) DCHECK((a) == (b))

#endif  // LLMASOS_UTIL_LOGGING_H_
