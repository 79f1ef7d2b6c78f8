// Futex waits on fibers (runtime/intercept/futex_calls.cc): the standard
// library's waits that go through syscall(SYS_futex) -- std::future,
// std::async, std::latch, std::barrier, std::counting_semaphore,
// std::atomic::wait and the guard of a function-local static -- used
// unmodified by fibers and plain threads together. A wait parks the fiber;
// a wake from a thread or a fiber resumes it; no carrier is held meanwhile
// (no pin events, a bystander fiber stays on time).
#include <gtest/gtest.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdint>
#include <deque>
#include <future>
#include <latch>
#include <mutex>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "bobbin/fiber.h"
#include "bobbin/pinning.h"
#include "bobbin/runtime.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/delayed_pool.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::testing::ms_since;
using bobbin::testing::scaled;
using clock_type = std::chrono::steady_clock;

// Pin events seen by a runtime's listener. Under the sanitizers, which run
// everything 5-20x slower, a carrier descheduled or slowed past the 20 ms
// threshold shows up as a `cpu` event: only a blocked carrier (a wait that
// was not taken over) counts there.
struct pin_count {
  std::mutex mu;
  std::vector<bobbin::pin_event> events;
  bobbin::pin_listener listener() {
    return [this](const bobbin::pin_event& e) {
      if (e.ended || (bobbin::testing::kUnderSanitizer && e.reason == bobbin::pin_reason::cpu)) return;
      std::lock_guard l(mu);
      events.push_back(e);
    };
  }
  size_t detected() {
    std::lock_guard l(mu);
    return events.size();
  }
  std::string first() {
    std::lock_guard l(mu);
    return events.empty() ? "" : bobbin::format_pin_event(events[0], true);
  }
};

using bobbin::testing::delayed_pool;

// A fiber that sleeps 5 ms in a loop until `stop`, returning its worst
// lateness in milliseconds at the 99th percentile.
double bystander_p99(const std::atomic<bool>& stop) {
  std::vector<double> late;
  while (!stop.load(std::memory_order_relaxed)) {
    const auto t = clock_type::now();
    bobbin::this_fiber::sleep_for(5ms);
    late.push_back(ms_since(t) - 5.0);
  }
  if (late.empty()) return 0;
  std::sort(late.begin(), late.end());
  return late[late.size() * 99 / 100];
}

TEST(FutexCallsTest, FibersGetFuturesThatAThreadPoolFulfils) {
  pin_count pins;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener(pins.listener());
  delayed_pool pool(4, 20ms);
  std::atomic<bool> stop{false};
  auto bystander = rt->spawn([&] { return bystander_p99(stop); });
  constexpr int kCallers = 200;
  constexpr int kCalls = 10;
  std::vector<bobbin::fiber<int>> callers;
  for (int i = 0; i < kCallers; i++) {
    callers.push_back(rt->spawn([&pool, i] {
      int right = 0;
      for (int n = 0; n < kCalls; n++) {
        const long v = i * 1000L + n;
        right += pool.submit(v).get() == v + 1;
      }
      return right;
    }));
  }
  const auto t0 = clock_type::now();
  for (auto& f : callers) EXPECT_EQ(f.join(), kCalls);
  const double took = ms_since(t0);
  stop = true;
  const double p99 = bystander.join();
  // 10 rounds of 20 ms each, all 200 callers waiting at once: about 200 ms
  // if every caller waits in parallel; 4 callers at a time (what a blocked
  // carrier allows) would take seconds.
  EXPECT_LT(took, scaled(1500ms).count());
  EXPECT_EQ(pins.detected(), 0u) << pins.first();
  if (!bobbin::testing::kUnderSanitizer) {
    EXPECT_LT(p99, 10.0);
  }
  EXPECT_GE(rt->stats().futex_parks, static_cast<uint64_t>(kCallers));
}

