// Pinning detection (reason, detail, symbolized stack), no false reports for
// fibers that park, compensation by spare carriers, declared pinned regions.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/pinning.h"
#include "bobbin/runtime.h"
#include "bobbin/sync/channel.h"
#include "bobbin/this_fiber.h"

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

struct recorder {
  std::mutex mu;
  std::vector<bobbin::pin_event> events;
  bobbin::pin_listener listener() {
    return [this](const bobbin::pin_event& e) {
      std::lock_guard l(mu);
      events.push_back(e);
    };
  }
  std::vector<bobbin::pin_event> detected() {
    std::lock_guard l(mu);
    std::vector<bobbin::pin_event> out;
    for (auto& e : events) {
      if (!e.ended) out.push_back(e);
    }
    return out;
  }
  std::vector<bobbin::pin_event> ended() {
    std::lock_guard l(mu);
    std::vector<bobbin::pin_event> out;
    for (auto& e : events) {
      if (e.ended) out.push_back(e);
    }
    return out;
  }
};

bool stack_mentions(const bobbin::pin_event& e, const std::string& fn) {
  return std::any_of(e.stack.begin(), e.stack.end(), [&](const std::string& f) { return f.find(fn) != std::string::npos; });
}

std::string describe(const bobbin::pin_event& e) { return bobbin::format_pin_event(e, true); }

// The offending functions, kept out of line so the stack names them.
__attribute__((noinline)) void busy_spin_for_ms(int ms) {
  auto until = clock_type::now() + std::chrono::milliseconds(ms);
  while (clock_type::now() < until) {
    asm volatile("" ::: "memory");
  }
}

__attribute__((noinline)) ssize_t blocking_pipe_read(int fd) {
  char c;
  ssize_t n = ::read(fd, &c, 1);
  asm volatile("" ::: "memory");
  return n;
}

__attribute__((noinline)) void libc_sleep_ms(int ms) {
  ::usleep(static_cast<useconds_t>(ms) * 1000);
  asm volatile("" ::: "memory");
}

__attribute__((noinline)) void sleep_inside_pinned_region() {
  bobbin::pinned_scope pin("test region");
  bobbin::this_fiber::sleep_for(60ms);  // blocks the carrier: the fiber is pinned
  asm volatile("" ::: "memory");
}

// A raw system call: what a statically linked library or glibc-internal
// code does, which no interceptor sees.
__attribute__((noinline)) void uncovered_flock(int fd) {
  ::flock(fd, LOCK_EX);
  asm volatile("" ::: "memory");
}

// The plain blocking calls below park the fiber unless interception is off
// (bobbin/blocking_calls.h); these tests show what pinning looks like, so
// most turn it off.
bobbin::runtime_options options(unsigned carriers, bool intercept) {
  bobbin::runtime_options o;
  o.carriers = carriers;
  o.intercept_blocking_calls = intercept;
  return o;
}

template <class F>
std::vector<bobbin::pin_event> run_and_record(recorder& rec, unsigned carriers, F&& body, bool intercept = false) {
  auto rt = bobbin::runtime::start(options(carriers, intercept)).value();
  rt->set_pin_listener(rec.listener());
  rt->spawn(std::forward<F>(body), {.name = "culprit"}).join();
  std::this_thread::sleep_for(30ms);  // let the monitor see the episode end
  return rec.detected();
}

TEST(PinningTest, BusyLoopIsReportedAsCpuWithItsStack) {
  recorder rec;
  auto events = run_and_record(rec, 2, [] { busy_spin_for_ms(80); });
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.reason, bobbin::pin_reason::cpu) << describe(e);
  EXPECT_EQ(e.fiber_name, "culprit");
  EXPECT_GE(e.duration, 20ms);
  EXPECT_TRUE(stack_mentions(e, "busy_spin_for_ms")) << describe(e);
  auto ended = rec.ended();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_GE(ended[0].duration, 50ms);
}

