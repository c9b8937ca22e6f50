#include "kernel/event_bus.h"

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace llmasos::kernel {
namespace {

Event ProcessEvent(EventKind kind, ProcessId pid) {
  Event e;
  e.kind = kind;
  e.pid = pid;
  e.instance = 1;
  e.tenant = "acme";
  return e;
}

std::vector<Event> ReadAll(EventSubscription& sub) {
  std::vector<Event> out;
  while (auto e = sub.Next()) out.push_back(*e);
  return out;
}

TEST(EventBusTest, DeliversEventsInOrderWithSequenceNumbersAndTime) {
  EventBus bus;
  auto sub = bus.Subscribe(16, kAllEventKinds, nullptr);
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 7));
  bus.Publish(ProcessEvent(EventKind::kFinished, 7));
  std::vector<Event> got = ReadAll(*sub);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].kind, EventKind::kAdmitted);
  EXPECT_EQ(got[1].kind, EventKind::kFinished);
  EXPECT_EQ(got[0].seq + 1, got[1].seq);
  EXPECT_EQ(got[0].pid, 7u);
  EXPECT_EQ(got[0].tenant, "acme");
  EXPECT_LE(got[0].time, got[1].time);
  EXPECT_GT(got[0].time.time_since_epoch().count(), 0);
  EXPECT_FALSE(sub->Next().has_value());
}

TEST(EventBusTest, AFullQueueLosesEventsAndMarksTheGapWithTheirCount) {
  EventBus bus;
  auto slow = bus.Subscribe(3, kAllEventKinds, nullptr);
  auto fast = bus.Subscribe(100, kAllEventKinds, nullptr);
  for (ProcessId pid = 1; pid <= 10; ++pid) bus.Publish(ProcessEvent(EventKind::kAdmitted, pid));
  // The slow one keeps the first three, then one marker for the seven it lost.
  std::vector<Event> got = ReadAll(*slow);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].pid, 1u);
  EXPECT_EQ(got[2].pid, 3u);
  EXPECT_EQ(got[3].kind, EventKind::kLost);
  EXPECT_EQ(got[3].count, 7u);
  EXPECT_EQ(slow->num_lost(), 7u);
  // The other subscriber lost nothing.
  EXPECT_EQ(ReadAll(*fast).size(), 10u);
  EXPECT_EQ(fast->num_lost(), 0u);
  // After the marker, events are queued again, in order.
  bus.Publish(ProcessEvent(EventKind::kKilled, 11));
  got = ReadAll(*slow);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].pid, 11u);
}

TEST(EventBusTest, LosingLastsUntilTheQueueIsReadEmptySoTheMarkerSitsAtTheGap) {
  EventBus bus;
  auto sub = bus.Subscribe(2, kAllEventKinds, nullptr);
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 1));
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 2));
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 3));  // lost: full
  ASSERT_EQ(sub->Next()->pid, 1u);                     // room for one again...
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 4));  // ...but still lost: 3 is missing before it
  std::vector<Event> got = ReadAll(*sub);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].pid, 2u);
  EXPECT_EQ(got[1].kind, EventKind::kLost);
  EXPECT_EQ(got[1].count, 2u);
}

TEST(EventBusTest, FiltersByKindButAlwaysMarksLoss) {
  EventBus bus;
  auto sub = bus.Subscribe(1, EventKindBit(EventKind::kKilled) | EventKindBit(EventKind::kLoaded), nullptr);
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 1));  // not asked for: neither queued nor lost
  bus.Publish(ProcessEvent(EventKind::kKilled, 1));
  bus.Publish(ProcessEvent(EventKind::kKilled, 2));  // lost
  std::vector<Event> got = ReadAll(*sub);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].kind, EventKind::kKilled);
  EXPECT_EQ(got[0].pid, 1u);
  EXPECT_EQ(got[1].kind, EventKind::kLost);
  EXPECT_EQ(got[1].count, 1u);
}

TEST(EventBusTest, NotifiesWhenAnEventLandsInAnEmptyQueue) {
  EventBus bus;
  int calls = 0;
  auto sub = bus.Subscribe(8, kAllEventKinds, [&] { ++calls; });
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 1));
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 2));  // the consumer has not read: no second call
  EXPECT_EQ(calls, 1);
  ReadAll(*sub);
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 3));
  EXPECT_EQ(calls, 2);
}

TEST(EventBusTest, ADroppedSubscriberIsRemoved) {
  EventBus bus;
  auto a = bus.Subscribe(4, kAllEventKinds, nullptr);
  auto b = bus.Subscribe(4, kAllEventKinds, nullptr);
  EXPECT_EQ(bus.NumSubscribers(), 2u);
  b.reset();
  EXPECT_EQ(bus.NumSubscribers(), 1u);
  bus.Publish(ProcessEvent(EventKind::kAdmitted, 1));
  EXPECT_EQ(ReadAll(*a).size(), 1u);
}

TEST(EventBusTest, PublishersNeverWaitForAConsumerThatDoesNotRead) {
  EventBus bus;
  auto sub = bus.Subscribe(64, kAllEventKinds, nullptr);
  constexpr int kThreads = 4, kEach = 10000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&bus] {
      for (int i = 0; i < kEach; ++i) bus.Publish(ProcessEvent(EventKind::kAdmitted, 1));
    });
  }
  for (auto& t : threads) t.join();
  std::vector<Event> got = ReadAll(*sub);
  ASSERT_EQ(got.size(), 65u);  // bounded: the queue, then the marker
  EXPECT_EQ(got.back().kind, EventKind::kLost);
  EXPECT_EQ(got.back().count, uint64_t{kThreads * kEach} - 64);
  for (size_t i = 1; i + 1 < got.size(); ++i) EXPECT_LT(got[i - 1].seq, got[i].seq);
}

TEST(EventBusTest, ParsesKindNames) {
  for (size_t i = 0; i < kNumEventKinds; ++i) {
    const auto kind = static_cast<EventKind>(i);
    EXPECT_EQ(*ParseEventKind(EventKindName(kind)), kind);
  }
  auto bad = ParseEventKind("exploded");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("exploded"), std::string::npos);
  EXPECT_NE(bad.status().message().find("admitted"), std::string::npos);
}

}  // namespace
}  // namespace llmasos::kernel
