// Scheduler behaviour: idle carriers sleep in the kernel, work readied from
// a plain thread reaches a sleeping runtime, fibers spread over carriers,
// per-spawn stack sizes, counters.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/runtime.h"
#include "bobbin/sync/channel.h"
#include "bobbin/sync/latch.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

TEST(SchedulerTest, IdleCarriersSleepInTheKernel) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  bobbin::channel<int> never(1);
  std::vector<bobbin::fiber<>> parked;
  for (int i = 0; i < 100; i++) parked.push_back(rt->spawn([&] { (void)never.receive(); }));
  std::this_thread::sleep_for(50ms);  // let every fiber park and the carriers settle
  double cpu0 = process_cpu_seconds();
  auto wall0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(300ms);
  double cpu = process_cpu_seconds() - cpu0;
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  // Two spinning carriers would burn 2 x wall; sleeping ones burn ~nothing.
  // The bound is loose for noisy shared machines, and far from spinning.
  EXPECT_LT(cpu, 0.10 * wall) << "carriers used " << cpu << " s of CPU in " << wall << " s with every fiber parked";
  never.close();
  for (auto& f : parked) f.join();
}

TEST(SchedulerTest, PlainThreadWakesAFiberInASleepingRuntime) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  bobbin::channel<int> ch(0);
  auto f = rt->spawn([&] {
    int sum = 0;
    while (auto v = ch.receive()) sum += *v;
    return sum;
  });
  for (int i = 1; i <= 100; i++) {
    std::this_thread::sleep_for(1ms);  // the carriers go back to sleep each time
    ASSERT_EQ(ch.send(std::move(i), 5s), bobbin::channel_status::ok) << "a sleeping carrier was not woken";
  }
  ch.close();
  EXPECT_EQ(f.join(), 5050);
}

// No lost wake-up while carriers keep falling asleep and waking. Pairs of
// fibers ping-pong through unbuffered channels with short sleeps between
// rounds, so both carriers go idle (spin, then sleep in io_uring_enter) and
// are woken by the other carrier, by timers and by a plain thread, tens of
// thousands of times in 10 s. Every hand-off carries a 2 s deadline: a wake-up
// that is lost shows up as a timed-out send or receive, not as a hang.
TEST(SchedulerTest, NoLostWakeUpWhileCarriersSleepAndWake) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  constexpr int kPairs = 4;
  const auto run_for = 10s;
  const auto stop_at = std::chrono::steady_clock::now() + run_for;
  std::atomic<bool> stop{false};
  std::atomic<long> round_trips{0}, lost{0};
  std::vector<std::unique_ptr<bobbin::channel<int>>> pings, pongs;
  for (int i = 0; i < kPairs + 1; i++) {
    pings.push_back(std::make_unique<bobbin::channel<int>>(0));
    pongs.push_back(std::make_unique<bobbin::channel<int>>(0));
  }
  std::vector<bobbin::fiber<>> answerers, askers;
  for (int p = 0; p < kPairs + 1; p++) {
    // The answering side of every pair, the plain thread's included.
    answerers.push_back(rt->spawn([&, p] {
      int v = 0;
      while (pings[p]->receive(v, 2s) == bobbin::channel_status::ok) {
        if (pongs[p]->send(v + 1, 2s) != bobbin::channel_status::ok) {
          lost++;
          return;
        }
      }
      if (!stop.load()) lost++;  // a timeout before the end is a lost wake-up
    }));
  }
  for (int p = 0; p < kPairs; p++) {
    askers.push_back(rt->spawn([&, p] {
      unsigned seed = 12345u + p;
      for (int i = 0; !stop.load(); i++) {
        seed = seed * 1103515245u + 12345u;
        const unsigned pause = (seed >> 16) % 4;  // none, yield, 50 us, 200 us
        if (pause == 1) bobbin::this_fiber::yield();
        if (pause == 2) bobbin::this_fiber::sleep_for(50us);
        if (pause == 3) bobbin::this_fiber::sleep_for(200us);
        int back = 0;
        if (pings[p]->send(i, 2s) != bobbin::channel_status::ok || pongs[p]->receive(back, 2s) != bobbin::channel_status::ok ||
            back != i + 1) {
          lost++;
          return;
        }
        round_trips++;
      }
    }));
  }
  // A plain thread wakes a fiber whose carrier has gone to sleep.
  std::thread outsider([&] {
    for (int i = 0; std::chrono::steady_clock::now() < stop_at; i++) {
      std::this_thread::sleep_for(std::chrono::microseconds(100 + 300 * (i % 3)));
      int back = 0;
      if (pings[kPairs]->send(i, 2s) != bobbin::channel_status::ok ||
          pongs[kPairs]->receive(back, 2s) != bobbin::channel_status::ok || back != i + 1) {
        lost++;
        break;
      }
      round_trips++;
    }
  });
  while (std::chrono::steady_clock::now() < stop_at && lost.load() == 0) std::this_thread::sleep_for(10ms);
  stop = true;
  outsider.join();
  for (auto& f : askers) f.join();
  for (auto& ch : pings) ch->close();
  for (auto& f : answerers) f.join();
  EXPECT_EQ(lost.load(), 0) << "a hand-off waited more than 2 s: a wake-up was lost";
  EXPECT_GT(round_trips.load(), 1000);
  const auto stats = rt->stats();
  // The point is carriers that sleep and are woken: make sure they did.
  EXPECT_GT(stats.carrier_wakeups, 100u);
  std::printf("%ld round trips, %llu carrier wake-ups\n", round_trips.load(), (unsigned long long)stats.carrier_wakeups);
}

