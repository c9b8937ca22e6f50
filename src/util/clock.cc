#include "util/clock.h"

#include "util/logging.h"

namespace llmasos {
namespace {

class SteadyClock : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
};

}  // namespace

const Clock* RealClock() {
  static const SteadyClock* clock = new SteadyClock();
  return clock;
}

void SimulatedClock::Advance(Duration d) {
  CHECK(d >= Duration::zero()) << "SimulatedClock::Advance with a negative duration";
  now_ += d;
}

}  // namespace llmasos
