#include "kernel/event_bus.h"

#include <algorithm>
#include <array>

namespace llmasos::kernel {

namespace {

constexpr std::array<std::string_view, kNumEventKinds> kKindNames = {
    "admitted", "preempted", "swapped", "finished", "killed", "reniced", "loaded", "unloaded", "lost"};

}  // namespace

std::string_view EventKindName(EventKind kind) { return kKindNames[static_cast<size_t>(kind)]; }

StatusOr<EventKind> ParseEventKind(std::string_view name) {
  for (size_t i = 0; i < kKindNames.size(); ++i) {
    if (kKindNames[i] == name) return static_cast<EventKind>(i);
  }
  std::string known;
  for (std::string_view k : kKindNames) known += (known.empty() ? "" : ", ") + std::string(k);
  return InvalidArgumentError("unknown event kind \"" + std::string(name.substr(0, 64)) + "\" (known: " + known + ")");
}

std::optional<Event> EventSubscription::Next() {
  MutexLock lock(mu_);
  if (!queue_.empty()) {
    Event e = std::move(queue_.front());
    queue_.pop_front();
    return e;
  }
  if (losing_ == 0) return std::nullopt;
  Event lost;
  lost.kind = EventKind::kLost;
  lost.time = std::chrono::system_clock::now();
  lost.count = losing_;
  losing_ = 0;  // the queue is empty: the next event is queued again
  return lost;
}

uint64_t EventSubscription::num_lost() const {
  MutexLock lock(mu_);
  return total_lost_;
}

bool EventSubscription::Push(const Event& e) {
  if ((kinds_ & EventKindBit(e.kind)) == 0) return false;
  MutexLock lock(mu_);
  // Once losing, keep losing until the consumer has read the queue empty (and taken the lost
  // marker), so the marker sits exactly where the gap is.
  if (losing_ > 0 || queue_.size() >= capacity_) {
    ++losing_;
    ++total_lost_;
    return false;
  }
  queue_.push_back(e);
  return queue_.size() == 1;
}

std::shared_ptr<EventSubscription> EventBus::Subscribe(size_t capacity, EventKindMask kinds,
                                                       std::function<void()> notify) {
  std::shared_ptr<EventSubscription> sub(
      new EventSubscription(std::max<size_t>(capacity, 1), kinds, std::move(notify)));
  MutexLock lock(mu_);
  subscribers_.push_back(sub);
  return sub;
}

void EventBus::Publish(Event e) {
  // Held strongly only while publishing, so a notifier never runs on a destroyed subscription.
  std::vector<std::shared_ptr<EventSubscription>> to_notify;
  {
    MutexLock lock(mu_);
    e.seq = ++last_seq_;
    e.time = std::chrono::system_clock::now();
    size_t kept = 0;
    for (size_t i = 0; i < subscribers_.size(); ++i) {
      std::shared_ptr<EventSubscription> sub = subscribers_[i].lock();
      if (sub == nullptr) continue;  // dropped: forget it
      if (sub->Push(e) && sub->notify_) to_notify.push_back(sub);
      if (kept != i) subscribers_[kept] = std::move(subscribers_[i]);
      ++kept;
    }
    subscribers_.resize(kept);
  }
  for (const auto& sub : to_notify) sub->notify_();
}

size_t EventBus::NumSubscribers() {
  MutexLock lock(mu_);
  std::erase_if(subscribers_, [](const std::weak_ptr<EventSubscription>& w) { return w.expired(); });
  return subscribers_.size();
}

}  // namespace llmasos::kernel
