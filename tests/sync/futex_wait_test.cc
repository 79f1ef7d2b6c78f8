// A fiber's futex wait (runtime/park/futex_wait.h), the primitive OS locks
// park on: woken by plain threads, by glibc's own pthread_mutex_unlock and
// by fibers; parks rather than blocks its carrier; honours deadlines without
// losing a wake; is not held back by a stuck carrier; and still waits
// correctly when forced onto its fallback.
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/runtime.h"
#include "bobbin/this_fiber.h"
#include "runtime/park/futex_wait.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::internal::futex_resume;
using bobbin::internal::futex_scope;
using bobbin::internal::futex_wait;
using bobbin::internal::futex_wait_result;
using bobbin::internal::futex_wake;
using bobbin::testing::scaled;
using clock_type = std::chrono::steady_clock;

constexpr auto kPrivate = futex_scope::process_private;
constexpr auto kReason = bobbin::wait_reason::os_lock;

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

// Waits until *word != 0, as a lock's slow path would.
void wait_until_set(const std::atomic<uint32_t>& word) {
  while (word.load() == 0) futex_wait(&word, 0, bobbin::deadline::never(), kPrivate, kReason);
}

// glibc's lock-word protocol (0 free, 1 locked, 2 locked with waiters), the
// way OS locks will use the primitive.
struct word_lock {
  std::atomic<uint32_t> word{0};
  void lock() {
    uint32_t expected = 0;
    if (word.compare_exchange_strong(expected, 1, std::memory_order_acquire)) return;
    while (word.exchange(2, std::memory_order_acquire) != 0) {
      futex_wait(&word, 2, bobbin::deadline::never(), kPrivate, kReason);
    }
  }
  void unlock() {
    if (word.exchange(0, std::memory_order_release) > 1) futex_wake(&word, 1, kPrivate);
  }
};

class FutexWaitTest : public ::testing::TestWithParam<unsigned> {};

TEST_P(FutexWaitTest, ThreadWakesAParkedFiberWhileItsCarrierRunsOthers) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(GetParam())).value();
  std::atomic<uint32_t> word{0};
  std::atomic<bool> waiting{false};
  std::atomic<int> ticks{0};
  auto waiter = rt->spawn([&] {
    waiting = true;
    wait_until_set(word);
    return word.load();
  });
  // On one carrier this fiber shares it with the waiter: it ticks only if
  // the waiter parked instead of blocking the carrier.
  auto ticker = rt->spawn([&] {
    while (word.load() == 0) {
      bobbin::this_fiber::sleep_for(1ms);
      ticks++;
    }
  });
  while (!waiting) std::this_thread::sleep_for(1ms);
  // Until the ticker has run 5 times while the waiter waits (on a carrier
  // the waiter blocked it never would), 5 s at most.
  const auto give_up = clock_type::now() + 5s;
  while (ticks.load() < 5 && clock_type::now() < give_up) std::this_thread::sleep_for(1ms);
  word.store(7);
  futex_wake(&word, 1, kPrivate);
  EXPECT_EQ(waiter.join(), 7u);
  ticker.join();
  EXPECT_GE(ticks.load(), 5) << "the waiting fiber blocked its carrier";
  EXPECT_GE(rt->stats().futex_parks, 1u);
}

TEST_P(FutexWaitTest, ValueAlreadyChangedReturnsAtOnce) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(GetParam())).value();
  std::atomic<uint32_t> word{3};
  auto r = rt->spawn([&] { return futex_wait(&word, 0, bobbin::deadline::never(), kPrivate, kReason); }).join();
  EXPECT_EQ(r, futex_wait_result::value_changed);
}

TEST_P(FutexWaitTest, DeadlinePassesWithoutAWake) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(GetParam())).value();
  std::atomic<uint32_t> word{0};
  auto [r, ms] = rt->spawn([&] {
                     const auto t0 = clock_type::now();
                     auto r = futex_wait(&word, 0, 30ms, kPrivate, kReason);
                     return std::make_pair(r, ms_since(t0));
                   }).join();
  EXPECT_EQ(r, futex_wait_result::timed_out);
  EXPECT_GE(ms, 29.0);
  EXPECT_LT(ms, scaled(std::chrono::milliseconds(500)).count());
}

