// OS condition variables on fibers (runtime/intercept/cond_calls.cc,
// runtime/sync/os_cond.h): std::condition_variable, condition_variable_any
// and pthread_cond_*, used unmodified by fibers and plain threads together.
// A wait parks the fiber; a signal from a fiber or a thread wakes it; the
// fiber owns its mutex again on return.
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/pinning.h"
#include "bobbin/runtime.h"
#include "bobbin/sync/mutex.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::testing::scaled;
using clock_type = std::chrono::steady_clock;

using bobbin::testing::ms_since;

timespec realtime_in(std::chrono::nanoseconds d) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const int64_t ns = ts.tv_nsec + d.count();
  ts.tv_sec += ns / 1'000'000'000;
  ts.tv_nsec = ns % 1'000'000'000;
  return ts;
}

// A bounded queue as thread code writes it: one std::mutex, two
// std::condition_variables.
class bounded_queue {
 public:
  explicit bounded_queue(size_t capacity) : capacity_(capacity) {}
  void push(int64_t v) {
    std::unique_lock l(mu_);
    not_full_.wait(l, [&] { return items_.size() < capacity_; });
    items_.push_back(v);
    l.unlock();
    not_empty_.notify_one();
  }
  // -1: closed and drained.
  int64_t pop() {
    std::unique_lock l(mu_);
    not_empty_.wait(l, [&] { return !items_.empty() || closed_; });
    if (items_.empty()) return -1;
    const int64_t v = items_.front();
    items_.pop_front();
    l.unlock();
    not_full_.notify_one();
    return v;
  }
  void close() {
    std::lock_guard l(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<int64_t> items_;
  size_t capacity_;
  bool closed_ = false;
};

TEST(OsCondTest, BoundedQueueMovesEveryItemOnceBetweenFibersAndThreads) {
  // 100 fiber producers, 100 fiber consumers and 4 thread consumers on 2
  // carriers; every item is seen exactly once.
  constexpr int kProducers = 100, kFiberConsumers = 100, kThreadConsumers = 4;
  const int64_t items = bobbin::testing::kUnderSanitizer ? 100'000 : 1'000'000;
  const int64_t per_producer = items / kProducers;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  bounded_queue q(64);
  std::vector<std::atomic<uint8_t>> seen(static_cast<size_t>(items));
  std::atomic<int64_t> consumed{0}, duplicates{0}, by_threads{0};
  auto consume = [&](bool thread) {
    for (;;) {
      const int64_t v = q.pop();
      if (v < 0) return;
      if (seen[static_cast<size_t>(v)].fetch_add(1) != 0) duplicates++;
      consumed++;
      if (thread) by_threads++;
    }
  };
  std::vector<bobbin::fiber<>> producers, consumers;
  for (int p = 0; p < kProducers; p++) {
    producers.push_back(rt->spawn([&, p] {
      for (int64_t i = 0; i < per_producer; i++) q.push(p * per_producer + i);
    }));
  }
  for (int c = 0; c < kFiberConsumers; c++) consumers.push_back(rt->spawn([&] { consume(false); }));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreadConsumers; t++) threads.emplace_back([&] { consume(true); });
  for (auto& f : producers) f.join();
  q.close();
  for (auto& f : consumers) f.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(consumed.load(), items);
  EXPECT_EQ(duplicates.load(), 0);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), items) << "items lost";
  EXPECT_GT(by_threads.load(), 0) << "the threads never took an item";
  RecordProperty("taken_by_threads", std::to_string(by_threads.load()));
}

TEST(OsCondTest, NotifyAllWakesEveryFiberAndThreadWaiter) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::mutex mu;
  std::condition_variable cv;
  int waiting = 0;
  int generation = 0;
  std::atomic<int> woken{0};
  auto body = [&] {
    std::unique_lock l(mu);
    const int g = generation;
    waiting++;
    cv.wait(l, [&] { return generation != g; });
    woken++;
  };
  std::vector<bobbin::fiber<>> fibers;
  for (int i = 0; i < 50; i++) fibers.push_back(rt->spawn(body));
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; i++) threads.emplace_back(body);
  for (;;) {
    std::lock_guard l(mu);
    if (waiting == 54) break;
  }
  {
    std::lock_guard l(mu);
    generation++;
  }
  cv.notify_all();
  for (auto& f : fibers) f.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(woken.load(), 54);
  EXPECT_GE(rt->stats().os_condition_parks, 50u) << "the fibers' waits did not park";
}

