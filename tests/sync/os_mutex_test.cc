// OS mutexes on fibers (runtime/intercept/mutex_calls.cc,
// runtime/sync/os_mutex.h): std::mutex, std::recursive_mutex,
// std::timed_mutex and error-checking pthread mutexes, used unmodified by
// fibers and plain threads together. Waiting parks the fiber; the fiber, not
// its carrier, owns the lock; glibc's bookkeeping stays intact.
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/pinning.h"
#include "bobbin/runtime.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::testing::scaled;
using clock_type = std::chrono::steady_clock;

using bobbin::testing::ms_since;

// Counts critical sections that overlapped another one.
struct overlap_probe {
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  void enter() {
    if (inside.fetch_add(1) != 0) overlaps++;
  }
  void leave() { inside.fetch_sub(1); }
};

// 8 fibers each take one std::mutex 5 times and hold it across a 1 ms
// bobbin sleep: all 40 sections run, none overlapping another.
void hold_across_sleeps(bobbin::runtime& rt) {
  std::mutex mu;
  overlap_probe probe;
  long sections = 0;
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 8; i++) {
    fs.push_back(rt.spawn([&] {
      for (int j = 0; j < 5; j++) {
        std::lock_guard l(mu);
        probe.enter();
        bobbin::this_fiber::sleep_for(1ms);
        sections++;
        probe.leave();
      }
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(sections, 40);
  EXPECT_EQ(probe.overlaps.load(), 0);
}

class OsMutexTest : public ::testing::TestWithParam<unsigned> {
 protected:
  std::unique_ptr<bobbin::runtime> start() {
    return bobbin::runtime::start(bobbin::testing::carriers(GetParam())).value();
  }
};

TEST_P(OsMutexTest, FibersHoldingAStdMutexAcrossASleepAllFinish) {
  // Before: the second fiber on a carrier blocked it in futex(2) while the
  // holder, parked on that carrier, could never run to unlock: a hang.
  auto rt = start();
  hold_across_sleeps(*rt);
  EXPECT_GE(rt->stats().futex_parks, 1u) << "no waiter parked: the test did not contend";
}

TEST_P(OsMutexTest, RecursiveMutexIsOwnedByTheFiberNotItsCarrier) {
  // Before: glibc recorded the carrier's thread id as the owner, so every
  // fiber on that carrier re-entered the lock (7,479 of 7,480 overlapped).
  auto rt = start();
  std::recursive_mutex mu;
  overlap_probe probe;
  long sections = 0;
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 8; i++) {
    fs.push_back(rt->spawn([&] {
      for (int j = 0; j < 10; j++) {
        std::lock_guard a(mu);
        probe.enter();
        {
          std::lock_guard b(mu);
          bobbin::this_fiber::yield();
          std::lock_guard c(mu);
          bobbin::this_fiber::sleep_for(100us);
          sections++;
        }
        probe.leave();
      }
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(sections, 80);
  EXPECT_EQ(probe.overlaps.load(), 0);
}

TEST_P(OsMutexTest, FibersAndThreadsLoseNoIncrement) {
  auto rt = start();
  std::mutex mu;
  long counter = 0;  // not atomic: the mutex must protect it
  constexpr int kFibers = 100, kThreads = 8, kEach = 200;
  std::vector<bobbin::fiber<>> fibers;
  for (int i = 0; i < kFibers; i++) {
    fibers.push_back(rt->spawn([&] {
      for (int j = 0; j < kEach; j++) {
        std::lock_guard l(mu);
        long v = counter;
        if (j % 16 == 0) bobbin::this_fiber::yield();  // hold it across a park
        counter = v + 1;
      }
    }));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&] {
      for (int j = 0; j < kEach; j++) {
        std::lock_guard l(mu);
        counter++;
      }
    });
  }
  for (auto& f : fibers) f.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, long{kFibers + kThreads} * kEach);
}

TEST_P(OsMutexTest, ErrorCheckingMutexAnswersAsForThreads) {
  auto rt = start();
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_t m;
  ASSERT_EQ(pthread_mutex_init(&m, &attr), 0);
  pthread_mutexattr_destroy(&attr);
  std::atomic<int> stage{0};
  auto owner = rt->spawn([&] {
    std::vector<int> r;
    r.push_back(pthread_mutex_lock(&m));     // 0
    r.push_back(pthread_mutex_lock(&m));     // EDEADLK
    r.push_back(pthread_mutex_trylock(&m));  // EBUSY
    stage = 1;
    while (stage.load() != 2) bobbin::this_fiber::sleep_for(1ms);
    r.push_back(pthread_mutex_unlock(&m));  // 0
    r.push_back(pthread_mutex_unlock(&m));  // EPERM: not locked
    return r;
  });
  while (stage.load() != 1) std::this_thread::sleep_for(1ms);
  // Another fiber (on one carrier: the same carrier thread) and a plain
  // thread do not own it.
  auto other = rt->spawn([&] { return std::make_pair(pthread_mutex_unlock(&m), pthread_mutex_trylock(&m)); }).join();
  EXPECT_EQ(other.first, EPERM);
  EXPECT_EQ(other.second, EBUSY);
  // (ThreadSanitizer's own interceptor reports a plain thread's wrong
  // unlock as the misuse it is, before glibc answers EPERM.)
  if (!bobbin::testing::kUnderTsan) {
    EXPECT_EQ(pthread_mutex_unlock(&m), EPERM);
  }
  stage = 2;
  EXPECT_EQ(owner.join(), (std::vector<int>{0, EDEADLK, EBUSY, 0, EPERM}));
  // A thread can take it afterwards, and glibc's count of users is even.
  EXPECT_EQ(pthread_mutex_lock(&m), 0);
  EXPECT_EQ(pthread_mutex_unlock(&m), 0);
  EXPECT_EQ(pthread_mutex_destroy(&m), 0);
}

TEST_P(OsMutexTest, RecursiveMutexHeldByAFiberIsNotAnotherFibersOrAThreads) {
  auto rt = start();
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_t m;
  ASSERT_EQ(pthread_mutex_init(&m, &attr), 0);
  pthread_mutexattr_destroy(&attr);
  std::atomic<int> stage{0};
  auto owner = rt->spawn([&] {
    int a = pthread_mutex_lock(&m), b = pthread_mutex_trylock(&m);
    stage = 1;
    while (stage.load() != 2) bobbin::this_fiber::sleep_for(1ms);
    return a + b + pthread_mutex_unlock(&m) + pthread_mutex_unlock(&m) + (pthread_mutex_unlock(&m) == EPERM ? 0 : 1);
  });
  while (stage.load() != 1) std::this_thread::sleep_for(1ms);
  auto other = rt->spawn([&] { return std::make_pair(pthread_mutex_trylock(&m), pthread_mutex_unlock(&m)); }).join();
  EXPECT_EQ(other.first, EBUSY);
  EXPECT_EQ(other.second, EPERM);
  EXPECT_EQ(pthread_mutex_trylock(&m), EBUSY);
  if (!bobbin::testing::kUnderTsan) {
    EXPECT_EQ(pthread_mutex_unlock(&m), EPERM);  // see above
  }
  stage = 2;
  EXPECT_EQ(owner.join(), 0);
  EXPECT_EQ(pthread_mutex_destroy(&m), 0);
}

TEST_P(OsMutexTest, TimedMutexExpiresOnTimeAndSucceedsWhenReleasedInTime) {
  auto rt = start();
  std::timed_mutex mu;
  std::atomic<int> stage{0};
  auto holder = rt->spawn([&] {
    mu.lock();
    stage = 1;
    while (stage.load() != 2) bobbin::this_fiber::sleep_for(1ms);
    bobbin::this_fiber::sleep_for(20ms);
    mu.unlock();
  });
  while (stage.load() != 1) std::this_thread::sleep_for(1ms);
  auto [expired, expired_ms] = rt->spawn([&] {
                                  const auto t0 = clock_type::now();
                                  bool got = mu.try_lock_for(30ms);
                                  return std::make_pair(got, ms_since(t0));
                                }).join();
  EXPECT_FALSE(expired);
  EXPECT_GE(expired_ms, 29.0);
  EXPECT_LT(expired_ms, scaled(std::chrono::milliseconds(300)).count());
  // pthread_mutex_clocklock on the monotonic clock, and glibc's EINVAL for
  // a malformed time when it would have to wait.
  auto clock_results = rt->spawn([&] {
                          timespec now{};
                          clock_gettime(CLOCK_MONOTONIC, &now);
                          timespec soon = now;
                          soon.tv_nsec += 5'000'000;
                          if (soon.tv_nsec >= 1'000'000'000) {
                            soon.tv_sec++;
                            soon.tv_nsec -= 1'000'000'000;
                          }
                          auto* native = mu.native_handle();
                          timespec bad{0, -1};
                          return std::make_pair(pthread_mutex_clocklock(native, CLOCK_MONOTONIC, &soon),
                                                pthread_mutex_timedlock(native, &bad));
                        }).join();
  EXPECT_EQ(clock_results.first, ETIMEDOUT);
  EXPECT_EQ(clock_results.second, EINVAL);
  stage = 2;  // released in 20 ms: a 2 s try succeeds
  auto [got, got_ms] = rt->spawn([&] {
                          const auto t0 = clock_type::now();
                          bool ok = mu.try_lock_for(2s);
                          if (ok) mu.unlock();
                          return std::make_pair(ok, ms_since(t0));
                        }).join();
  holder.join();
  EXPECT_TRUE(got);
  EXPECT_LT(got_ms, scaled(std::chrono::milliseconds(500)).count());
}

TEST_P(OsMutexTest, NoWaiterStarvesUnderBarging) {
  // As MutexTest.NoWaiterStarvesUnderBarging for bobbin::mutex: 16 fibers
  // relock at once after each 1 us section. On one carrier a fiber that
  // never parks would keep the others from running at all (no lock is
  // involved in that), so there each yields once between sections.
  auto rt = start();
  const bool yield_between = GetParam() == 1;
  constexpr int kFibers = 16;
  std::mutex mu;
  long counter = 0;
  std::vector<int64_t> max_wait_us(kFibers, 0);
  std::vector<long> acquired(kFibers, 0);
  const auto end = clock_type::now() + 300ms;
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < kFibers; i++) {
    fs.push_back(rt->spawn([&, i] {
      while (clock_type::now() < end) {
        const auto asked = clock_type::now();
        mu.lock();
        const auto got = clock_type::now();
        max_wait_us[i] =
            std::max<int64_t>(max_wait_us[i], std::chrono::duration_cast<std::chrono::microseconds>(got - asked).count());
        counter++;
        while (clock_type::now() - got < 1us) {
        }
        mu.unlock();
        acquired[i]++;
        if (yield_between) bobbin::this_fiber::yield();
      }
    }));
  }
  for (auto& f : fs) f.join();
  long total = 0;
  int64_t worst = 0;
  for (int i = 0; i < kFibers; i++) {
    EXPECT_GT(acquired[i], 0) << "fiber " << i << " never got the mutex";
    total += acquired[i];
    worst = std::max(worst, max_wait_us[i]);
  }
  EXPECT_EQ(counter, total);
  const int64_t bound_us = bobbin::testing::kUnderSanitizer ? 200'000 : 100'000;
  EXPECT_LT(worst, bound_us) << "a waiter waited " << worst << " us";
  RecordProperty("worst_wait_us", std::to_string(worst));
}

TEST_P(OsMutexTest, DestroyAfterMixedThreadAndFiberUseSucceeds) {
  auto rt = start();
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  long counter = 0;
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 20; i++) {
    fs.push_back(rt->spawn([&] {
      for (int j = 0; j < 50; j++) {
        pthread_mutex_lock(&m);
        counter++;
        if (j % 8 == 0) bobbin::this_fiber::yield();
        pthread_mutex_unlock(&m);
      }
    }));
  }
  std::thread t([&] {
    for (int j = 0; j < 1000; j++) {
      pthread_mutex_lock(&m);
      counter++;
      pthread_mutex_unlock(&m);
    }
  });
  for (auto& f : fs) f.join();
  t.join();
  EXPECT_EQ(counter, 2000);
  EXPECT_EQ(m.__data.__nusers, 0u);
  EXPECT_EQ(m.__data.__owner, 0);
  EXPECT_EQ(pthread_mutex_destroy(&m), 0);
}

TEST_P(OsMutexTest, PinnedFiberStillOwnsWhatItLocks) {
  // Inside a pinned_scope the fiber waits as a thread would, but it is still
  // the owner: re-entering a recursive mutex it took outside works.
  auto rt = start();
  std::recursive_mutex mu;
  bool ok = rt->spawn([&] {
                mu.lock();
                bool inner;
                {
                  bobbin::pinned_scope pin("test");
                  inner = mu.try_lock();
                  if (inner) mu.unlock();
                }
                mu.unlock();
                return inner;
              }).join();
  EXPECT_TRUE(ok);
}

INSTANTIATE_TEST_SUITE_P(Carriers, OsMutexTest, ::testing::Values(1u, 2u),
                         [](const auto& info) { return std::to_string(info.param) + "_carriers"; });

// A read(2) inside a pinned_scope: the plain call, which blocks the carrier
// for as long as the pipe is empty (the pinning monitor sees it as pinned).
TEST(OsMutexStuckCarrierTest, AWokenFiberWaitsForItsStuckCarrierAndPassesTheWakeOn) {
  // The default rule: a fiber woken from an OS-lock wait resumes on the
  // carrier it parked on. One carrier: fiber A parks waiting for a
  // std::mutex a plain thread holds; another fiber then blocks the carrier
  // in a pinned read(2) for 1 s; fiber B, started after, runs on the spare
  // carrier the pinning monitor brings up and waits for the mutex too. The
  // thread's unlock wakes A (it queued first), which cannot run yet, so its
  // wake is passed on: B owns the mutex at once, A once its carrier is back.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::mutex mu;
  mu.lock();  // a plain thread: glibc's lock
  std::atomic<int> waiting{0};
  clock_type::time_point unlocked_at{};
  auto waiter = [&] {
    const int before = bobbin::this_fiber::carrier_index();
    waiting++;
    mu.lock();
    const double after = ms_since(unlocked_at);
    const bool same_carrier = bobbin::this_fiber::carrier_index() == before;
    mu.unlock();
    return std::make_pair(after, same_carrier);
  };
  auto a = rt->spawn(waiter);
  while (waiting.load() != 1) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  auto blocker = rt->spawn([&] { return bobbin::testing::pinned_read_byte(p[0]); });
  std::this_thread::sleep_for(100ms);  // the carrier is stuck in read(2) by now
  auto b = rt->spawn(waiter);
  while (waiting.load() != 2) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  unlocked_at = clock_type::now();
  mu.unlock();
  std::thread unblock([&] {
    std::this_thread::sleep_for(1s);
    ASSERT_EQ(::write(p[1], "x", 1), 1);
  });
  const auto [b_after_ms, b_same] = b.join();
  const auto [a_after_ms, a_same] = a.join();
  unblock.join();
  EXPECT_EQ(blocker.join(), 1);
  ::close(p[0]);
  ::close(p[1]);
  EXPECT_LT(b_after_ms, scaled(std::chrono::milliseconds(300)).count()) << "the wake was not passed on";
  EXPECT_GE(a_after_ms, 900.0) << "A ran before its carrier came back";
  EXPECT_TRUE(a_same) << "A resumed on another carrier";
  EXPECT_TRUE(b_same);
  RecordProperty("b_owned_after_ms", std::to_string(b_after_ms));
  RecordProperty("a_owned_after_ms", std::to_string(a_after_ms));
}

TEST(OsMutexStuckCarrierTest, AWakeIsPassedOnWhenTheCarrierBlocksAfterTheWake) {
  // The carrier is not stuck yet when the wake arrives, but blocks before
  // the woken fiber runs: fiber A waits for a std::mutex, then a plain
  // thread B waits too (behind it in the kernel's queue); the thread holding
  // the mutex releases it while another fiber computes on A's carrier and,
  // 10 ms later, blocks it in a pinned read(2) for 1 s. Once the pinning
  // monitor marks the carrier blocked, A's wake is passed on: B owns the
  // mutex long before A's carrier is back.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::mutex mu;
  mu.lock();
  std::atomic<bool> a_waiting{false}, b_waiting{false}, computing{false};
  auto a = rt->spawn([&] {
    a_waiting = true;
    std::lock_guard l(mu);
  });
  while (!a_waiting) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  clock_type::time_point unlocked_at{};
  std::atomic<double> b_after_ms{-1};
  std::thread b([&] {
    b_waiting = true;
    std::lock_guard l(mu);
    b_after_ms = ms_since(unlocked_at);
  });
  while (!b_waiting) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  auto blocker = rt->spawn([&] {
    computing = true;
    const auto until = clock_type::now() + 10ms;
    while (clock_type::now() < until) {
    }
    return bobbin::testing::pinned_read_byte(p[0]);
  });
  while (!computing) std::this_thread::sleep_for(100us);
  unlocked_at = clock_type::now();
  mu.unlock();  // wakes A, whose carrier is computing, not yet blocked
  std::thread unblock([&] {
    std::this_thread::sleep_for(1s);
    ASSERT_EQ(::write(p[1], "x", 1), 1);
  });
  b.join();
  a.join();
  unblock.join();
  EXPECT_EQ(blocker.join(), 1);
  ::close(p[0]);
  ::close(p[1]);
  // 10 ms of computing, then the monitor's threshold (20 ms) and tick.
  EXPECT_LT(b_after_ms.load(), scaled(std::chrono::milliseconds(300)).count()) << "the wake stayed with A";
  RecordProperty("b_owned_after_ms", std::to_string(b_after_ms.load()));
}

// Two carriers. Fiber H holds a std::mutex on one; fiber A waits for it on
// the other, then a plain thread B (behind A, in the kernel). A fiber A
// started blocks A's carrier in a pinned read(2) for 1 s, either before H
// releases the mutex (`when` = before_unlock) or 10 ms after (it computes
// meanwhile). H's unlock is one wake, for the oldest waiter: A, which cannot
// run. Returns how long after the unlock B and A owned the mutex.
enum class carrier_blocks { before_unlock, after_unlock };
struct owned_after {
  double b_ms = -1;
  double a_ms = -1;
};
owned_after thread_behind_a_stuck_fiber(carrier_blocks when) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  int p[2];
  EXPECT_EQ(::pipe(p), 0);
  std::mutex mu;
  std::atomic<int> holder_carrier{-1};
  std::atomic<bool> release{false};
  clock_type::time_point unlocked_at{};
  auto holder = rt->spawn([&] {
    mu.lock();
    holder_carrier = static_cast<int>(bobbin::this_fiber::carrier_index());
    // Keeps its carrier busy (it takes no other fiber), so that A lands on
    // the other one.
    while (!release.load()) {
    }
    unlocked_at = clock_type::now();
    mu.unlock();
  });
  while (holder_carrier.load() < 0) std::this_thread::sleep_for(1ms);

  // A, on the carrier H is not on (a fiber that lands on H's returns at
  // once and another is started), starts the blocker there before it
  // waits: the blocker is the next to run on that carrier.
  std::atomic<bool> a_waiting{false}, go{false}, computing{false};
  std::atomic<int> blocker_misplaced{0};
  std::optional<bobbin::fiber<ssize_t>> blocker;
  std::optional<bobbin::fiber<double>> a;
  for (int attempt = 0; attempt < 100 && !a; attempt++) {
    std::atomic<bool> placed{false}, rejected{false};
    auto candidate = rt->spawn([&]() -> double {
      const unsigned here = bobbin::this_fiber::carrier_index();
      if (static_cast<int>(here) == holder_carrier.load()) {
        rejected = true;
        return -1;
      }
      placed = true;
      blocker.emplace(bobbin::spawn([&, here]() -> ssize_t {
        if (bobbin::this_fiber::carrier_index() != here) blocker_misplaced++;
        while (!go.load()) bobbin::this_fiber::sleep_for(1ms);  // parked: no pinning episode yet
        computing = true;
        if (when == carrier_blocks::after_unlock) {
          const auto until = clock_type::now() + 10ms;
          while (clock_type::now() < until) {
          }
        }
        return bobbin::testing::pinned_read_byte(p[0]);
      }));
      a_waiting = true;
      mu.lock();
      const double after = ms_since(unlocked_at);
      mu.unlock();
      return after;
    });
    while (!placed.load() && !rejected.load()) std::this_thread::sleep_for(1ms);
    if (placed.load()) {
      a.emplace(std::move(candidate));
    } else {
      EXPECT_EQ(candidate.join(), -1);
    }
  }
  if (!a.has_value()) {
    ADD_FAILURE() << "no fiber landed on the carrier the holder is not on";
    release = true;
    holder.join();
    return {};
  }
  while (!a_waiting.load()) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  std::atomic<bool> b_waiting{false};
  std::atomic<double> b_after_ms{-1};
  std::thread b([&] {
    b_waiting = true;
    std::lock_guard l(mu);
    b_after_ms = ms_since(unlocked_at);
  });
  while (!b_waiting.load()) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  go = true;
  while (!computing.load()) std::this_thread::sleep_for(100us);
  // The monitor marks the carrier blocked within its threshold (20 ms) and a tick.
  if (when == carrier_blocks::before_unlock) std::this_thread::sleep_for(100ms);
  release = true;  // H's unlock wakes A
  std::thread unblock([&] {
    std::this_thread::sleep_for(1s);
    ASSERT_EQ(::write(p[1], "x", 1), 1);
  });
  holder.join();
  b.join();
  const double a_after_ms = a->join();
  unblock.join();
  EXPECT_EQ(blocker->join(), 1);
  ::close(p[0]);
  ::close(p[1]);
  EXPECT_EQ(blocker_misplaced.load(), 0) << "the blocker ran on another carrier than A's";
  return {b_after_ms.load(), a_after_ms};
}