TEST_P(FutexWaitTest, GlibcUnlockWakesAFiberWaitingOnTheLockWord) {
  // A plain thread holds a glibc mutex; a fiber follows glibc's protocol on
  // its lock word and parks; glibc's own pthread_mutex_unlock must wake it.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(GetParam())).value();
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  auto* word = reinterpret_cast<std::atomic<uint32_t>*>(&m.__data.__lock);
  ASSERT_EQ(pthread_mutex_lock(&m), 0);
  std::atomic<bool> waiting{false};
  auto f = rt->spawn([&] {
    waiting = true;
    const auto t0 = clock_type::now();
    while (word->exchange(2, std::memory_order_acquire) != 0) {
      futex_wait(word, 2, bobbin::deadline::never(), kPrivate, kReason);
    }
    const double waited = ms_since(t0);
    if (word->exchange(0, std::memory_order_release) > 1) futex_wake(word, 1, kPrivate);
    return waited;
  });
  while (!waiting) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(30ms);
  ASSERT_EQ(pthread_mutex_unlock(&m), 0);
  EXPECT_GE(f.join(), 29.0);
  // glibc's bookkeeping is intact: the mutex can be taken and destroyed.
  ASSERT_EQ(pthread_mutex_trylock(&m), 0);
  ASSERT_EQ(pthread_mutex_unlock(&m), 0);
  EXPECT_EQ(pthread_mutex_destroy(&m), 0);
}

TEST_P(FutexWaitTest, FibersAndThreadsShareOneLockWithoutLosingAnIncrement) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(GetParam())).value();
  word_lock lock;
  long counter = 0;  // not atomic: the lock must protect it
  constexpr int kFibers = 100, kThreads = 8, kEach = 200;
  std::vector<bobbin::fiber<>> fibers;
  for (int i = 0; i < kFibers; i++) {
    fibers.push_back(rt->spawn([&] {
      for (int j = 0; j < kEach; j++) {
        lock.lock();
        long v = counter;
        if (j % 16 == 0) bobbin::this_fiber::yield();  // hold it across a park
        counter = v + 1;
        lock.unlock();
      }
    }));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&] {
      for (int j = 0; j < kEach; j++) {
        lock.lock();
        counter++;
        lock.unlock();
      }
    });
  }
  for (auto& f : fibers) f.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, long{kFibers + kThreads} * kEach);
}

TEST_P(FutexWaitTest, NoWakeIsLostToATimeout) {
  // Every FUTEX_WAKE that reports a woken waiter must show up as `woken` in
  // the fiber, even when the fiber's deadline passes at the same moment.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(GetParam())).value();
  const int rounds = bobbin::testing::kUnderSanitizer ? 300 : 2000;
  std::atomic<uint32_t> word{0};
  std::atomic<int> armed{-1}, finished{-1}, checked{-1};
  std::vector<futex_wait_result> results(rounds);
  auto f = rt->spawn([&] {
    std::minstd_rand rng(7);
    for (int i = 0; i < rounds; i++) {
      armed.store(i);
      results[i] = futex_wait(&word, 0, std::chrono::microseconds(50 + rng() % 200), kPrivate, kReason);
      finished.store(i);
      while (checked.load() != i) bobbin::this_fiber::yield();  // one round at a time
    }
  });
  std::minstd_rand rng(11);
  int woke = 0, lost = 0;
  for (int i = 0; i < rounds; i++) {
    while (armed.load() != i) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 250));
    const int n = futex_wake(&word, 1, kPrivate);
    while (finished.load() != i) std::this_thread::yield();
    if (n == 1) {
      woke++;
      if (results[i] != futex_wait_result::woken) lost++;
    }
    checked.store(i);
  }
  f.join();
  EXPECT_EQ(lost, 0) << "of " << woke << " wakes that found the fiber waiting";
  EXPECT_GT(woke, 0);
  RecordProperty("wakes_that_found_the_fiber", woke);
}