TEST(OsCondTest, FibersWaitingOnOneCarrierAreWokenByAnotherFiberThere) {
  // Before: the waiting fiber blocked its only carrier in futex(2), and the
  // fiber that would signal it never ran: a hang.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;
  constexpr int kRounds = 1000;
  auto player = [&](int me) {
    for (int i = 0; i < kRounds; i++) {
      std::unique_lock l(mu);
      cv.wait(l, [&] { return turn % 2 == me; });
      turn++;
      cv.notify_one();
    }
  };
  auto a = rt->spawn([&] { player(0); });
  auto b = rt->spawn([&] { player(1); });
  a.join();
  b.join();
  EXPECT_EQ(turn, 2 * kRounds);
}

TEST(OsCondTest, WaitForExpiresOnTimeHoldingTheMutex) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<bobbin::fiber<double>> fs;
  for (int i = 0; i < 20; i++) {
    fs.push_back(rt->spawn([&] {
      std::unique_lock l(mu);
      const auto t0 = clock_type::now();
      const auto status = cv.wait_for(l, 20ms);
      const double took = ms_since(t0);
      EXPECT_EQ(status, std::cv_status::timeout);
      EXPECT_TRUE(l.owns_lock());
      EXPECT_EQ(mu.try_lock(), false) << "the mutex is not held again";
      return took;
    }));
  }
  // A bystander keeps running meanwhile: the waits do not hold a carrier.
  auto bystander = rt->spawn([] {
    int n = 0;
    for (int i = 0; i < 10; i++, n++) bobbin::this_fiber::sleep_for(1ms);
    return n;
  });
  for (auto& f : fs) {
    const double took = f.join();
    EXPECT_GE(took, 19.0);
    EXPECT_LT(took, scaled(100ms).count());
  }
  EXPECT_EQ(bystander.join(), 10);
}

