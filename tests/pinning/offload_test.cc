// offload(): results, exceptions, the thread bound, and that the carrier
// keeps serving other fibers (no pinning) while calls run on the pool.
#include "bobbin/offload.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/runtime.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/threads.h"

namespace {

using namespace std::chrono_literals;

TEST(OffloadTest, ReturnsResultsAndRethrows) {
  auto rt = bobbin::runtime::start({.carriers = 1}).value();
  rt->spawn([] {
    EXPECT_EQ(bobbin::offload([] { return 6 * 7; }), 42);
    std::string s = bobbin::offload([] { return std::string("from the pool"); });
    EXPECT_EQ(s, "from the pool");
    EXPECT_THROW(bobbin::offload([]() -> int { throw std::out_of_range("nope"); }), std::out_of_range);
    int side = 0;
    bobbin::offload([&] { side = 1; });
    EXPECT_EQ(side, 1);
  }).join();
  EXPECT_EQ(rt->stats().offloaded_calls, 4u);
}

using bobbin::testing::threads_by_tid;

TEST(OffloadTest, EveryThreadTheRuntimeStartsIsNamedForWhatItIs) {
  // The pool's threads, started from a carrier, used to show up in top -H
  // and perf as that carrier (bobbin-c1): a thread inherits its creator's
  // name. Every thread a runtime starts says what it is.
  const auto before = threads_by_tid();
  auto rt = bobbin::runtime::start({.carriers = 2, .max_spare_carriers = 1}).value();
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 4; i++) {
    fs.push_back(rt->spawn([] { bobbin::offload([] { std::this_thread::sleep_for(20ms); }); }));
  }
  for (auto& f : fs) f.join();
  std::map<std::string, int> seen;
  for (const auto& [tid, name] : threads_by_tid()) {
    if (before.count(tid) == 0) seen[name]++;
  }
  const std::set<std::string> allowed = {"bobbin-c0",   "bobbin-c1",   "bobbin-spare0", "bobbin-monitor",
                                         "bobbin-pool", "bobbin-dump"};
  std::string all;
  for (const auto& [name, n] : seen) all += name + " x" + std::to_string(n) + "; ";
  for (const auto& [name, n] : seen) EXPECT_TRUE(allowed.count(name) == 1) << name << " (threads: " << all << ")";
  EXPECT_EQ(seen["bobbin-c0"], 1) << all;
  EXPECT_EQ(seen["bobbin-c1"], 1) << all;
  EXPECT_EQ(seen["bobbin-spare0"], 1) << all;
  EXPECT_EQ(seen["bobbin-monitor"], 1) << all;
  EXPECT_GE(seen["bobbin-pool"], 1) << all;
}

TEST(OffloadTest, BoundsItsThreadsAndQueuesTheRest) {
  auto rt = bobbin::runtime::start({.carriers = 2, .offload_threads = 2}).value();
  std::atomic<int> running{0}, peak{0};
  std::vector<bobbin::fiber<>> fs;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 8; i++) {
    fs.push_back(rt->spawn([&] {
      bobbin::offload([&] {
        int now = ++running;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        std::this_thread::sleep_for(20ms);  // a blocking call: fine on the pool
        --running;
      });
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(peak.load(), 2);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 80ms);  // 8 calls, 2 at a time, 20 ms each
}

// Saturated: 2,000 fibers on 2 carriers offload a blocking call each to a
// pool of 8 threads. The calls queue (the queue is unbounded: its entries
// are parked fibers), at most 8 run at once, and every one completes with
// its own result.
TEST(OffloadTest, ASaturatedPoolQueuesEveryCallAndCompletesThemAll) {
  auto rt = bobbin::runtime::start({.carriers = 2, .offload_threads = 8}).value();
  constexpr int kCalls = 2000;
  std::atomic<int> running{0}, peak{0};
  // A call waits until the pool has been seen full once (or until a shared
  // deadline), so that reaching 8 at once does not depend on timing: under
  // ThreadSanitizer on 2 cores a 1 ms call could end before the 8th began
  // (peak 7, CI of 2026-12-02). A pool of fewer threads still fails, after
  // the deadline; a pool that ran more at once fails at once.
  const auto stop_waiting = std::chrono::steady_clock::now() + 10s;
  std::vector<bobbin::fiber<long>> fs;
  for (int i = 0; i < kCalls; i++) {
    fs.push_back(rt->spawn([&, i] {
      return bobbin::offload([&, i]() -> long {
        int now = ++running;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        while (peak.load() < 8 && std::chrono::steady_clock::now() < stop_waiting) {
          std::this_thread::sleep_for(100us);
        }
        std::this_thread::sleep_for(1ms);
        --running;
        return static_cast<long>(i) * i;
      });
    }));
  }
  long wrong = 0;
  for (int i = 0; i < kCalls; i++) {
    if (fs[static_cast<std::size_t>(i)].join() != static_cast<long>(i) * i) wrong++;
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_EQ(peak.load(), 8);
  EXPECT_EQ(running.load(), 0);
}

TEST(OffloadTest, CarrierKeepsServingWhileCallsBlockOnThePool) {
  auto rt = bobbin::runtime::start({.carriers = 1}).value();
  std::atomic<bool> done{false};
  auto ticker = rt->spawn([&] {
    int ticks = 0;
    while (!done.load()) {
      bobbin::this_fiber::sleep_for(1ms);
      ticks++;
    }
    return ticks;
  });
  rt->spawn([] { bobbin::offload([] { std::this_thread::sleep_for(100ms); }); }).join();
  done = true;
  EXPECT_GE(ticker.join(), 20);           // the only carrier was free all along
  EXPECT_EQ(rt->stats().pin_events, 0u);  // and nothing was pinned
}

TEST(OffloadTest, PlainThreadUsesTheRuntimePoolOrRunsInline) {
  auto rt = bobbin::runtime::start({.carriers = 1}).value();
  auto pool_thread = rt->offload([] { return std::this_thread::get_id(); });
  EXPECT_NE(pool_thread, std::this_thread::get_id());
  EXPECT_EQ(bobbin::offload([] { return std::this_thread::get_id(); }), std::this_thread::get_id());
}

}  // namespace