TEST(FutexCallsTest, StdAsyncIsAwaitedFromFibers) {
  pin_count pins;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener(pins.listener());
  std::vector<bobbin::fiber<bool>> fs;
  for (int i = 0; i < 50; i++) {
    fs.push_back(rt->spawn([i] {
      auto f = std::async(std::launch::async, [i] {
        std::this_thread::sleep_for(30ms);
        return i * i;
      });
      return f.get() == i * i;
    }));
  }
  for (auto& f : fs) EXPECT_TRUE(f.join());
  EXPECT_EQ(pins.detected(), 0u) << pins.first();
}

TEST(FutexCallsTest, LatchAndBarrierAcrossFibersAndThreads) {
  pin_count pins;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener(pins.listener());
  constexpr int kFibers = 100, kThreads = 4, kPhases = 5;
  std::latch all_started(kFibers + kThreads);
  std::atomic<int> completions{0};
  std::atomic<int> arrived{0};
  std::atomic<bool> phase_saw_all{true};
  std::barrier phase(kFibers + kThreads, [&]() noexcept {
    // Runs once per phase, after every participant arrived.
    if (arrived.exchange(0) != kFibers + kThreads) phase_saw_all = false;
    completions++;
  });
  auto participant = [&] {
    all_started.arrive_and_wait();
    for (int p = 0; p < kPhases; p++) {
      arrived++;
      phase.arrive_and_wait();
    }
  };
  std::vector<bobbin::fiber<void>> fs;
  for (int i = 0; i < kFibers; i++) fs.push_back(rt->spawn(participant));
  std::vector<std::thread> ts;
  for (int i = 0; i < kThreads; i++) {
    ts.emplace_back([&] {
      std::this_thread::sleep_for(20ms);  // the fibers wait for the threads
      participant();
    });
  }
  for (auto& f : fs) f.join();
  for (auto& t : ts) t.join();
  EXPECT_EQ(completions.load(), kPhases);
  EXPECT_TRUE(phase_saw_all.load());
  EXPECT_EQ(pins.detected(), 0u) << pins.first();
}

TEST(FutexCallsTest, CountingSemaphoreNeverLetsInMoreThanItsCount) {
  pin_count pins;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener(pins.listener());
  std::counting_semaphore<8> slots(8);
  std::atomic<int> in_use{0}, most{0}, uses{0};
  auto use = [&] {
    for (int n = 0; n < 5; n++) {
      slots.acquire();
      const int now = ++in_use;
      int m = most.load();
      while (now > m && !most.compare_exchange_weak(m, now)) {
      }
      std::this_thread::sleep_for(1ms);  // parks the fiber, holding a slot
      --in_use;
      uses++;
      slots.release();
    }
  };
  std::vector<bobbin::fiber<void>> fs;
  for (int i = 0; i < 100; i++) fs.push_back(rt->spawn(use));
  std::vector<std::thread> ts;
  for (int i = 0; i < 4; i++) ts.emplace_back(use);
  for (auto& f : fs) f.join();
  for (auto& t : ts) t.join();
  EXPECT_EQ(uses.load(), 104 * 5);
  EXPECT_LE(most.load(), 8);
  EXPECT_GE(most.load(), 2);
  EXPECT_EQ(pins.detected(), 0u) << pins.first();
}

TEST(FutexCallsTest, AtomicWaitPingPongBetweenAFiberAndAThread) {
  pin_count pins;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener(pins.listener());
  constexpr int kRounds = 2000;
  std::atomic<int> ball{0};  // odd: the fiber's turn; even: the thread's
  const uint64_t parks_before = rt->stats().futex_parks;
  std::thread thread([&] {
    for (int r = 0; r < kRounds; r++) {  // the ball holds 2r: the thread's turn
      // Now and then the thread takes its time, so that the fiber's wait
      // outlasts libstdc++'s spinning and reaches the futex.
      if (r % 200 == 0) std::this_thread::sleep_for(2ms);
      ball.store(2 * r + 1);
      ball.notify_one();
      while (ball.load() == 2 * r + 1) ball.wait(2 * r + 1);
    }
  });
  std::atomic<bool> stop{false};
  auto bystander = rt->spawn([&] { return bystander_p99(stop); });
  auto player = rt->spawn([&] {
    int returned = 0;
    for (int r = 0; r < kRounds; r++) {
      while (ball.load() != 2 * r + 1) ball.wait(2 * r);
      ball.store(2 * r + 2);
      ball.notify_one();
      returned++;
    }
    return returned;
  });
  EXPECT_EQ(player.join(), kRounds);
  thread.join();
  EXPECT_GT(rt->stats().futex_parks, parks_before) << "the fiber's waits parked";
  stop = true;
  bystander.join();
  EXPECT_EQ(ball.load(), 2 * kRounds);
  EXPECT_EQ(pins.detected(), 0u) << pins.first();
}