TEST(OsMutexStuckCarrierTest, AFibersUnlockPassesTheWakeOnToAThreadWhenTheWokenFibersCarrierBlocksAfterIt) {
  // The wake reaches A while its carrier computes; once the pinning monitor
  // marks the carrier blocked, A's wake is passed on to B, which owns the
  // mutex long before A's carrier is back. (On the epoll backend A waits in
  // bobbin's futex table, which keeps it among its bound wakes until it
  // runs; on io_uring, on the futex ring.)
  const owned_after t = thread_behind_a_stuck_fiber(carrier_blocks::after_unlock);
  // 10 ms of computing, then the monitor's threshold (20 ms) and tick.
  EXPECT_LT(t.b_ms, scaled(std::chrono::milliseconds(300)).count()) << "the wake stayed with A";
  EXPECT_GE(t.a_ms, 900.0) << "A ran before its carrier came back";
  RecordProperty("b_owned_after_ms", std::to_string(t.b_ms));
  RecordProperty("a_owned_after_ms", std::to_string(t.a_ms));
}

TEST(OsMutexStuckCarrierTest, AFibersUnlockReachesAThreadWhenTheOnlyFiberWaitingIsOnABlockedCarrier) {
  // A's carrier is already marked blocked when H unlocks: the wake A gets
  // does not count (futex_table.h), so B is woken by the same unlock.
  const owned_after t = thread_behind_a_stuck_fiber(carrier_blocks::before_unlock);
  EXPECT_LT(t.b_ms, scaled(std::chrono::milliseconds(200)).count()) << "the wake stayed with A";
  EXPECT_GE(t.a_ms, 800.0) << "A ran before its carrier came back";
  RecordProperty("b_owned_after_ms", std::to_string(t.b_ms));
  RecordProperty("a_owned_after_ms", std::to_string(t.a_ms));
}