INSTANTIATE_TEST_SUITE_P(Carriers, FutexWaitTest, ::testing::Values(1u, 2u),
                         [](const auto& info) { return std::to_string(info.param) + "_carriers"; });

__attribute__((noinline)) ssize_t blocking_pipe_read(int fd) {
  char c;
  ssize_t n = ::read(fd, &c, 1);
  asm volatile("" ::: "memory");
  return n;
}

TEST(FutexWaitStuckCarrierTest, AStuckCarrierDoesNotHoldBackAWokenFiber) {
  // One carrier: the waiter parks on it, then another fiber blocks it in a
  // plain read(2) (interception off) for 1 s. A wait armed on the carrier's
  // own ring would be delivered only when the carrier enters its ring again,
  // after the read; armed on the futex ring, the woken fiber runs at once on
  // the spare carrier the pinning monitor brings up for the stuck one.
  bobbin::runtime_options o = bobbin::testing::carriers(1);
  o.intercept_blocking_calls = false;
  auto rt = bobbin::runtime::start(o).value();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::atomic<uint32_t> word{0};
  std::atomic<bool> waiting{false};
  clock_type::time_point woken_at{};
  auto waiter = rt->spawn([&] {
    waiting = true;
    wait_until_set(word);
    return ms_since(woken_at);
  });
  while (!waiting) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  auto blocker = rt->spawn([&] { return blocking_pipe_read(p[0]); });
  std::this_thread::sleep_for(100ms);  // the carrier is stuck in read(2) by now
  woken_at = clock_type::now();
  word.store(1);
  futex_wake(&word, 1, kPrivate);
  std::thread unblock([&] {
    std::this_thread::sleep_for(1s);
    ASSERT_EQ(::write(p[1], "x", 1), 1);
  });
  const double resumed_after_ms = waiter.join();
  unblock.join();
  EXPECT_EQ(blocker.join(), 1);
  ::close(p[0]);
  ::close(p[1]);
  // The monitor activates the spare within its threshold (20 ms) of the
  // stuck read; the fiber then runs at once, far before the read ends.
  EXPECT_LT(resumed_after_ms, scaled(std::chrono::milliseconds(300)).count());
  RecordProperty("resumed_after_ms", std::to_string(resumed_after_ms));
  EXPECT_GE(rt->stats().spare_activations, 1u);
  // The stuck carrier could not reap the wake: the monitor did. (On epoll
  // the wait is in bobbin's futex table: the wake itself readied the fiber.)
  if (rt->stats().backend == bobbin::io_backend::io_uring) {
    EXPECT_GE(rt->stats().futex_completions_reaped_by_monitor, 1u);
  }
}

TEST(FutexWaitReapTest, ASleepingCarrierReapsItsOwnWakes) {
  // One carrier and nothing else to run: between wakes it sleeps in its own
  // ring, and only the poll it arms on its futex ring wakes it when a
  // thread's FUTEX_WAKE completes the fiber's wait. Were that poll missing,
  // every completion would wait for the pinning monitor (a tick of 10 ms
  // here) and be counted as reaped by it.
  bobbin::runtime_options o = bobbin::testing::carriers(1);
  o.pin_threshold = std::chrono::milliseconds(10000);
  auto rt = bobbin::runtime::start(o).value();
  constexpr uint32_t kRounds = 100;
  std::atomic<uint32_t> to_fiber{0};
  std::atomic<uint32_t> to_thread{0};
  auto pong = rt->spawn([&] {
    for (uint32_t i = 1; i <= kRounds; i++) {
      while (to_fiber.load() < i) futex_wait(&to_fiber, i - 1, bobbin::deadline::never(), kPrivate, kReason);
      to_thread.store(i);
      to_thread.notify_one();
    }
  });
  for (uint32_t i = 1; i <= kRounds; i++) {
    to_fiber.store(i);
    futex_wake(&to_fiber, 1, kPrivate);
    while (to_thread.load() < i) to_thread.wait(i - 1);
  }
  pong.join();
  const auto s = rt->stats();
  EXPECT_GE(s.futex_parks, 1u);
  // A carrier descheduled for a whole tick while a completion waits (a busy
  // test machine) is reaped by the monitor now and then; not most rounds.
  EXPECT_LE(s.futex_completions_reaped_by_monitor, kRounds / 4);
  RecordProperty("futex_parks", std::to_string(s.futex_parks));
}

