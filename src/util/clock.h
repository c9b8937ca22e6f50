// LLMasOS's notion of time. Everything that ages, expires or is accounted (the kernel's
// scheduler, the model manager's keep_alive) reads a Clock, so tests drive it with
// SimulatedClock and never sleep.
//
// Thread safety: RealClock is safe from any thread. SimulatedClock is not synchronised; the
// test that owns it advances it between scheduler steps.
#ifndef LLMASOS_UTIL_CLOCK_H_
#define LLMASOS_UTIL_CLOCK_H_

#include <chrono>

namespace llmasos {

using Duration = std::chrono::steady_clock::duration;
using TimePoint = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// std::chrono::steady_clock. The returned object lives for the whole program.
const Clock* RealClock();

// Starts at the steady_clock epoch plus `start` and moves only when told to.
class SimulatedClock : public Clock {
 public:
  explicit SimulatedClock(Duration start = std::chrono::seconds(1000)) : now_(TimePoint() + start) {}
  TimePoint Now() const override { return now_; }
  // REQUIRES: d >= 0 (time never runs backwards).
  void Advance(Duration d);

 private:
  TimePoint now_;
};

// Seconds as a double, for cost and aging formulas.
inline double ToSeconds(Duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace llmasos

#endif  // LLMASOS_UTIL_CLOCK_H_