TEST(OsCondTest, PthreadTimedWaitsHonourTheirClocks) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  rt->spawn([] {
      pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
      pthread_cond_t realtime_cv = PTHREAD_COND_INITIALIZER;
      pthread_condattr_t attr;
      pthread_condattr_init(&attr);
      pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
      pthread_cond_t monotonic_cv;
      ASSERT_EQ(pthread_cond_init(&monotonic_cv, &attr), 0);
      pthread_condattr_destroy(&attr);
      pthread_mutex_lock(&m);
      // The static initializer: CLOCK_REALTIME.
      timespec at = realtime_in(10ms);
      auto t0 = clock_type::now();
      EXPECT_EQ(pthread_cond_timedwait(&realtime_cv, &m, &at), ETIMEDOUT);
      EXPECT_GE(ms_since(t0), 9.0);
      // setclock(CLOCK_MONOTONIC): timedwait reads the monotonic clock.
      clock_gettime(CLOCK_MONOTONIC, &at);
      at.tv_nsec += 10'000'000;
      if (at.tv_nsec >= 1'000'000'000) at.tv_sec++, at.tv_nsec -= 1'000'000'000;
      t0 = clock_type::now();
      EXPECT_EQ(pthread_cond_timedwait(&monotonic_cv, &m, &at), ETIMEDOUT);
      EXPECT_GE(ms_since(t0), 9.0);
      EXPECT_LT(ms_since(t0), scaled(200ms).count()) << "read as a real-time date";
      // clockwait names its clock; others are EINVAL, as are bad times.
      at = realtime_in(5ms);
      EXPECT_EQ(pthread_cond_clockwait(&monotonic_cv, &m, CLOCK_REALTIME, &at), ETIMEDOUT);
      EXPECT_EQ(pthread_cond_clockwait(&monotonic_cv, &m, CLOCK_PROCESS_CPUTIME_ID, &at), EINVAL);
      timespec bad{0, 1'000'000'000};
      EXPECT_EQ(pthread_cond_timedwait(&realtime_cv, &m, &bad), EINVAL);
      // errno is left alone, as glibc leaves it.
      errno = 1234;
      at = realtime_in(1ms);
      EXPECT_EQ(pthread_cond_timedwait(&realtime_cv, &m, &at), ETIMEDOUT);
      EXPECT_EQ(errno, 1234);
      // A time already past: ETIMEDOUT, the mutex held again.
      timespec past{0, 0};
      EXPECT_EQ(pthread_cond_timedwait(&realtime_cv, &m, &past), ETIMEDOUT);
      EXPECT_EQ(pthread_mutex_trylock(&m), EBUSY);
      pthread_mutex_unlock(&m);
      EXPECT_EQ(pthread_cond_destroy(&monotonic_cv), 0);
      EXPECT_EQ(pthread_cond_destroy(&realtime_cv), 0);
    }).join();
}

TEST(OsCondTest, RequestStopEndsAWaitUnderWayHoldingTheMutex) {
  // libstdc++ decides wait_for's cv_status from the clock, so the stop shows
  // there as a wake-up: the predicate that names the fiber's stop request
  // ends the wait. pthread_cond_timedwait answers ETIMEDOUT. A wait begun
  // after the stop is not cut short (it would spin in libstdc++'s loop).
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::mutex mu;
  std::condition_variable cv;
  pthread_mutex_t pm = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t pc = PTHREAD_COND_INITIALIZER;
  std::atomic<int> waiting{0};
  auto std_waiter = rt->spawn([&] {
    std::unique_lock l(mu);
    waiting++;
    const auto t0 = clock_type::now();
    const bool stopped = cv.wait_for(l, 10s, [] { return bobbin::this_fiber::stop_requested(); });
    EXPECT_TRUE(stopped);
    EXPECT_TRUE(l.owns_lock());
    return ms_since(t0);
  });
  auto pthread_waiter = rt->spawn([&] {
    pthread_mutex_lock(&pm);
    waiting++;
    timespec at = realtime_in(10s);
    auto t0 = clock_type::now();
    EXPECT_EQ(pthread_cond_timedwait(&pc, &pm, &at), ETIMEDOUT);
    const double first = ms_since(t0);
    EXPECT_EQ(pthread_mutex_trylock(&pm), EBUSY) << "the mutex is not held again";
    // Begun after the stop: waits out its own time.
    at = realtime_in(30ms);
    t0 = clock_type::now();
    EXPECT_EQ(pthread_cond_timedwait(&pc, &pm, &at), ETIMEDOUT);
    EXPECT_GE(ms_since(t0), 29.0);
    pthread_mutex_unlock(&pm);
    return first;
  });
  while (waiting.load() != 2) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  const auto stop_at = clock_type::now();
  std_waiter.request_stop();
  pthread_waiter.request_stop();
  EXPECT_LT(std_waiter.join(), 5000.0);
  EXPECT_LT(ms_since(stop_at), scaled(500ms).count());
  EXPECT_LT(pthread_waiter.join(), 5000.0);
  EXPECT_TRUE(mu.try_lock()) << "the mutex was not released on the way out";
  mu.unlock();
}

TEST(OsCondTest, AWakeRacingTimeoutsIsNeverLost) {
  // Waiters with short deadlines and signals that race them: every signal
  // that finds a waiter is consumed by one (it returns no_timeout), or the
  // waiter it would have found timed out first. Counted: items handed over
  // through a one-slot mailbox never go missing.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::mutex mu;
  std::condition_variable cv;
  int mailbox = 0;
  std::atomic<int> received{0};
  constexpr int kItems = 2000;
  std::vector<bobbin::fiber<>> takers;
  for (int i = 0; i < 8; i++) {
    takers.push_back(rt->spawn([&] {
      std::unique_lock l(mu);
      while (received.load() < kItems) {
        if (cv.wait_for(l, 100us, [&] { return mailbox > 0; })) {
          mailbox--;
          received++;
        }
      }
    }));
  }
  std::thread giver([&] {
    for (int i = 0; i < kItems; i++) {
      std::unique_lock l(mu);
      mailbox++;
      l.unlock();
      cv.notify_one();
      if (i % 16 == 0) std::this_thread::yield();
    }
  });
  giver.join();
  {
    std::lock_guard l(mu);
    cv.notify_all();
  }
  for (auto& f : takers) f.join();
  EXPECT_EQ(received.load(), kItems);
  EXPECT_EQ(mailbox, 0);
}

TEST(OsCondTest, ConditionVariableAnyWithABobbinMutex) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  bobbin::mutex mu;
  std::condition_variable_any cv;
  int produced = 0, consumed = 0;
  constexpr int kEach = 500;
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 4; i++) {
    fs.push_back(rt->spawn([&] {
      for (int j = 0; j < kEach; j++) {
        std::unique_lock l(mu);
        produced++;
        cv.notify_all();
      }
    }));
    fs.push_back(rt->spawn([&] {
      for (int j = 0; j < kEach; j++) {
        std::unique_lock l(mu);
        cv.wait(l, [&] { return produced > consumed; });
        consumed++;
      }
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(produced, 4 * kEach);
  EXPECT_EQ(consumed, 4 * kEach);
}

TEST(OsCondTest, AFiberKeepsOwningItsRecursiveMutexAcrossAWait) {
  // glibc's own pthread_cond_wait relocks with its internal calls and
  // answered EPERM here: it looked for the carrier's thread id as the owner.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_t rm;
  pthread_mutex_init(&rm, &a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
  pthread_mutex_t em;
  pthread_mutex_init(&em, &a);
  pthread_mutexattr_destroy(&a);
  pthread_cond_t pc = PTHREAD_COND_INITIALIZER;
  std::atomic<bool> flag{false};
  auto waiter = rt->spawn([&] {
    EXPECT_EQ(pthread_mutex_lock(&rm), 0);
    while (!flag.load()) {
      const timespec at = realtime_in(1ms);
      const int r = pthread_cond_timedwait(&pc, &rm, &at);
      EXPECT_TRUE(r == 0 || r == ETIMEDOUT) << r;
    }
    // Still the owner: a recursive relock and two unlocks succeed.
    EXPECT_EQ(pthread_mutex_lock(&rm), 0);
    EXPECT_EQ(pthread_mutex_unlock(&rm), 0);
    EXPECT_EQ(pthread_mutex_unlock(&rm), 0);
    // Waiting with an error-checking mutex it does not hold: EPERM, at once.
    EXPECT_EQ(pthread_cond_wait(&pc, &em), EPERM);
  });
  auto other = rt->spawn([&] {
    // Another fiber (on either carrier) is not the owner while the first
    // waits: the mutex is free or held by the waiter, never "ours".
    for (int i = 0; i < 20; i++) {
      EXPECT_EQ(pthread_mutex_lock(&rm), 0);
      EXPECT_EQ(pthread_mutex_unlock(&rm), 0);
      bobbin::this_fiber::sleep_for(1ms);
    }
    flag = true;
    pthread_cond_signal(&pc);
  });
  other.join();
  waiter.join();
  EXPECT_EQ(pthread_cond_destroy(&pc), 0);
  EXPECT_EQ(pthread_mutex_destroy(&rm), 0);
  EXPECT_EQ(pthread_mutex_destroy(&em), 0);
}

TEST(OsCondTest, AWokenThreadMayDestroyTheConditionVariableAtOnce) {
  // POSIX allows destroying a condition variable as soon as no one waits on
  // it; a broadcast's waiters never touch it after they are woken.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  for (int round = 0; round < 200; round++) {
    auto* mu = new std::mutex;
    auto* cv = new std::condition_variable;
    int waiting = 0;
    bool go = false;
    std::vector<bobbin::fiber<>> fs;
    for (int i = 0; i < 4; i++) {
      fs.push_back(rt->spawn([&] {
        std::unique_lock l(*mu);
        waiting++;
        cv->wait(l, [&] { return go; });
      }));
    }
    for (;;) {
      std::lock_guard l(*mu);
      if (waiting == 4) break;
    }
    {
      std::lock_guard l(*mu);
      go = true;
      cv->notify_all();
    }
    for (auto& f : fs) f.join();
    delete cv;  // pthread_cond_destroy, then the memory is gone
    delete mu;
  }
}

TEST(OsCondTest, ThreadWaitsKeepErrnoAndTakeAFarFutureTimeAsNoLimit) {
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
  std::atomic<bool> in{false};
  int r = -1, err = 0;
  std::thread t([&] {
    pthread_mutex_lock(&m);
    in = true;
    errno = 4321;
    const timespec far{LONG_MAX, 0};  // C code's "no limit"
    r = pthread_cond_timedwait(&cv, &m, &far);
    err = errno;
    pthread_mutex_unlock(&m);
  });
  while (!in.load()) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  pthread_mutex_lock(&m);
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&m);
  t.join();
  EXPECT_EQ(r, 0) << "a far-future time expired at once";
  EXPECT_EQ(err, 4321);
  EXPECT_EQ(pthread_cond_destroy(&cv), 0);
}

TEST(OsCondTest, BroadcastWakesThreadsAndPinnedFibersAtOnceAndFibersInTurn) {
  // A pinned fiber blocks its carrier while it waits: were it queued behind
  // a fiber bound to that carrier, neither could run. Here one carrier
  // holds a parked fiber that waited first and a pinned fiber after it.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;
  std::atomic<int> waiting{0};
  auto parked = rt->spawn([&] {
    std::unique_lock l(mu);
    waiting++;
    cv.wait(l, [&] { return go; });
    return true;
  });
  while (waiting.load() != 1) std::this_thread::sleep_for(1ms);
  auto pinned = rt->spawn([&] {
    bobbin::pinned_scope pin("os_cond_test: pinned waiter");
    std::unique_lock l(mu);
    waiting++;
    cv.wait(l, [&] { return go; });
    return true;
  });
  while (waiting.load() != 2) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  {
    std::lock_guard l(mu);
    go = true;
  }
  cv.notify_all();
  EXPECT_TRUE(pinned.join());
  EXPECT_TRUE(parked.join());
}

TEST(OsCondTest, DestroyWithAWaiterAnswersEbusy) {
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
  std::atomic<bool> in{false};
  std::thread t([&] {
    pthread_mutex_lock(&m);
    in = true;
    pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
  });
  while (!in.load()) std::this_thread::sleep_for(1ms);
  pthread_mutex_lock(&m);  // the waiter is linked before it releases m
  EXPECT_EQ(pthread_cond_destroy(&cv), EBUSY);
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&m);
  t.join();
  EXPECT_EQ(pthread_cond_destroy(&cv), 0);
}

TEST(OsCondTest, ProcessSharedConditionVariablesStayGlibcs) {
  // A process-shared one may be used by another process with glibc's own
  // algorithm: bobbin leaves it alone (a fiber waiting on it blocks its
  // carrier, as documented). Threads still use it normally.
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
  pthread_cond_t cv;
  ASSERT_EQ(pthread_cond_init(&cv, &ca), 0);
  pthread_condattr_destroy(&ca);
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
  pthread_mutex_t m;
  pthread_mutex_init(&m, &ma);
  pthread_mutexattr_destroy(&ma);
  bool ready = false;
  std::thread t([&] {
    pthread_mutex_lock(&m);
    ready = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&m);
  });
  pthread_mutex_lock(&m);
  while (!ready) pthread_cond_wait(&cv, &m);
  pthread_mutex_unlock(&m);
  t.join();
  EXPECT_EQ(pthread_cond_destroy(&cv), 0);
  pthread_mutex_destroy(&m);
}