TEST(PinningTest, PlainBlockingReadIsReportedAsSyscallWhenNotIntercepted) {
  recorder rec;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  // The writer's 80 ms start when the fiber says so, so that the read
  // blocks that long however long the runtime took to start
  // (ThreadSanitizer: 80 ms). Only a store on the fiber: a deeper call there
  // (starting the thread) left frames the pinning report's stack walk then
  // followed from the read's interceptor under ASan.
  std::atomic<bool> reading{false};
  std::thread writer([&] {
    while (!reading.load()) std::this_thread::sleep_for(1ms);
    std::this_thread::sleep_for(80ms);
    ASSERT_EQ(::write(fds[1], "x", 1), 1);
  });
  auto events = run_and_record(rec, 2, [&] {
    reading.store(true);
    EXPECT_EQ(blocking_pipe_read(fds[0]), 1);
  });
  writer.join();
  ::close(fds[0]);
  ::close(fds[1]);
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.reason, bobbin::pin_reason::syscall) << describe(e);
  EXPECT_NE(e.detail.find("read(2)"), std::string::npos) << describe(e);
  EXPECT_TRUE(stack_mentions(e, "blocking_pipe_read")) << describe(e);
}

TEST(PinningTest, LibcSleepIsReportedAsSyscallWhenNotIntercepted) {
  recorder rec;
  auto events = run_and_record(rec, 2, [] { libc_sleep_ms(80); });
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.reason, bobbin::pin_reason::syscall) << describe(e);
  EXPECT_NE(e.detail.find("sleep"), std::string::npos) << describe(e);
  EXPECT_TRUE(stack_mentions(e, "libc_sleep_ms")) << describe(e);
}

TEST(PinningTest, InterceptedBlockingCallsAreNotReported) {
  recorder rec;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::thread writer([&] {
    std::this_thread::sleep_for(80ms);
    ASSERT_EQ(::write(fds[1], "x", 1), 1);
  });
  auto events = run_and_record(
      rec, 2,
      [&] {
        EXPECT_EQ(blocking_pipe_read(fds[0]), 1);
        libc_sleep_ms(80);
      },
      /*intercept=*/true);
  writer.join();
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_TRUE(events.empty()) << describe(events[0]);
}

TEST(PinningTest, UncoveredCallIsReportedWithInterceptionOn) {
  recorder rec;
  char path[] = "/tmp/bobbin-flock-XXXXXX";
  int holder = ::mkstemp(path);
  ASSERT_GE(holder, 0);
  int other = ::open(path, O_RDWR);
  ::unlink(path);
  ASSERT_EQ(::flock(holder, LOCK_EX), 0);
  std::thread releaser([&] {
    std::this_thread::sleep_for(80ms);
    ::flock(holder, LOCK_UN);
  });
  auto events = run_and_record(rec, 2, [&] { uncovered_flock(other); }, /*intercept=*/true);
  releaser.join();
  ::close(holder);
  ::close(other);
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.reason, bobbin::pin_reason::syscall) << describe(e);
  EXPECT_TRUE(stack_mentions(e, "uncovered_flock")) << describe(e);
}

TEST(PinningTest, ParkingInsideDeclaredRegionIsReportedAsDeclared) {
  recorder rec;
  auto events = run_and_record(rec, 2, [] { sleep_inside_pinned_region(); });
  ASSERT_EQ(events.size(), 1u);
  const auto& e = events[0];
  EXPECT_EQ(e.reason, bobbin::pin_reason::declared) << describe(e);
  EXPECT_NE(e.detail.find("test region"), std::string::npos) << describe(e);
  EXPECT_NE(e.detail.find("sleep"), std::string::npos) << describe(e);
  EXPECT_TRUE(stack_mentions(e, "sleep_inside_pinned_region")) << describe(e);
}

TEST(PinningTest, FibersThatParkOftenAreNotReported) {
  recorder rec;
  auto events = run_and_record(rec, 2, [] {
    // 200 ms in all, but never more than ~1 ms without parking.
    auto until = clock_type::now() + 200ms;
    while (clock_type::now() < until) {
      busy_spin_for_ms(1);
      bobbin::this_fiber::sleep_for(1ms);
    }
  });
  EXPECT_TRUE(events.empty()) << describe(events[0]);
}