// Constructed once by whichever fiber gets there first; the constructor
// parks for 10 ms, so the others wait in __cxa_guard_acquire meanwhile.
// ThreadSanitizer replaces __cxa_guard_acquire with its own interceptor,
// which waits with a raw futex call no interposer sees: there the waiters
// block their carriers, and a constructor that parked bound to one of them
// would never resume. Under TSan the constructor therefore spins, and the
// test checks only that the static is built once and seen by all.
std::atomic<int> slow_constructions{0};
struct slow_to_build {
  slow_to_build() {
    slow_constructions++;
    if (bobbin::testing::kUnderTsan) {
      const auto until = clock_type::now() + 10ms;
      while (clock_type::now() < until) {
      }
    } else {
      std::this_thread::sleep_for(10ms);  // parks the constructing fiber
    }
    ready = 42;
  }
  int ready = 0;
};

__attribute__((noinline)) const slow_to_build& the_slow_static() {
  static const slow_to_build instance;
  return instance;
}

TEST(FutexCallsTest, FibersRacingIntoAFunctionLocalStaticWaitByParking) {
  // Built already when gtest repeats the test: then only "seen by all".
  const bool first_run = slow_constructions.load() == 0;
  pin_count pins;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener(pins.listener());
  std::atomic<bool> stop{false};
  auto bystander = rt->spawn([&] { return bystander_p99(stop); });
  std::vector<bobbin::fiber<const slow_to_build*>> fs;
  for (int i = 0; i < 100; i++) {
    fs.push_back(rt->spawn([] {
      const slow_to_build& s = the_slow_static();
      EXPECT_EQ(s.ready, 42);
      return &s;
    }));
  }
  const slow_to_build* first = fs[0].join();
  for (size_t i = 1; i < fs.size(); i++) EXPECT_EQ(fs[i].join(), first);
  stop = true;
  bystander.join();
  EXPECT_EQ(slow_constructions.load(), 1);
  if (bobbin::testing::kUnderTsan || !first_run) return;  // TSan's guard (above)
  EXPECT_EQ(pins.detected(), 0u) << pins.first();
  EXPECT_GE(rt->stats().futex_parks, 1u) << "the other fibers waited for the guard";
}

TEST(FutexCallsTest, TimedWaitsExpire) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::vector<bobbin::fiber<void>> fs;
  for (int i = 0; i < 10; i++) {
    fs.push_back(rt->spawn([] {
      std::promise<int> never;
      auto f = never.get_future();
      // steady clock: FUTEX_WAIT_BITSET, shared, absolute monotonic time.
      auto t0 = clock_type::now();
      EXPECT_EQ(f.wait_for(20ms), std::future_status::timeout);
      double took = ms_since(t0);
      EXPECT_GE(took, 19.0);
      EXPECT_LT(took, scaled(200ms).count());
      // system clock: FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, absolute.
      t0 = clock_type::now();
      EXPECT_EQ(f.wait_until(std::chrono::system_clock::now() + 20ms), std::future_status::timeout);
      took = ms_since(t0);
      EXPECT_GE(took, 19.0);
      EXPECT_LT(took, scaled(200ms).count());
      // A private wait with an absolute steady time: the semaphore.
      std::counting_semaphore<1> none(0);
      t0 = clock_type::now();
      EXPECT_FALSE(none.try_acquire_for(20ms));
      took = ms_since(t0);
      EXPECT_GE(took, 19.0);
      EXPECT_LT(took, scaled(200ms).count());
      never.set_value(1);
      EXPECT_EQ(f.wait_for(0ms), std::future_status::ready);
    }));
  }
  for (auto& f : fs) f.join();
  // Each fiber's three timed waits parked (the kernel would give the same
  // answers to a blocked carrier).
  EXPECT_GE(rt->stats().futex_parks, 30u);
}