TEST(SchedulerTest, BusyFibersSpreadOverAllCarriers) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  std::atomic<int> mask{0};
  std::atomic<bool> stop{false};
  std::vector<bobbin::fiber<>> fs;
  // Spawned from a plain thread they land in the global queue; fibers that
  // keep yielding keep both carriers busy, so each carrier runs some.
  for (int i = 0; i < 8; i++) {
    fs.push_back(rt->spawn([&] {
      while (!stop.load()) {
        mask |= 1 << bobbin::this_fiber::carrier_index();
        bobbin::this_fiber::yield();
      }
    }));
  }
  for (int i = 0; i < 500 && mask.load() != 3; i++) std::this_thread::sleep_for(1ms);
  stop = true;
  for (auto& f : fs) f.join();
  EXPECT_EQ(mask.load(), 3);
}

// More runnable fibers than the 256-slot run queue holds: the rest wait in
// the carrier's backlog, and yielded fibers queue in order behind it. With
// 1,000 fibers yielding in turn on one carrier, each must run once per round,
// give or take the few times the backlog's head runs early (one scheduling
// decision in 61 looks at it first, so a ring kept full by fibers waking
// each other cannot starve it). Spilling the oldest half of a full run queue
// behind newer work, as before, let one fiber wait 1,648 turns.
TEST(SchedulerTest, RunnableFibersRunInFifoOrderBeyondTheRunQueue) {
  bobbin::testing::run_on(1, [] {
    constexpr int kFibers = 1000;
    constexpr int kRounds = 12;
    long turn = 0;  // one carrier: no data race
    std::vector<long> worst_gap(kFibers, 0);
    bobbin::latch started(kFibers);
    std::vector<bobbin::fiber<>> fs;
    for (int i = 0; i < kFibers; i++) {
      fs.push_back(bobbin::spawn([&, i] {
        started.arrive_and_wait();
        long last = -1;
        for (int round = 0; round < kRounds; round++) {
          const long now = turn++;
          if (round >= 2) worst_gap[i] = std::max(worst_gap[i], now - last);
          last = now;
          bobbin::this_fiber::yield();
        }
      }));
    }
    for (auto& f : fs) f.join();
    for (int i = 0; i < kFibers; i++) {
      EXPECT_LE(worst_gap[i], kFibers + kFibers / 50) << "fiber " << i << " waited " << worst_gap[i] << " turns";
      if (worst_gap[i] > kFibers + kFibers / 50) break;
    }
  });
}