TEST(PinningTest, SparesKeepOtherFibersRunningWhileEveryCarrierIsBlocked) {
  // Two carriers, both stuck in read(2) for 600 ms. A plain thread sends a
  // message every 5 ms to a fiber parked on a channel; that fiber must keep
  // receiving them promptly, on a spare carrier.
  auto rt = bobbin::runtime::start(options(2, /*intercept=*/false)).value();
  int p1[2], p2[2];
  ASSERT_EQ(::pipe(p1), 0);
  ASSERT_EQ(::pipe(p2), 0);
  bobbin::channel<clock_type::time_point> ch(bobbin::unbounded);
  auto consumer = rt->spawn([&] {
    std::vector<double> lat_ms;
    while (auto sent = ch.receive()) {
      lat_ms.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - *sent).count());
    }
    return lat_ms;
  });
  std::this_thread::sleep_for(10ms);
  auto b1 = rt->spawn([&] { return blocking_pipe_read(p1[0]); });
  auto b2 = rt->spawn([&] { return blocking_pipe_read(p2[0]); });
  std::this_thread::sleep_for(50ms);  // both carriers are blocked by now
  const auto start = clock_type::now();
  while (clock_type::now() - start < 400ms) {
    ch.send(clock_type::now());
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GE(rt->stats().spare_carriers_active, 1u);
  ASSERT_EQ(::write(p1[1], "x", 1), 1);
  ASSERT_EQ(::write(p2[1], "x", 1), 1);
  EXPECT_EQ(b1.join(), 1);
  EXPECT_EQ(b2.join(), 1);
  ch.close();
  std::vector<double> lat = consumer.join();
  for (int fd : {p1[0], p1[1], p2[0], p2[1]}) ::close(fd);
  ASSERT_GE(lat.size(), 40u);
  std::sort(lat.begin(), lat.end());
  // Without spares the messages would wait ~600 ms for a carrier.
  EXPECT_LT(lat[lat.size() / 2], 50.0) << "median latency";
  EXPECT_LT(lat.back(), 250.0) << "max latency";
  EXPECT_GE(rt->stats().spare_activations, 1u);
}

TEST(PinningTest, RetiringASpareDoesNotSwallowAWakeup) {
  // An active spare that idles publishes itself in the idle list, and one
  // that spins counts as the carrier that will find new work. When its
  // episode ends the monitor retires it, and a retired spare runs nothing:
  // a wakeup that picked it (or that was skipped because it spun) must be
  // passed on, or the fiber waits in the global queue while every other
  // carrier sleeps (this hung SparesKeepOtherFibersRunning... under
  // ThreadSanitizer). Many short episodes; a plain thread wakes a fiber
  // every 100 us throughout, and stops at a varying moment around the
  // spare's retirement: that last wakeup must still run the fiber.
  auto o = options(2, /*intercept=*/false);
  o.pin_threshold = 2ms;
  auto rt = bobbin::runtime::start(o).value();
  bobbin::channel<int> ch(bobbin::unbounded);
  std::atomic<int> received{0};
  auto consumer = rt->spawn([&] {
    while (auto v = ch.receive()) received.store(*v, std::memory_order_release);
  });
  std::minstd_rand rng(12345);
  constexpr int kEpisodes = 60;
  int sent = 0, episodes = 0;
  auto send_for = [&](std::chrono::microseconds d) {
    const auto until = clock_type::now() + d;
    do {
      ch.send(++sent);
      std::this_thread::sleep_for(100us);
    } while (clock_type::now() < until);
  };
  for (int i = 1; i <= kEpisodes; i++) {
    int p1[2], p2[2];
    ASSERT_EQ(::pipe(p1), 0);
    ASSERT_EQ(::pipe(p2), 0);
    auto b1 = rt->spawn([&] { return blocking_pipe_read(p1[0]); });
    auto b2 = rt->spawn([&] { return blocking_pipe_read(p2[0]); });
    const auto give_up = clock_type::now() + 5s;
    while (rt->stats().spare_carriers_active == 0 && clock_type::now() < give_up) send_for(200us);
    ASSERT_EQ(::write(p1[1], "x", 1), 1);
    ASSERT_EQ(::write(p2[1], "x", 1), 1);
    EXPECT_EQ(b1.join(), 1);
    EXPECT_EQ(b2.join(), 1);
    for (int fd : {p1[0], p1[1], p2[0], p2[1]}) ::close(fd);
    // The monitor retires the spares within an interval (500 us here).
    send_for(std::chrono::microseconds(rng() % 3000));
    const auto until = clock_type::now() + 5s;
    while (received.load(std::memory_order_acquire) != sent && clock_type::now() < until) {
      std::this_thread::sleep_for(50us);
    }
    if (received.load(std::memory_order_acquire) != sent) {
      ADD_FAILURE() << "episode " << i << ": the consumer was not run within 5 s of its last wakeup";
      break;
    }
    episodes = i;
  }
  EXPECT_EQ(episodes, kEpisodes);
  ch.close();
  consumer.join();
  EXPECT_GE(rt->stats().spare_activations, 1u);
}