long futex(const std::atomic<uint32_t>* w, int op, uint32_t val, const timespec* ts, uint32_t val3 = 0) {
  return ::syscall(SYS_futex, reinterpret_cast<const uint32_t*>(w), op, val, ts, nullptr, val3);
}

TEST(FutexCallsTest, RawFutexCallsAnswerAsTheKernelDoes) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->spawn([&] {
    std::atomic<uint32_t> word{7};
    // The word does not hold the value: EAGAIN, private or shared.
    errno = 0;
    EXPECT_EQ(futex(&word, FUTEX_WAIT_PRIVATE, 8, nullptr), -1);
    EXPECT_EQ(errno, EAGAIN);
    errno = 0;
    EXPECT_EQ(futex(&word, FUTEX_WAIT, 8, nullptr), -1);
    EXPECT_EQ(errno, EAGAIN);
    // A relative timeout: ETIMEDOUT after it.
    timespec ten_ms{0, 10'000'000};
    auto t0 = clock_type::now();
    errno = 0;
    EXPECT_EQ(futex(&word, FUTEX_WAIT_PRIVATE, 7, &ten_ms), -1);
    EXPECT_EQ(errno, ETIMEDOUT);
    EXPECT_GE(ms_since(t0), 9.5);
    EXPECT_GE(rt->stats().futex_parks, 1u) << "the timed wait parked";
    // An absolute time already past, on either clock: ETIMEDOUT at once.
    timespec past{1, 0};
    errno = 0;
    EXPECT_EQ(futex(&word, FUTEX_WAIT_BITSET, 7, &past, FUTEX_BITSET_MATCH_ANY), -1);
    EXPECT_EQ(errno, ETIMEDOUT);
    errno = 0;
    EXPECT_EQ(futex(&word, FUTEX_WAIT_BITSET_PRIVATE | FUTEX_CLOCK_REALTIME, 7, &past, FUTEX_BITSET_MATCH_ANY), -1);
    EXPECT_EQ(errno, ETIMEDOUT);
    // Malformed: a bad timespec, an empty bitset.
    timespec bad{0, 2'000'000'000};
    errno = 0;
    EXPECT_EQ(futex(&word, FUTEX_WAIT_PRIVATE, 7, &bad), -1);
    EXPECT_EQ(errno, EINVAL);
    errno = 0;
    EXPECT_EQ(futex(&word, FUTEX_WAIT_BITSET_PRIVATE, 7, nullptr, 0), -1);
    EXPECT_EQ(errno, EINVAL);
    // Every other call passes through.
    EXPECT_EQ(::syscall(SYS_getpid), ::getpid());
    EXPECT_EQ(futex(&word, FUTEX_WAKE_PRIVATE, 1, nullptr), 0);
  }).join();
}