TEST(OsMutexStuckCarrierTest, WithMigrationAStuckCarrierDoesNotHoldBackTheNextOwner) {
  // runtime_options::os_lock_waiters_migrate: the woken fiber takes the lock
  // on the spare carrier, long before its own carrier's read ends.
  bobbin::runtime_options o = bobbin::testing::carriers(1);
  o.os_lock_waiters_migrate = true;
  auto rt = bobbin::runtime::start(o).value();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::mutex mu;
  mu.lock();
  std::atomic<bool> waiting{false};
  clock_type::time_point unlocked_at{};
  auto waiter = rt->spawn([&] {
    waiting = true;
    mu.lock();
    const double after = ms_since(unlocked_at);
    mu.unlock();
    return after;
  });
  while (!waiting) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  auto blocker = rt->spawn([&] { return bobbin::testing::pinned_read_byte(p[0]); });
  std::this_thread::sleep_for(100ms);
  unlocked_at = clock_type::now();
  mu.unlock();
  std::thread unblock([&] {
    std::this_thread::sleep_for(1s);
    ASSERT_EQ(::write(p[1], "x", 1), 1);
  });
  const double owned_after_ms = waiter.join();
  unblock.join();
  EXPECT_EQ(blocker.join(), 1);
  ::close(p[0]);
  ::close(p[1]);
  EXPECT_LT(owned_after_ms, scaled(std::chrono::milliseconds(300)).count());
  RecordProperty("owned_after_ms", std::to_string(owned_after_ms));
  EXPECT_GE(rt->stats().spare_activations, 1u);
}

TEST(OsMutexFallbackTest, WithoutTheFutexRingFibersParkInTheTableAndStillFinish) {
  // BOBBIN_FUTEX_RING=off: what a kernel before 6.7 or the epoll backend
  // gets. Blocking the carrier would hang here (the holder sleeps, parked
  // on the same carrier), so a waiting fiber parks in bobbin's futex table
  // (runtime/park/futex_table.h).
  ::setenv("BOBBIN_FUTEX_RING", "off", 1);
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  ::unsetenv("BOBBIN_FUTEX_RING");
  hold_across_sleeps(*rt);
  EXPECT_GE(rt->stats().futex_parks, 1u) << "no waiter parked in the table";
  EXPECT_EQ(rt->stats().pin_events, 0u);
  // Timed locks still expire.
  std::timed_mutex tm;
  tm.lock();
  bool got = rt->spawn([&] { return tm.try_lock_for(20ms); }).join();
  EXPECT_FALSE(got);
  tm.unlock();
}

}  // namespace