// Two fibers that wake each other through unbuffered channels (a
// ping-pong), handing their carrier back and forth through runnext, until
// stop() is called; exchanges() counts round trips (one carrier: no race).
class ping_pong_pair {
 public:
  ping_pong_pair()
      : a_(bobbin::spawn([this] {
          int v = 0;
          while (!stop_.load() && ping_.send(v) == bobbin::channel_status::ok &&
                 pong_.receive(v) == bobbin::channel_status::ok) {
            exchanges_++;
          }
          ping_.close();
        })),
        b_(bobbin::spawn([this] {
          int v;
          while (ping_.receive(v) == bobbin::channel_status::ok && pong_.send(v + 1) == bobbin::channel_status::ok) {
          }
          pong_.close();
        })) {}
  void stop() { stop_ = true; }
  void join() {
    a_.join();
    b_.join();
  }
  long exchanges() const { return exchanges_; }

 private:
  std::atomic<bool> stop_{false};
  long exchanges_ = 0;
  bobbin::channel<int> ping_{0}, pong_{0};
  bobbin::fiber<> a_, b_;
};

// Two fibers that wake each other (a channel ping-pong) hand the carrier
// back and forth through the runnext slot, which is looked at first. The
// run queue behind them must still run: a fiber that yields in a loop on
// the same carrier gets its turns while the pair goes on. Before the
// runnext streak was bounded it got none until the pair stopped.
TEST(SchedulerTest, AFiberPairWakingEachOtherDoesNotStarveTheRunQueue) {
  bobbin::testing::run_on(1, [] {
    long yields = 0;  // one carrier: no data race
    ping_pong_pair pair;
    auto yielder = bobbin::spawn([&] {
      // Without the bound it got 1 turn in 2 s; with it, 1,000 take ~5 ms
      // (about 1 s under ThreadSanitizer on a loaded machine).
      const auto give_up = std::chrono::steady_clock::now() + (bobbin::testing::kUnderSanitizer ? 10s : 2s);
      while (yields < 200 && std::chrono::steady_clock::now() < give_up) {
        bobbin::this_fiber::yield();
        yields++;
      }
      pair.stop();
    });
    yielder.join();
    pair.join();
    EXPECT_EQ(yields, 200) << "the yielding fiber starved behind the pair";
    EXPECT_GT(pair.exchanges(), 200) << "the pair starved";
  });
}