// A wait armed with shared flags is woken by a shared wake from a thread,
// and a bitset wait only by a wake whose bitset overlaps its own.
TEST(FutexCallsTest, SharedAndBitsetWaitsAreWokenByTheirOwnWakes) {
  pin_count pins;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener(pins.listener());
  std::atomic<uint32_t> shared_word{0}, bitset_word{0};
  std::atomic<int> waiting{0};
  auto shared_waiter = rt->spawn([&] {
    waiting++;
    while (shared_word.load() == 0) futex(&shared_word, FUTEX_WAIT, 0, nullptr);
    return shared_word.load();
  });
  auto bitset_waiter = rt->spawn([&] {
    waiting++;
    int woken = 0;
    while (bitset_word.load() == 0) {
      if (futex(&bitset_word, FUTEX_WAIT_BITSET_PRIVATE, 0, nullptr, 0x2) == 0) woken++;
    }
    return woken;
  });
  // Both are parked once the runtime has counted two futex parks.
  for (int i = 0; i < 5000 && rt->stats().futex_parks < 2; i++) std::this_thread::sleep_for(1ms);
  ASSERT_GE(rt->stats().futex_parks, 2u);
  // A wake for other bits does not reach the bitset waiter.
  EXPECT_EQ(futex(&bitset_word, FUTEX_WAKE_BITSET_PRIVATE, 1, nullptr, 0x1), 0);
  bitset_word = 1;
  long n = 0;
  for (int i = 0; i < 1000 && n == 0; i++) {
    n = futex(&bitset_word, FUTEX_WAKE_BITSET_PRIVATE, 1, nullptr, 0x2);
    if (n == 0) std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(n, 1);
  EXPECT_EQ(bitset_waiter.join(), 1);
  shared_word = 5;
  futex(&shared_word, FUTEX_WAKE, INT_MAX, nullptr);
  EXPECT_EQ(shared_waiter.join(), 5u);
  EXPECT_EQ(pins.detected(), 0u) << pins.first();
}

// FUTEX_WAKE_OP: the kernel changes the second word and wakes its waiters
// if the old value compares as asked. On epoll a fiber waits for that word
// in bobbin's futex table, and must be woken after the change: woken
// before, it would find the old value and wait again for good.
TEST(FutexCallsTest, WakeOpWakesTheSecondWordsWaiterAfterChangingIt) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  std::atomic<uint32_t> first{0}, second{0};
  auto waiter = rt->spawn([&] {
    int waits = 0;
    while (second.load() == 0) {
      futex(&second, FUTEX_WAIT_PRIVATE, 0, nullptr);
      waits++;
    }
    return waits;
  });
  for (int i = 0; i < 5000 && rt->stats().futex_parks < 1; i++) std::this_thread::sleep_for(1ms);
  ASSERT_GE(rt->stats().futex_parks, 1u);
  // *second = 1, and wake one waiter of `second` if it was 0.
  const long woken = ::syscall(SYS_futex, &first, FUTEX_WAKE_OP_PRIVATE, 1, 1, &second,
                               FUTEX_OP(FUTEX_OP_SET, 1, FUTEX_OP_CMP_EQ, 0));
  EXPECT_GE(woken, 0);
  EXPECT_EQ(waiter.join(), 1);
  EXPECT_EQ(second.load(), 1u);
}

// A pinned fiber's futex wait blocks its carrier, and the pinning report
// says so: the wait is not taken over.
TEST(FutexCallsTest, APinnedFibersWaitBlocksItsCarrierAndIsReported) {
  pin_count pins;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener(pins.listener());
  std::atomic<int> ball{0};
  auto pinned = rt->spawn([&] {
    bobbin::pinned_scope pin("futex_calls_test: pinned atomic wait");
    ball.wait(0);
    return ball.load();
  });
  std::this_thread::sleep_for(scaled(150ms));
  ball = 1;
  ball.notify_all();
  EXPECT_EQ(pinned.join(), 1);
  std::this_thread::sleep_for(30ms);
  EXPECT_GE(pins.detected(), 1u);
  EXPECT_NE(pins.first().find("futex wait"), std::string::npos) << pins.first();
}

// Abseil's waits are not taken over (a per-thread waiter record: see
// futex_calls.cc): an absl::Notification waited on by fibers still works,
// blocking the carrier while it waits.
TEST(FutexCallsTest, AbseilWaitsStillWorkOnFibers) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  absl::Notification done;
  absl::Mutex mu;
  // Atomic: Debian's Abseil is not built with TSan, which cannot see what
  // absl::Mutex orders.
  std::atomic<int> counter{0};
  std::vector<bobbin::fiber<bool>> fs;
  for (int i = 0; i < 8; i++) {
    fs.push_back(rt->spawn([&] {
      {
        absl::MutexLock l(&mu);
        counter++;
      }
      return done.WaitForNotificationWithTimeout(absl::Seconds(10));
    }));
  }
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    done.Notify();
  });
  for (auto& f : fs) EXPECT_TRUE(f.join());
  t.join();
  EXPECT_EQ(counter.load(), 8);
}

