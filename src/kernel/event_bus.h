// EventBus: the kernel log of a daemon. Engine threads publish what happens to processes
// (admitted, preempted, swapped out and in, finished, killed, reniced) and the model manager
// what happens to instances (loaded, unloaded); each subscriber (GET /os/events) reads them
// from a bounded queue of its own.
//
// Invariants:
//   - Publish never blocks on a subscriber: it takes the bus's mutex and each subscriber's
//     for a push (no I/O, no callback), and calls the notifiers after letting them go.
//   - A subscriber's queue holds at most `capacity` events. When an event arrives at a full
//     queue the subscriber starts losing: that event and every one after it are counted, not
//     queued, until the consumer has read the queue empty; its next read is then one kLost
//     event carrying the count, and events are queued again from the next publish on. So a
//     consumer sees every event it gets in publish order, with the gap marked where it was.
//   - The bus holds subscriptions weakly: dropping the last shared_ptr to one unsubscribes it
//     (Publish forgets it; NumSubscribers counts only live ones).
//   - Events get a sequence number (1, 2, ...) in publish order from the bus, counted before
//     the kind filters, so gaps in a filtered stream are expected; a kLost event has none (0).
//
// Thread safety: every method of EventBus and EventSubscription is thread-safe; a
// subscription's Next is meant for one consumer at a time.
#ifndef LLMASOS_KERNEL_EVENT_BUS_H_
#define LLMASOS_KERNEL_EVENT_BUS_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/process.h"
#include "util/mutex.h"
#include "util/status.h"
#include "util/thread_annotations.h"

namespace llmasos::kernel {

enum class EventKind : uint8_t {
  kAdmitted,   // the scheduler gave the process memory and a batch slot (also on a resume)
  kPreempted,  // evicted; `reason` is the mode: "swap" or "recompute"
  kSwapped,    // its KV went to swap (`direction` "out") or came back ("in")
  kFinished,   // ended other than killed; `reason` is kernel::EndReasonName
  kKilled,     // ended by an operator's kill (EndReason::kKilled)
  kReniced,    // a new priority took effect (`priority`)
  kLoaded,     // a model instance is ready
  kUnloaded,   // a model instance is gone (its processes ended before)
  kLost,       // this subscriber lost `count` events (not published; made per subscriber)
};
inline constexpr size_t kNumEventKinds = 9;

// "admitted", "preempted", "swapped", "finished", "killed", "reniced", "loaded", "unloaded",
// "lost".
std::string_view EventKindName(EventKind kind);
// The kind named `name` (as EventKindName writes it); InvalidArgument naming it otherwise.
StatusOr<EventKind> ParseEventKind(std::string_view name);

struct Event {
  EventKind kind = EventKind::kAdmitted;
  uint64_t seq = 0;                                // set by Publish
  std::chrono::system_clock::time_point time{};    // set by Publish (wall clock)
  uint64_t instance = 0;  // the model instance (ModelManager's id); 0: none
  ProcessId pid = 0;      // process events; 0 for model events
  std::string model;      // "name@version", when known
  std::string tenant;     // process events
  std::string reason;     // kFinished/kKilled: the end reason; kPreempted: the mode
  std::string direction;  // kSwapped: "out" or "in"
  std::optional<int32_t> priority;  // kReniced
  uint64_t count = 0;     // kLost: events this subscriber did not get
};

// A set of kinds: bit i is EventKind(i). kLost is always delivered, whatever the mask says.
using EventKindMask = uint32_t;
inline constexpr EventKindMask kAllEventKinds = (EventKindMask{1} << kNumEventKinds) - 1;
inline constexpr EventKindMask EventKindBit(EventKind kind) { return EventKindMask{1} << static_cast<int>(kind); }

class EventBus;

// One subscriber's end. Create with EventBus::Subscribe; drop it to unsubscribe.
class EventSubscription {
 public:
  // The next event, or nullopt when none is queued (never waits).
  std::optional<Event> Next();
  // Events this subscriber has lost so far, in total.
  uint64_t num_lost() const;

 private:
  friend class EventBus;
  EventSubscription(size_t capacity, EventKindMask kinds, std::function<void()> notify)
      : capacity_(capacity), kinds_(kinds), notify_(std::move(notify)) {}
  // Queues `e` (or counts it lost); true when the consumer should be woken (the queue was
  // empty, so the consumer may be waiting for the notifier).
  bool Push(const Event& e);

  const size_t capacity_;
  const EventKindMask kinds_;
  const std::function<void()> notify_;  // fixed at creation
  mutable Mutex mu_;
  std::deque<Event> queue_ GUARDED_BY(mu_);
  uint64_t losing_ GUARDED_BY(mu_) = 0;      // lost since the queue overflowed, not yet reported
  uint64_t total_lost_ GUARDED_BY(mu_) = 0;
};

class EventBus {
 public:
  EventBus() = default;
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  // A subscriber of the kinds in `kinds`, with a queue of `capacity` (>= 1) events. `notify`
  // (may be empty) is called by the publishing thread, with no lock held, when an event lands
  // in an empty queue; it must not block or publish (post a handler to an executor). On each
  // call, read until Next() is nullopt. It may be called while the subscription is being
  // dropped, so it should hold what it uses weakly.
  std::shared_ptr<EventSubscription> Subscribe(size_t capacity, EventKindMask kinds,
                                               std::function<void()> notify);

  // Stamps `e` with the next sequence number and the time and hands it to every live
  // subscriber whose kinds include it. Never waits for a consumer.
  void Publish(Event e) EXCLUDES(mu_);

  // Live subscribers (forgets the dropped ones).
  size_t NumSubscribers() EXCLUDES(mu_);

 private:
  Mutex mu_;
  uint64_t last_seq_ GUARDED_BY(mu_) = 0;
  std::vector<std::weak_ptr<EventSubscription>> subscribers_ GUARDED_BY(mu_);
};

}  // namespace llmasos::kernel

#endif  // LLMASOS_KERNEL_EVENT_BUS_H_
