// Spawn, join, detach, exceptions, yield, sleep, ids and names.
#include "bobbin/fiber.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/runtime.h"
#include "bobbin/sync/latch.h"
#include "bobbin/sync/mutex.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::testing::run_on;

TEST(FiberTest, RunReturnsMainFiberResult) { EXPECT_EQ(run_on(2, [] { return 42; }), 42); }

TEST(FiberTest, RunRethrowsMainFiberException) {
  EXPECT_THROW(run_on(2, []() -> int { throw std::runtime_error("boom"); }), std::runtime_error);
}

TEST(FiberTest, SpawnJoinReturnsValue) {
  EXPECT_EQ(run_on(2, [] { return bobbin::spawn([] { return 7; }).join() * 6; }), 42);
}

TEST(FiberTest, JoinRethrowsFiberException) {
  run_on(2, [] {
    auto f = bobbin::spawn([]() -> int { throw std::logic_error("bad"); });
    try {
      f.join();
      ADD_FAILURE() << "join() did not rethrow";
    } catch (const std::logic_error& e) {
      EXPECT_STREQ(e.what(), "bad");
    }
  });
}

TEST(FiberTest, MoveOnlyResult) {
  auto p = run_on(2, [] { return bobbin::spawn([] { return std::make_unique<int>(5); }).join(); });
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 5);
}

TEST(FiberTest, SpawnFromPlainThreadAndJoinFromThread) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  std::atomic<int> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&] {
      std::vector<bobbin::fiber<int>> fs;
      for (int i = 0; i < 100; i++) fs.push_back(rt->spawn([i] { return i; }));
      for (auto& f : fs) sum += f.join();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(sum.load(), 4 * 4950);
}

TEST(FiberTest, IdsAreUniqueAndNamesKept) {
  run_on(2, [] {
    EXPECT_TRUE(bobbin::this_fiber::is_fiber());
    EXPECT_EQ(bobbin::this_fiber::name(), "main");
    std::vector<bobbin::fiber<uint64_t>> fs;
    for (int i = 0; i < 50; i++) {
      fs.push_back(bobbin::spawn([] { return bobbin::this_fiber::id(); }, {.name = "worker"}));
    }
    std::set<uint64_t> ids;
    for (auto& f : fs) {
      EXPECT_EQ(f.name(), "worker");
      uint64_t id = f.id();
      EXPECT_EQ(f.join(), id);
      ids.insert(id);
    }
    EXPECT_EQ(ids.size(), 50u);
  });
  EXPECT_FALSE(bobbin::this_fiber::is_fiber());
  EXPECT_EQ(bobbin::this_fiber::id(), 0u);
}

TEST(FiberTest, DetachedFibersRunToCompletion) {
  run_on(2, [] {
    bobbin::latch done(100);
    for (int i = 0; i < 100; i++) {
      bobbin::spawn([&] {
        bobbin::this_fiber::sleep_for(1ms);
        done.count_down();
      }).detach();
    }
    done.wait();
  });
}

TEST(FiberTest, YieldingLoopDoesNotStarveOthers) {
  // One carrier: a fiber spinning on yield() must let the others run.
  run_on(1, [] {
    std::atomic<bool> stop{false};
    auto spinner = bobbin::spawn([&] {
      uint64_t n = 0;
      while (!stop.load()) {
        bobbin::this_fiber::yield();
        n++;
      }
      return n;
    });
    int ran = 0;
    for (int i = 0; i < 10; i++) {
      bobbin::spawn([&] { ran++; }).join();
    }
    bobbin::this_fiber::sleep_for(2ms);  // a timer must fire despite the spinner
    stop = true;
    EXPECT_GT(spinner.join(), 0u);
    EXPECT_EQ(ran, 10);
  });
}

// Sleepers wake in the order of their deadlines, on 2 carriers. The
// deadlines are instants 15 ms apart from one start taken after every
// sleeper exists, not durations from each sleeper's own start: creating a
// fiber under ThreadSanitizer takes 2.4-3.4 ms alone and more under load,
// so durations started that far apart woke in another order (5 before 4,
// 9 runs of 20).
// What remains between two wake-ups is the gap, so a sleeper is late enough
// to swap only if its carrier loses the CPU for a whole gap between the
// timer and the push; the gap is scaled in the sanitizer builds.
TEST(FiberTest, SleepOrdering) {
  run_on(2, [] {
    const auto gap = bobbin::testing::scaled(std::chrono::milliseconds(15));
    bobbin::mutex mu;
    std::vector<int> order;
    std::chrono::steady_clock::time_point start;
    bobbin::latch go(1);
    std::vector<bobbin::fiber<>> fs;
    for (int i : {5, 1, 4, 2, 3}) {
      fs.push_back(bobbin::spawn([&, i] {
        go.wait();  // `start` is set before the latch opens
        const auto due = start + i * gap;
        bobbin::this_fiber::sleep_until(due);
        EXPECT_GE(std::chrono::steady_clock::now(), due) << "sleeper " << i << " woke early";
        std::lock_guard l(mu);
        order.push_back(i);
      }));
    }
    start = std::chrono::steady_clock::now();
    go.count_down();
    for (auto& f : fs) f.join();
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3, 4, 5}));
  });
}