// A fiber whose sleep has ended runs before the fibers already queued on
// its carrier, however long they run: it has waited its turn. Here 20
// fibers compute 200 us between yields on one carrier. A sleeper readied at
// the back of the queue would wait a whole round of them (20 turns) after
// its timer fired; at the front it waits only until the carrier next reaps
// its ring (the loop reaps once 500 us have passed while fibers run long:
// 3 turns). Turns are counted, not time, so a slow machine does not matter.
// `sleep` is bobbin's own sleep or an intercepted libc one.
template <class Sleep>
void expect_sleeper_runs_before_the_queue(Sleep sleep) {
  bobbin::testing::run_on(1, [&] {
    using clock = std::chrono::steady_clock;
    constexpr int kBusy = 20;
    constexpr int kSleeps = 30;
    std::atomic<bool> stop{false};
    std::vector<clock::time_point> turns;  // one carrier: no data race
    turns.reserve(1 << 20);
    std::vector<bobbin::fiber<>> busy;
    for (int i = 0; i < kBusy; i++) {
      busy.push_back(bobbin::spawn([&] {
        while (!stop.load(std::memory_order_relaxed)) {
          turns.push_back(clock::now());
          const auto until = clock::now() + 200us;
          while (clock::now() < until) {
          }
          bobbin::this_fiber::yield();
        }
      }));
    }
    std::vector<size_t> late_turns;
    size_t turns_while_sleeping = 0;
    auto sleeper = bobbin::spawn([&] {
      const size_t before = turns.size();
      for (int i = 0; i < kSleeps; i++) {
        const auto fires = clock::now() + 2ms;
        sleep(2ms);
        // Busy turns that began after the timer fired, before this one ran.
        late_turns.push_back(turns.end() - std::lower_bound(turns.begin(), turns.end(), fires));
      }
      turns_while_sleeping = turns.size() - before;
      stop = true;
    });
    sleeper.join();
    for (auto& f : busy) f.join();
    // The sleeps parked (a blocked carrier would run no busy turn meanwhile).
    EXPECT_GE(turns_while_sleeping, size_t{kSleeps} * 5);
    // The first sleeps may begin before the carrier has seen its fibers run
    // long (it reaps by switch count until then).
    std::vector<size_t> settled(late_turns.begin() + 3, late_turns.end());
    std::string all;
    for (size_t t : late_turns) all += std::to_string(t) + " ";
    std::sort(settled.begin(), settled.end());
    // Under the sanitizers every switch goes through the loop and costs tens
    // of microseconds more, so the 500 us before the loop reaps holds more
    // turns: ThreadSanitizer measured medians of 5 in 3 runs of 4 on the
    // 2-core VM (2026-12-07, turns 0-6), at this commit and at the one
    // before. Still far from the 20 of a sleeper queued at the back.
    const size_t median_bound = bobbin::testing::kUnderSanitizer ? 6 : 4;
    EXPECT_LE(settled[settled.size() / 2], median_bound) << "median busy turns after the timer fired; all: " << all;
    EXPECT_LE(settled.back(), 8u) << "most busy turns after the timer fired (a round is " << kBusy << "); all: " << all;
  });
}

TEST(SchedulerTest, AFiberWhoseSleepEndedRunsBeforeTheQueue) {
  expect_sleeper_runs_before_the_queue([](std::chrono::microseconds d) { bobbin::this_fiber::sleep_for(d); });
}

// The same for code that calls libc's sleep on a fiber (intercepted). Here
// the busy fibers are not bound, so the bound sleeper would take turns with
// them anyway; what this checks is that the interval counts from the call
// (a relative timeout counted from its submission, up to 500 us later:
// median 5 turns, every run). A libc sleeper also heads the bound list,
// which is not shown here: that needs busy fibers parked in libc calls.
TEST(SchedulerTest, AFiberWhoseLibcSleepEndedRunsBeforeTheQueue) {
  expect_sleeper_runs_before_the_queue([](std::chrono::microseconds d) { ::usleep(d.count()); });
}

// The sleepers' lane does not starve the rest: with 200 fibers that sleep
// 1 us in a loop refilling it at every reap, a fiber that yields on the
// same carrier still gets its turns (after 64 sleepers in a row the queue
// gets one). Nor does a pair waking each other through runnext starve a
// sleeper (runnext's chain counts the lane as work waiting). Both held
// before those two bounds too, in these shapes: a guard, not a reproducer
// (a review found the unbounded cases by reading the code).
TEST(SchedulerTest, SleepersDoNotStarveTheRunQueueNorAPairASleeper) {
  bobbin::testing::run_on(1, [] {
    // Under ThreadSanitizer 46 yields took 10 s here (every switch of 200
    // fibers is slow there): fewer turns asked for, more time given.
    const auto limit = bobbin::testing::kUnderSanitizer ? 20s : 2s;
    const long kYields = bobbin::testing::kUnderSanitizer ? 20 : 200;
    std::atomic<bool> stop{false};
    std::vector<bobbin::fiber<>> sleepers;
    for (int i = 0; i < 200; i++) {
      sleepers.push_back(bobbin::spawn([&] {
        while (!stop.load()) bobbin::this_fiber::sleep_for(1us);
      }));
    }
    long yields = 0;
    auto yielder = bobbin::spawn([&] {
      const auto give_up = std::chrono::steady_clock::now() + limit;
      while (yields < kYields && std::chrono::steady_clock::now() < give_up) {
        bobbin::this_fiber::yield();
        yields++;
      }
      stop = true;
    });
    yielder.join();
    for (auto& f : sleepers) f.join();
    EXPECT_EQ(yields, kYields) << "the yielding fiber starved behind the sleepers";

    ping_pong_pair pair;
    long sleeps = 0;
    auto sleeper = bobbin::spawn([&] {
      const auto give_up = std::chrono::steady_clock::now() + limit;
      while (sleeps < 20 && std::chrono::steady_clock::now() < give_up) {
        bobbin::this_fiber::sleep_for(1ms);
        sleeps++;
      }
      pair.stop();
    });
    sleeper.join();
    pair.join();
    EXPECT_EQ(sleeps, 20) << "the sleeper starved behind the pair";
  });
}