// std::call_once waits inside glibc's pthread_once; a fiber that finds
// another caller running the function parks (runtime/intercept/thread_calls.cc).
TEST(FutexCallsTest, CallOnceWaitsByParking) {
  pin_count pins;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener(pins.listener());
  std::once_flag once;
  std::atomic<bool> inside{false};
  std::atomic<int> runs{0};
  std::thread first([&] {
    std::call_once(once, [&] {
      runs++;
      inside = true;
      std::this_thread::sleep_for(100ms);
    });
  });
  while (!inside.load()) std::this_thread::sleep_for(1ms);
  const uint64_t parks_before = rt->stats().futex_parks;
  std::atomic<bool> stop{false};
  auto bystander = rt->spawn([&] { return bystander_p99(stop); });
  std::vector<bobbin::fiber<void>> fs;
  for (int i = 0; i < 20; i++) fs.push_back(rt->spawn([&] { std::call_once(once, [&] { runs++; }); }));
  for (auto& f : fs) f.join();
  first.join();
  stop = true;
  bystander.join();
  EXPECT_EQ(runs.load(), 1);
  if (bobbin::testing::kUnderTsan) return;  // TSan's pthread_once (thread_calls.cc)
  EXPECT_EQ(pins.detected(), 0u) << pins.first();
  EXPECT_GE(rt->stats().futex_parks - parks_before, 1u);
}

// Two fibers of one carrier wait for the same std::async result through a
// std::shared_future: the first joins the async thread inside std::call_once
// and parks; the second waits in that call_once. Were the second to block
// the carrier, the first could never resume on it.
TEST(FutexCallsTest, FibersOfOneCarrierShareAnAsyncResult) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  for (int round = 0; round < 5; round++) {
    std::shared_future<int> result = std::async(std::launch::async, [] {
                                       std::this_thread::sleep_for(20ms);
                                       return 7;
                                     }).share();
    std::vector<bobbin::fiber<int>> fs;
    for (int i = 0; i < 4; i++) fs.push_back(rt->spawn([result] { return result.get(); }));
    for (auto& f : fs) EXPECT_EQ(f.join(), 7);
  }
}

// What is not covered blocks the carrier, and the pinning report says where:
// a FILE's lock, held by a thread for 200 ms, waited for by a fiber inside
// glibc's stdio.
TEST(FutexCallsTest, AWaitInsideGlibcIsNamedByThePinningReport) {
  std::vector<bobbin::pin_event> seen;
  std::mutex seen_mu;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->set_pin_listener([&](const bobbin::pin_event& e) {
    std::lock_guard l(seen_mu);
    if (!e.ended && e.reason == bobbin::pin_reason::syscall) seen.push_back(e);
  });
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  std::atomic<bool> held{false};
  std::thread holder([&] {
    flockfile(f);
    held = true;
    std::this_thread::sleep_for(scaled(200ms));
    funlockfile(f);
  });
  while (!held.load()) std::this_thread::sleep_for(1ms);
  auto writer = rt->spawn([&] { return std::fputs("x", f) >= 0; });
  EXPECT_TRUE(writer.join());
  holder.join();
  std::fclose(f);
  std::this_thread::sleep_for(30ms);
  std::lock_guard l(seen_mu);
  ASSERT_GE(seen.size(), 1u);
  const bobbin::pin_event& e = seen[0];
  if (bobbin::testing::kUnderTsan) {
    // TSan's stdio interceptors come first; only check that it is reported.
    EXPECT_NE(e.detail.find("futex(2)"), std::string::npos) << bobbin::format_pin_event(e, true);
    return;
  }
  EXPECT_NE(e.detail.find("inside glibc"), std::string::npos) << bobbin::format_pin_event(e, true);
  EXPECT_NE(e.detail.find("a FILE's lock"), std::string::npos) << bobbin::format_pin_event(e, true);
}

}  // namespace