TEST(OsCondTest, APinnedFiberWaitsAsAThreadWould) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  auto pinned = rt->spawn([&] {
    bobbin::pinned_scope pin("os_cond_test: a pinned wait");
    std::unique_lock l(mu);
    cv.wait(l, [&] { return ready; });
    return true;
  });
  std::this_thread::sleep_for(20ms);
  {
    std::lock_guard l(mu);
    ready = true;
  }
  cv.notify_one();
  EXPECT_TRUE(pinned.join());
}

TEST(OsCondTest, AWokenFiberResumesOnTheCarrierItParkedOnByDefault) {
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::mutex mu;
  std::condition_variable cv;
  int turn = 0;
  std::atomic<int> moved{0};
  auto player = [&](int me) {
    for (int i = 0; i < 300; i++) {
      std::unique_lock l(mu);
      const int before = bobbin::this_fiber::carrier_index();
      cv.wait(l, [&] { return turn % 4 == me; });
      if (bobbin::this_fiber::carrier_index() != before) moved++;
      turn++;
      cv.notify_all();
    }
  };
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 4; i++) fs.push_back(rt->spawn([&, i] { player(i); }));
  for (auto& f : fs) f.join();
  EXPECT_EQ(moved.load(), 0);
}

// A fiber whose condition was signalled resumes on the carrier it parked
// on. One carrier: fiber A waits; another fiber then blocks the carrier in
// a pinned read(2) for 1 s; fiber B, started after, runs on the spare
// carrier the pinning monitor brings up and waits too. notify_one finds A
// first, bound to the stuck carrier, so it wakes B as well: B runs at once,
// A when its carrier is back (README "OS locks and waits"). With
// os_lock_waiters_migrate, A itself runs on the spare at once.
struct stuck_carrier_latency {
  double a_ms;
  double b_ms;
};