TEST(FiberTest, SleepLastsAtLeastItsDuration) {
  run_on(2, [] {
    auto t0 = std::chrono::steady_clock::now();
    bobbin::this_fiber::sleep_for(20ms);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 20ms);
  });
}

TEST(FiberTest, ManyFibersAcrossCarriersAllFinish) {
  constexpr int kFibers = bobbin::testing::max_live_fibers(10000);
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  auto total = rt->spawn([] {
    std::vector<bobbin::fiber<int>> fs;
    for (int i = 0; i < kFibers; i++) fs.push_back(bobbin::spawn([i] {
      bobbin::this_fiber::yield();
      return i % 7;
    }));
    int sum = 0;
    for (auto& f : fs) sum += f.join();
    return sum;
  }).join();
  int expect = 0;
  for (int i = 0; i < kFibers; i++) expect += i % 7;
  EXPECT_EQ(total, expect);
  EXPECT_EQ(rt->stats().fibers_alive, 0u);
}

TEST(FiberTest, MaxFibersGivesClearErrorNotCrash) {
  bobbin::runtime_options o;
  o.carriers = 1;
  o.max_fibers = 3;  // main + 2
  bobbin::run([] {
    bobbin::latch release(1);
    auto a = bobbin::spawn([&] { release.wait(); });
    auto b = bobbin::spawn([&] { release.wait(); });
    auto c = bobbin::try_spawn([] {});
    EXPECT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THROW(bobbin::spawn([] {}), std::system_error);
    release.count_down();
    a.join();
    b.join();
    // Capacity is back once they ended.
    bobbin::spawn([] {}).join();
  }, o);
}

// A fiber's body is built in the allocation of its control block
// (runtime/fiber/fiber_entry.cc): captures keep their alignment, a body
// whose construction throws leaves nothing behind, and
// a spawn that fails for want of a stack destroys the body it built. The
// leak checks are AddressSanitizer's, in the sanitizer pass.
struct counted_capture {
  static inline std::atomic<int> live{0};
  bool throw_on_move = false;
  counted_capture() { live++; }
  counted_capture(const counted_capture& o) : throw_on_move(o.throw_on_move) { live++; }
  // The lambda is moved into the body: this is the body's construction.
  counted_capture(counted_capture&& o) : throw_on_move(o.throw_on_move) {
    if (throw_on_move) throw std::runtime_error("move refused");
    live++;
  }
  ~counted_capture() { live--; }
};

TEST(FiberTest, BodiesKeepAlignmentAndAreDestroyedOnEveryPath) {
  counted_capture::live = 0;
  bobbin::runtime_options o;
  o.carriers = 2;
  o.max_fibers = 3;  // main + 2
  bobbin::run([] {
    struct alignas(256) wide {
      unsigned char bytes[256];
    };
    wide w{};
    w.bytes[0] = 7;
    w.bytes[255] = 9;
    auto aligned = bobbin::spawn([w] {
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(&w) % 256, 0u);
      return w.bytes[0] + w.bytes[255];
    });
    EXPECT_EQ(aligned.join(), 16);

    counted_capture refuses;
    refuses.throw_on_move = true;
    EXPECT_THROW(bobbin::spawn([refuses] {}), std::runtime_error);
    EXPECT_EQ(counted_capture::live, 1);  // only `refuses` itself

    bobbin::latch release(1);
    auto a = bobbin::spawn([&] { release.wait(); });
    counted_capture kept;
    auto b = bobbin::spawn([&release, kept] { release.wait(); });
    EXPECT_EQ(counted_capture::live, 3);
    auto c = bobbin::try_spawn([kept] {});
    EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_EQ(counted_capture::live, 3);  // the refused body was destroyed
    release.count_down();
    a.join();
    b.join();
    EXPECT_EQ(counted_capture::live, 2);  // join released b's body
  }, o);
  EXPECT_EQ(counted_capture::live, 0);
}