TEST(FutexWaitReapTest, ThousandsOfWaitersWokenAtOnceAllResume) {
  // More waiters on one carrier than its futex ring's completion queue
  // holds (2,048): one wake of all of them overflows it into the kernel's
  // list, which only an enter brings back; every fiber must still resume.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  constexpr int kWaiters = 3000;
  std::atomic<uint32_t> word{0};
  std::vector<bobbin::fiber<uint32_t>> fs;
  fs.reserve(kWaiters);
  for (int i = 0; i < kWaiters; i++) {
    fs.push_back(rt->spawn([&] {
      wait_until_set(word);
      return word.load();
    }));
  }
  const auto give_up = clock_type::now() + 60s;
  while (rt->stats().futex_parks < static_cast<uint64_t>(kWaiters) && clock_type::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_GE(rt->stats().futex_parks, static_cast<uint64_t>(kWaiters)) << "the waiters did not all park";
  word.store(1);
  futex_wake(&word, kWaiters, kPrivate);
  int resumed = 0;
  for (auto& f : fs) resumed += f.join() == 1u ? 1 : 0;
  EXPECT_EQ(resumed, kWaiters);
}

TEST(FutexWaitFallbackTest, WithoutTheFutexRingWaitsParkInTheTableAndWakesReachThem) {
  // BOBBIN_FUTEX_RING=off: what a kernel before 6.7 or the epoll backend
  // gets. The wait parks in bobbin's futex table (futex_table.h), its
  // carrier free for the other fibers; a plain thread's futex_wake() reaches
  // it, counted in the wake's answer, and a deadline still ends it.
  ::setenv("BOBBIN_FUTEX_RING", "off", 1);
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  ::unsetenv("BOBBIN_FUTEX_RING");
  std::atomic<uint32_t> word{0};
  std::atomic<bool> waiting{false};
  auto waiter = rt->spawn([&] {
    waiting = true;
    wait_until_set(word);
    return word.load();
  });
  while (!waiting) std::this_thread::sleep_for(1ms);
  // The one carrier is free: another fiber runs while the waiter waits.
  EXPECT_EQ(rt->spawn([] { return 7; }).join(), 7);
  while (rt->stats().futex_parks == 0) std::this_thread::sleep_for(1ms);
  word.store(5);
  EXPECT_EQ(futex_wake(&word, 1, kPrivate), 1) << "the wake did not reach the fiber in the table";
  EXPECT_EQ(waiter.join(), 5u);
  std::atomic<uint32_t> other{0};
  auto r = rt->spawn([&] { return futex_wait(&other, 0, 20ms, kPrivate, kReason); }).join();
  EXPECT_EQ(r, futex_wait_result::timed_out);
  // A wake of the other scope, or with a disjoint bitset, is not this
  // wait's: the kernel would not deliver it either.
  std::atomic<uint32_t> picky{0};
  auto bitset_waiter = rt->spawn([&] {
    return futex_wait(&picky, 0, bobbin::deadline::never(), kPrivate, kReason, futex_resume::any_carrier, 0b01);
  });
  while (rt->stats().futex_parks < 3) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(futex_wake(&picky, 1, bobbin::internal::futex_scope::shared), 0);
  EXPECT_EQ(futex_wake(&picky, 1, kPrivate, 0b10), 0);
  EXPECT_EQ(futex_wake(&picky, 1, kPrivate, 0b11), 1);
  EXPECT_EQ(bitset_waiter.join(), futex_wait_result::woken);
  EXPECT_EQ(rt->stats().pin_events, 0u) << "a futex wait blocked its carrier";
}

}  // namespace