stuck_carrier_latency signalled_fibers_with_stuck_carrier(bool migrate) {
  bobbin::runtime_options o = bobbin::testing::carriers(1);
  o.os_lock_waiters_migrate = migrate;
  auto rt = bobbin::runtime::start(o).value();
  int p[2];
  EXPECT_EQ(::pipe(p), 0);
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::atomic<int> waiting{0};
  clock_type::time_point signalled_at{};
  auto waiter = [&] {
    std::unique_lock l(mu);
    waiting++;
    cv.wait(l, [&] { return ready; });
    return ms_since(signalled_at);
  };
  auto a = rt->spawn(waiter);
  while (waiting.load() != 1) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  auto blocker = rt->spawn([&] { return bobbin::testing::pinned_read_byte(p[0]); });
  std::this_thread::sleep_for(100ms);  // stuck in read(2), and a spare carrier is up
  auto b = rt->spawn(waiter);
  while (waiting.load() != 2) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);
  {
    std::lock_guard l(mu);
    ready = true;
    signalled_at = clock_type::now();
  }
  cv.notify_one();
  std::thread unblock([&] {
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(::write(p[1], "x", 1), 1);
  });
  stuck_carrier_latency out{};
  if (migrate) {
    out.a_ms = a.join();
    cv.notify_all();  // B was not woken: A could run
    out.b_ms = b.join();
  } else {
    out.b_ms = b.join();
    out.a_ms = a.join();
  }
  unblock.join();
  EXPECT_EQ(blocker.join(), 1);
  ::close(p[0]);
  ::close(p[1]);
  return out;
}