// The address space runs out (RLIMIT_AS, in a child process): spawning fails
// with a clear ResourceExhausted, the fibers already running go on and
// finish, and once they have, their stacks serve new fibers again.
TEST(FiberDeathTest, AddressSpaceRunningOutFailsSpawnCleanly) {
  if (bobbin::testing::kUnderSanitizer) GTEST_SKIP() << "the sanitizers' shadow memory needs the address space";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const int code = bobbin::run(
            [] {
              bobbin::latch release(1);
              std::vector<bobbin::fiber<>> parked;
              // Room for a few slabs of stacks beyond what is mapped now.
              long vm_kib = 0;
              {
                std::ifstream status("/proc/self/status");
                for (std::string line; std::getline(status, line);) {
                  if (line.rfind("VmSize:", 0) == 0) vm_kib = std::stol(line.substr(7));
                }
              }
              rlimit as{};
              as.rlim_cur = as.rlim_max = static_cast<rlim_t>(vm_kib + 256 * 1024) * 1024;
              if (::setrlimit(RLIMIT_AS, &as) != 0) return 10;
              absl::Status failure;
              for (int i = 0; i < 1'000'000; i++) {
                auto f = bobbin::try_spawn([&] { release.wait(); });
                if (!f.ok()) {
                  failure = f.status();
                  break;
                }
                parked.push_back(std::move(*f));
              }
              if (failure.ok()) return 11;  // never ran out
              if (failure.code() != absl::StatusCode::kResourceExhausted) return 12;
              if (failure.message().find("cannot map fiber stack memory") == std::string_view::npos) return 13;
              if (parked.size() < 100) return 14;
              release.count_down();
              for (auto& f : parked) f.join();
              // The pooled stacks serve new fibers.
              for (int i = 0; i < 100; i++) bobbin::spawn([] {}).join();
              return 0;
            },
            bobbin::testing::carriers(2));
        std::_Exit(code);
      },
      testing::ExitedWithCode(0), "");
}

// Memory pressure without a limit: a million fibers alive at once on a
// runtime with max_fibers unset (about 4.4 GB resident, 64 GB of stack
// address space in slabs, within vm.max_map_count). Either each spawn works
// or it fails with the documented ResourceExhausted; no crash, no OOM kill.
// On this 24 GiB machine they all run. Not under the sanitizers, whose
// larger stacks and shadow memory would measure the sanitizer.
TEST(FiberTest, AMillionParkedFibersAllRunOrSpawnFailsCleanly) {
  if (bobbin::testing::kUnderSanitizer) GTEST_SKIP() << "a million sanitizer-sized stacks";
  constexpr int kFibers = 1'000'000;
  std::atomic<int> ran{0};
  int spawned = 0;
  absl::Status failure;
  bobbin::run(
      [&] {
        bobbin::latch release(1);
        std::vector<bobbin::fiber<>> parked;
        parked.reserve(kFibers);
        for (int i = 0; i < kFibers; i++) {
          auto f = bobbin::try_spawn([&] {
            release.wait();
            ran.fetch_add(1, std::memory_order_relaxed);
          });
          if (!f.ok()) {
            failure = f.status();
            break;
          }
          parked.push_back(std::move(*f));
        }
        spawned = static_cast<int>(parked.size());
        release.count_down();
        for (auto& f : parked) f.join();
      },
      bobbin::testing::carriers(2));
  if (!failure.ok()) {
    EXPECT_EQ(failure.code(), absl::StatusCode::kResourceExhausted) << failure;
  } else {
    EXPECT_EQ(spawned, kFibers);
  }
  EXPECT_EQ(ran.load(), spawned);
  std::printf("%d of %d fibers spawned and run%s\n", spawned, kFibers,
              failure.ok() ? "" : (" then: " + std::string(failure.message())).c_str());
}

TEST(FiberTest, DumpListsParkedFibersWithReason) {
  auto rt = bobbin::runtime::start({.carriers = 1}).value();
  bobbin::latch gate(1);
  auto f = rt->spawn([&] { gate.wait(); }, {.name = "waiter"});
  std::string dump;
  for (int i = 0; i < 200 && dump.find("latch wait") == std::string::npos; i++) {
    std::this_thread::sleep_for(1ms);
    dump = rt->dump_fibers();
  }
  EXPECT_NE(dump.find("1 fiber parked on latch wait"), std::string::npos) << dump;
  EXPECT_NE(dump.find("\"waiter\""), std::string::npos) << dump;
  gate.count_down();
  f.join();
}

#pragma GCC diagnostic ignored "-Winfinite-recursion"  // the point of the test
TEST(FiberDeathTest, StackOverflowNamesTheFiber) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        bobbin::run([] {
          bobbin::spawn(
              [] {
                struct recurse {
                  static int go(int n) {
                    volatile char pad[512];
                    pad[0] = static_cast<char>(n);
                    return go(n + 1) + pad[0];
                  }
                };
                return recurse::go(0);
              },
              {.name = "deep"})
              .join();
        }, {.carriers = 1});
      },
      "stack overflow in fiber [0-9]+ \"deep\"");
}

}  // namespace
