#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>
#include <thread>

#include "core/event_loop.hpp"
#include "core/names.hpp"
#include "core/send_window.hpp"
#include "core/hex.hpp"
#include "core/time.hpp"

using namespace gantry;

TEST(Names, SafeNames) {
  EXPECT_TRUE(IsSafeName("web"));
  EXPECT_TRUE(IsSafeName("a0.b_c-d"));
  EXPECT_FALSE(IsSafeName(""));
  EXPECT_FALSE(IsSafeName(".."));
  EXPECT_FALSE(IsSafeName("a/b"));
  EXPECT_FALSE(IsSafeName("Web"));
  EXPECT_FALSE(IsSafeName("-x"));
  EXPECT_FALSE(IsSafeName(std::string(64, 'a')));
  EXPECT_TRUE(IsSafeName(std::string(63, 'a')));
}

TEST(Names, SafeKeys) {
  EXPECT_TRUE(IsSafeKey("web/run.json"));
  EXPECT_FALSE(IsSafeKey("/etc/passwd"));
  EXPECT_FALSE(IsSafeKey("web/../x"));
  EXPECT_FALSE(IsSafeKey("web\\x"));
  EXPECT_FALSE(IsSafeKey(std::string("a\0b", 3)));
  EXPECT_FALSE(IsSafeKey("a//b"));
  EXPECT_FALSE(IsSafeKey("web/a..b")) << "docs/revision-format.md: no key contains \"..\"";
  EXPECT_FALSE(IsSafeKey("web/x.."));
  EXPECT_TRUE(IsSafeKey("web/.hidden"));
}

TEST(Hex, BlockIds) {
  EXPECT_TRUE(IsBlockId(std::string(64, 'a')));
  EXPECT_FALSE(IsBlockId(std::string(64, 'A')));
  EXPECT_FALSE(IsBlockId(std::string(63, 'a')));
  const std::uint8_t b[] = {0x00, 0xff, 0x1a};
  EXPECT_EQ(ToHex(b, 3), "00ff1a");
}

TEST(Time, Rfc3339RoundTrip) {
  EXPECT_EQ(Rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(ParseRfc3339("2027-01-31T00:00:00Z"), 1801353600);
  EXPECT_EQ(ParseRfc3339("2027-01-31T01:00:00+01:00"), 1801353600);
  EXPECT_EQ(ParseRfc3339("2027-01-31T00:00:00.123Z"), 1801353600);
  EXPECT_FALSE(ParseRfc3339("2027-01-31"));
  EXPECT_FALSE(ParseRfc3339("2027-01-31T00:00:00"));
  EXPECT_FALSE(ParseRfc3339("2027-01-31T00:00:00Zjunk"));
}

// Offsets and fields shorter than their format: refused, never read past the end.
TEST(Time, Rfc3339RefusesShortFields) {
  for (const char* bad : {"2027-01-31T00:00:00+1:5", "2027-01-31T00:00:00+01:5", "2027-01-31T00:00:00+01",
                          "2027-01-31T00:00:00+", "2027-01-31T00:00:00-1:05", "2027-01-31T00:00:00.",
                          "2027-01-31T00:00:0Z", "2027-1-31T00:00:00Z", "2027-01-31T00:00:00+01:000",
                          "2027-01-31T00:00:00+24:00", "2027-13-31T00:00:00Z", "", "2"})
    EXPECT_FALSE(ParseRfc3339(bad)) << bad;
  // The same strings kept alive only as a view of a longer buffer: the parser stops at the view.
  std::string buffer = "2027-01-31T00:00:00+01:00";
  EXPECT_FALSE(ParseRfc3339(std::string_view(buffer).substr(0, 23)));
  EXPECT_EQ(ParseRfc3339("2027-01-31t00:30:00-00:30"), 1801353600 + 3600);
}

TEST(EventLoop, PostFromOtherThreadsAndTimersRunInOrder) {
  EventLoop loop;
  std::atomic<int> n{0};
  std::vector<int> order;
  std::thread t([&] {
    for (int i = 0; i < 100; ++i) loop.Post([&] { ++n; });
  });
  loop.After(std::chrono::milliseconds(20), [&] { order.push_back(2); });
  loop.After(std::chrono::milliseconds(5), [&] { order.push_back(1); });
  auto cancelled = loop.After(std::chrono::milliseconds(1), [&] { order.push_back(99); });
  loop.Cancel(cancelled);
  t.join();
  EXPECT_TRUE(loop.RunUntil([&] { return n == 100 && order.size() == 2; }, std::chrono::seconds(5)));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

// Command intake jumps a backlog: urgent tasks run before ordinary tasks and due timers that
// were already waiting, in the order they were posted.
TEST(EventLoop, UrgentTasksRunBeforeTheBacklogInTheirOwnOrder) {
  EventLoop loop;
  std::vector<std::string> order;
  loop.Post([&] { order.push_back("task1"); });
  loop.After(std::chrono::milliseconds(0), [&] { order.push_back("timer"); });
  loop.Post([&] { order.push_back("task2"); });
  loop.PostUrgent([&] { order.push_back("urgent1"); });
  loop.PostUrgent([&] { order.push_back("urgent2"); });
  EXPECT_EQ(loop.ReadyTasks(), 4u);
  EXPECT_TRUE(loop.RunUntil([&] { return order.size() == 5; }, std::chrono::seconds(5)));
  EXPECT_EQ(order, (std::vector<std::string>{"urgent1", "urgent2", "timer", "task1", "task2"}));
}

// The relay's bound on unsent frames: a full window makes the producer wait for a release, and
// gives up after its patience; a reset (connection lost) frees every place.
TEST(SendWindow, FullWindowWaitsForARelease) {
  SendWindow w(2);
  EXPECT_TRUE(w.Acquire(std::chrono::milliseconds(0)));
  EXPECT_TRUE(w.Acquire(std::chrono::milliseconds(0)));
  EXPECT_FALSE(w.Acquire(std::chrono::milliseconds(20)));
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    w.Release();
  });
  EXPECT_TRUE(w.Acquire(std::chrono::seconds(5)));
  releaser.join();
  EXPECT_EQ(w.Used(), 2u);
  w.Reset();
  EXPECT_EQ(w.Used(), 0u);
  w.Release();  // a late completion after the reset does not go below zero
  EXPECT_EQ(w.Used(), 0u);
}