TEST(OsCondStuckCarrierTest, ASignalReachesAWaiterThatCanRunWhileTheFirstOnesCarrierIsStuck) {
  const stuck_carrier_latency bound = signalled_fibers_with_stuck_carrier(false);
  EXPECT_LT(bound.b_ms, scaled(300ms).count()) << "the signal was not passed on";
  EXPECT_GE(bound.a_ms, 800.0) << "A resumed before its carrier was back";
  const stuck_carrier_latency migrating = signalled_fibers_with_stuck_carrier(true);
  EXPECT_LT(migrating.a_ms, scaled(300ms).count()) << "a migrating waiter waited for the stuck carrier";
  RecordProperty("bound_a_ms", std::to_string(bound.a_ms));
  RecordProperty("bound_b_ms", std::to_string(bound.b_ms));
  RecordProperty("migrating_a_ms", std::to_string(migrating.a_ms));
}

TEST(OsCondStuckCarrierTest, ASignalIsPassedOnWhenTheCarrierBlocksAfterTheSignal) {
  // The carrier is not stuck yet when the signal comes, but blocks before
  // the woken fiber runs: fiber A waits, then a plain thread B waits too
  // (behind A); notify_one claims A while another fiber computes on A's
  // carrier and, 10 ms later, blocks it in a pinned read(2) for 1 s. Once
  // the pinning monitor marks the carrier blocked, the wake is passed on: B
  // runs long before A's carrier is back. (Without the pass-on B would wait
  // for the notify_all below, after A.)
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::mutex mu;
  std::condition_variable cv;
  bool ready = false;
  std::atomic<int> waiting{0};
  std::atomic<bool> computing{false};
  clock_type::time_point signalled_at{};
  auto a = rt->spawn([&] {
    std::unique_lock l(mu);
    waiting++;
    cv.wait(l, [&] { return ready; });
    return ms_since(signalled_at);
  });
  while (waiting.load() != 1) std::this_thread::sleep_for(1ms);
  std::atomic<double> b_ms{-1};
  std::thread b([&] {
    std::unique_lock l(mu);
    waiting++;
    cv.wait(l, [&] { return ready; });
    b_ms = ms_since(signalled_at);
  });
  while (waiting.load() != 2) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  auto blocker = rt->spawn([&] {
    computing = true;
    const auto until = clock_type::now() + 10ms;
    while (clock_type::now() < until) {
    }
    return bobbin::testing::pinned_read_byte(p[0]);
  });
  while (!computing) std::this_thread::sleep_for(100us);
  {
    std::lock_guard l(mu);
    ready = true;
    signalled_at = clock_type::now();
  }
  cv.notify_one();  // claims A, whose carrier is computing, not yet blocked
  std::thread unblock([&] {
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(::write(p[1], "x", 1), 1);
  });
  const double a_ms = a.join();
  cv.notify_all();  // lets B finish if the wake was not passed on
  b.join();
  unblock.join();
  EXPECT_EQ(blocker.join(), 1);
  ::close(p[0]);
  ::close(p[1]);
  // 10 ms of computing, then the monitor's threshold (20 ms) and tick.
  EXPECT_LT(b_ms.load(), scaled(300ms).count()) << "the signal stayed with A";
  EXPECT_GE(a_ms, 800.0) << "A resumed before its carrier was back";
  RecordProperty("b_after_ms", std::to_string(b_ms.load()));
  RecordProperty("a_after_ms", std::to_string(a_ms));
}