TEST(SchedulerTest, PerSpawnStackSize) {
  bobbin::testing::run_on(1, [] {
    auto big = bobbin::spawn(
        [] {
          // 768 KiB of locals: needs the 1 MiB stack asked for.
          volatile char buf[768 * 1024];
          std::memset(const_cast<char*>(buf), 1, sizeof buf);
          return static_cast<int>(buf[12345]);
        },
        {.name = "big", .stack_size = 1024 * 1024});
    EXPECT_EQ(big.join(), 1);
  });
}

TEST(SchedulerTest, CountersMove) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  rt->spawn([] {
    for (int i = 0; i < 10; i++) bobbin::this_fiber::sleep_for(1ms);
  }).join();
  bobbin::runtime_stats s = rt->stats();
  EXPECT_EQ(s.carriers, 2u);
  EXPECT_EQ(s.fibers_spawned, 1u);
  EXPECT_EQ(s.fibers_alive, 0u);
  EXPECT_GE(s.context_switches, 10u);
  EXPECT_GE(s.io_submitted, 10u);  // ten timeouts went through a ring
  EXPECT_GE(s.stacks_mapped, 1u);
  EXPECT_EQ(s.stacks_unguarded, 0u);
}

// Without a grace period (shutdown_grace 0) nothing is cancelled: live
// fibers are abandoned at once. (tests/fiber/cancel_test.cc covers the
// default, which cancels them and lets them return.)
TEST(SchedulerTest, ShutdownWithoutGraceAbandonsParkedFibersAndJoinThrows) {
  auto rt = bobbin::runtime::start({.carriers = 1, .shutdown_grace = std::chrono::milliseconds(0)}).value();
  bobbin::channel<int> never(1);
  auto f = rt->spawn([&] { (void)never.receive(); });
  std::this_thread::sleep_for(10ms);
  rt->shutdown();
  EXPECT_THROW(f.join(), std::runtime_error);
  // The abandoned receiver's waiter stays linked in the channel, on its
  // kept stack, but is settled: a send now goes to the buffer instead of
  // handing its value to a fiber that will never run, and the channel's
  // destructor neither reports nor wakes it (it read the freed control
  // block under ASan before).
  EXPECT_EQ(never.send(7), bobbin::channel_status::ok);
  EXPECT_EQ(never.size(), 1u);
  testing::internal::CaptureStderr();
  {
    bobbin::channel<int> gone(0);
    auto g = bobbin::runtime::start({.carriers = 1, .shutdown_grace = std::chrono::milliseconds(0)}).value();
    auto h = g->spawn([&] { (void)gone.receive(); });
    std::this_thread::sleep_for(10ms);
    setenv("BOBBIN_QUIET_SHUTDOWN", "1", 1);
    g->shutdown();
    unsetenv("BOBBIN_QUIET_SHUTDOWN");
    EXPECT_THROW(h.join(), std::runtime_error);
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

TEST(SchedulerTest, StartRejectsBadOptions) {
  auto rt = bobbin::runtime::start({.carriers = 1, .stack_size = 100});
  EXPECT_EQ(rt.status().code(), absl::StatusCode::kInvalidArgument);
  rt = bobbin::runtime::start({.carriers = 1, .ring_entries = 1});
  EXPECT_EQ(rt.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