// One carrier; its fiber queues 8 more, then computes without switching
// until at least 4 of them have run (at most `for_at_most`). Returns how many
// ran meanwhile. (The last one spawned waits in runnext, which a thief takes
// only from a blocked carrier, so not all 8 are asked for.)
int queued_fibers_run_while_one_hogs(bobbin::runtime& rt, std::chrono::milliseconds for_at_most) {
  std::atomic<int> ran{0};
  auto hog = rt.spawn([&] {
    std::vector<bobbin::fiber<void>> queued;
    for (int i = 0; i < 8; i++) queued.push_back(bobbin::spawn([&] { ran.fetch_add(1); }));
    const auto give_up = clock_type::now() + for_at_most;
    while (ran.load() < 4 && clock_type::now() < give_up) {
    }
    const int ran_while_hogging = ran.load();
    for (auto& f : queued) f.join();
    return ran_while_hogging;
  });
  const int n = hog.join();
  EXPECT_EQ(ran.load(), 8);
  return n;
}

TEST(PinningTest, WithSparesForCpuHogsASpareRunsTheFibersQueuedBehindAHog) {
  // With no idle carrier to wake, the monitor brings a spare online for the
  // queued fibers within an interval or two (5 ms each), and the kernel
  // shares the cores between the two. Before the option, none ran until the
  // hog ended: the loop ran its 2 s and the count was 0.
  auto o = options(1, /*intercept=*/true);
  o.spares_for_cpu_hogs = true;
  auto rt = bobbin::runtime::start(o).value();
  EXPECT_GE(queued_fibers_run_while_one_hogs(*rt, 2s), 4);
  EXPECT_GE(rt->stats().spare_activations, 1u);
}

TEST(PinningTest, ByDefaultAHogGetsNoSpare) {
  // One carrier runs one fiber at a time unless a carrier blocks: a fiber
  // computing for 100 ms keeps the queued ones waiting.
  auto rt = bobbin::runtime::start(options(1, /*intercept=*/true)).value();
  EXPECT_EQ(queued_fibers_run_while_one_hogs(*rt, 100ms), 0);
  EXPECT_EQ(rt->stats().spare_activations, 0u);
}

TEST(PinningTest, DetectionCanBeTurnedOff) {
  recorder rec;
  auto rt = bobbin::runtime::start({.carriers = 1, .pin_threshold = 0ms}).value();
  rt->set_pin_listener(rec.listener());
  rt->spawn([] { busy_spin_for_ms(60); }).join();
  EXPECT_TRUE(rec.detected().empty());
  EXPECT_EQ(rt->stats().pin_events, 0u);
}

TEST(PinningTest, PinnedRegionKeepsTheFiberOnItsCarrierThread) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  auto same = rt->spawn([] {
    bobbin::pinned_scope pin("thread-affine");
    auto tid = std::this_thread::get_id();
    bool all_same = true;
    for (int i = 0; i < 20; i++) {
      bobbin::this_fiber::sleep_for(1ms);
      bobbin::this_fiber::yield();
      all_same = all_same && std::this_thread::get_id() == tid;
    }
    return all_same;
  });
  EXPECT_TRUE(same.join());
}

}  // namespace