TEST(OsCondStuckCarrierTest, DestroyingAConditionVariableWithAWakeStillInFlightIsSafe) {
  // A fiber signalled, then its carrier blocks, and the condition variable
  // is destroyed (its memory reused) before the monitor notices: the wake
  // list entry goes with it, and the monitor's pass-on touches nothing.
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::mutex mu;
  alignas(std::condition_variable) unsigned char storage[sizeof(std::condition_variable)];
  auto* cv = new (storage) std::condition_variable;
  bool ready = false;
  std::atomic<bool> waiting{false}, computing{false};
  auto a = rt->spawn([&] {
    std::unique_lock l(mu);
    waiting = true;
    while (!ready) cv->wait(l);
  });
  while (!waiting) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(10ms);
  auto blocker = rt->spawn([&] {
    computing = true;
    const auto until = clock_type::now() + 5ms;
    while (clock_type::now() < until) {
    }
    return bobbin::testing::pinned_read_byte(p[0]);
  });
  while (!computing) std::this_thread::sleep_for(100us);
  {
    std::lock_guard l(mu);
    ready = true;
  }
  cv->notify_one();
  cv->~condition_variable();  // A is woken, so no thread is blocked on it
  std::memset(storage, 0xa5, sizeof storage);
  std::this_thread::sleep_for(200ms);  // the monitor marks the carrier blocked
  EXPECT_EQ(::write(p[1], "x", 1), 1);
  a.join();
  EXPECT_EQ(blocker.join(), 1);
  ::close(p[0]);
  ::close(p[1]);
}

}  // namespace
