// OS reader-writer locks on fibers (runtime/intercept/rwlock_calls.cc,
// runtime/sync/os_rwlock.h): std::shared_mutex, std::shared_timed_mutex and
// pthread_rwlock_* used unmodified by fibers and plain threads together.
// Waiting parks the fiber; the fiber, not its carrier, is the writer;
// glibc's answers (EDEADLK, EBUSY, EINVAL, ETIMEDOUT) and its reader or
// writer preference are kept.
#include <gtest/gtest.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/runtime.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::testing::ms_since;
using bobbin::testing::scaled;
using clock_type = std::chrono::steady_clock;

// Counts readers and writers inside, and any overlap a reader-writer lock
// forbids: a writer beside anyone.
struct rw_probe {
  std::atomic<int> readers{0};
  std::atomic<int> writers{0};
  std::atomic<int> violations{0};
  std::atomic<int> max_readers{0};
  void enter_read() {
    const int r = readers.fetch_add(1) + 1;
    if (writers.load() != 0) violations++;
    int m = max_readers.load();
    while (r > m && !max_readers.compare_exchange_weak(m, r)) {
    }
  }
  void leave_read() { readers.fetch_sub(1); }
  void enter_write() {
    if (writers.fetch_add(1) != 0 || readers.load() != 0) violations++;
  }
  void leave_write() { writers.fetch_sub(1); }
};

timespec monotonic_in(std::chrono::nanoseconds from_now) {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  const long long ns = now.tv_nsec + from_now.count();
  now.tv_sec += ns / 1'000'000'000;
  now.tv_nsec = ns % 1'000'000'000;
  return now;
}

class OsRwlockTest : public ::testing::TestWithParam<unsigned> {
 protected:
  std::unique_ptr<bobbin::runtime> start() {
    return bobbin::runtime::start(bobbin::testing::carriers(GetParam())).value();
  }
};

// 200 fibers take a std::shared_mutex shared across a 1 ms bobbin sleep,
// every 50th call exclusive: all finish, and nothing overlapped.
void shared_across_sleeps(bobbin::runtime& rt_ref) {
  auto* rt = &rt_ref;
  std::shared_mutex mu;
  rw_probe probe;
  long writes = 0;  // under the exclusive lock only
  std::atomic<long> reads{0};
  constexpr int kFibers = 200, kEach = 5;
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < kFibers; i++) {
    fs.push_back(rt->spawn([&, i] {
      for (int j = 0; j < kEach; j++) {
        if ((i * kEach + j) % 50 == 0) {
          std::unique_lock l(mu);
          probe.enter_write();
          bobbin::this_fiber::sleep_for(1ms);
          writes++;
          probe.leave_write();
        } else {
          std::shared_lock l(mu);
          probe.enter_read();
          bobbin::this_fiber::sleep_for(1ms);
          reads++;
          probe.leave_read();
        }
      }
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(writes, kFibers * kEach / 50);
  EXPECT_EQ(reads.load(), kFibers * kEach - kFibers * kEach / 50);
  EXPECT_EQ(probe.violations.load(), 0);
  EXPECT_GT(probe.max_readers.load(), 1) << "readers never held it together";
}

TEST_P(OsRwlockTest, SharedMutexReadHeldAcrossASleepWithWritersAllFinish) {
  // The case: 200 fibers take a std::shared_mutex shared across a
  // 1 ms bobbin sleep, every 50th call exclusive. Before: glibc's rwlock
  // blocked the carrier of a second writer (or of a reader behind a
  // writer) in futex(2) while the holder, parked on it, could never run:
  // a hang.
  auto rt = start();
  shared_across_sleeps(*rt);
  EXPECT_GE(rt->stats().futex_parks, 1u) << "no waiter parked: the test did not contend";
}

TEST_P(OsRwlockTest, FibersAndThreadsTogetherLoseNoUpdateAndSeeNoTornState) {
  auto rt = start();
  std::shared_mutex mu;
  long a = 0, b = 0;  // not atomic: the lock must protect them; always equal
  std::atomic<int> torn{0};
  constexpr int kFibers = 64, kThreads = 4, kEach = 300;
  auto body = [&](bool fiber, int seed) {
    for (int j = 0; j < kEach; j++) {
      if ((j + seed) % 4 == 0) {
        std::unique_lock l(mu);
        const long v = a;
        if (fiber && j % 16 == 0) bobbin::this_fiber::yield();  // hold it across a park
        a = v + 1;
        b = b + 1;
      } else {
        std::shared_lock l(mu);
        const long x = a;
        if (fiber && j % 8 == 0) bobbin::this_fiber::yield();
        if (b != x) torn++;
      }
    }
  };
  std::vector<bobbin::fiber<>> fibers;
  for (int i = 0; i < kFibers; i++) fibers.push_back(rt->spawn([&, i] { body(true, i); }));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++) threads.emplace_back([&, i] { body(false, i); });
  for (auto& f : fibers) f.join();
  for (auto& t : threads) t.join();
  long expected = 0;  // the writes, as the bodies chose them (the seed of thread i is i)
  for (int i = 0; i < kFibers; i++) {
    for (int j = 0; j < kEach; j++) expected += (j + i) % 4 == 0;
  }
  for (int i = 0; i < kThreads; i++) {
    for (int j = 0; j < kEach; j++) expected += (j + i) % 4 == 0;
  }
  EXPECT_EQ(a, expected);
  EXPECT_EQ(b, expected);
  EXPECT_EQ(torn.load(), 0);
}

TEST_P(OsRwlockTest, TheWriterIsTheFiberNotItsCarrier) {
  // glibc records the writer's thread id, so a second fiber on the writer's
  // carrier asking for the lock was told EDEADLK. Here the second fiber
  // waits its turn, and only the writing fiber itself is told EDEADLK.
  auto rt = start();
  pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
  std::atomic<int> stage{0};
  auto writer = rt->spawn([&] {
    std::vector<int> r;
    r.push_back(pthread_rwlock_wrlock(&l));     // 0
    r.push_back(pthread_rwlock_wrlock(&l));     // EDEADLK
    r.push_back(pthread_rwlock_rdlock(&l));     // EDEADLK
    r.push_back(pthread_rwlock_tryrdlock(&l));  // EBUSY
    r.push_back(pthread_rwlock_trywrlock(&l));  // EBUSY
    stage = 1;
    while (stage.load() != 2) bobbin::this_fiber::sleep_for(1ms);
    bobbin::this_fiber::sleep_for(20ms);
    r.push_back(pthread_rwlock_unlock(&l));  // 0
    r.push_back(pthread_rwlock_unlock(&l));  // EPERM: not held
    return r;
  });
  while (stage.load() != 1) std::this_thread::sleep_for(1ms);
  std::atomic<int> others_done{0};
  auto other_writer = rt->spawn([&] {
    int unlock_not_mine = pthread_rwlock_unlock(&l);  // EPERM: another's write lock
    stage = 2;
    const int r = pthread_rwlock_wrlock(&l);
    others_done++;
    return std::make_pair(unlock_not_mine, r + pthread_rwlock_unlock(&l));
  });
  auto reader = rt->spawn([&] {
    while (stage.load() != 2) bobbin::this_fiber::sleep_for(1ms);
    const int r = pthread_rwlock_rdlock(&l);
    others_done++;
    return r + pthread_rwlock_unlock(&l);
  });
  EXPECT_EQ(writer.join(), (std::vector<int>{0, EDEADLK, EDEADLK, EBUSY, EBUSY, 0, EPERM}));
  EXPECT_EQ(other_writer.join(), std::make_pair(EPERM, 0));
  EXPECT_EQ(reader.join(), 0);
  EXPECT_EQ(others_done.load(), 2);
  EXPECT_EQ(pthread_rwlock_destroy(&l), 0);
}

TEST_P(OsRwlockTest, TimedLocksExpireOnTimeAndLeaveTheLockUsable) {
  auto rt = start();
  std::shared_timed_mutex mu;
  pthread_rwlock_t raw = PTHREAD_RWLOCK_INITIALIZER;  // for the calls std:: does not make
  std::atomic<int> stage{0};
  auto holder = rt->spawn([&] {
    mu.lock();
    pthread_rwlock_wrlock(&raw);
    stage = 1;
    while (stage.load() != 2) bobbin::this_fiber::sleep_for(1ms);
    bobbin::this_fiber::sleep_for(20ms);
    pthread_rwlock_unlock(&raw);
    mu.unlock();
  });
  while (stage.load() != 1) std::this_thread::sleep_for(1ms);
  // A reader and a writer time out (each leaves its waiting bit behind).
  auto timed = [&](bool shared) {
    return rt->spawn([&, shared] {
      const auto t0 = clock_type::now();
      const bool got = shared ? mu.try_lock_shared_for(30ms) : mu.try_lock_for(30ms);
      return std::make_pair(got, ms_since(t0));
    });
  };
  auto r = timed(true);
  auto w = timed(false);
  for (auto* f : {&r, &w}) {
    auto [got, ms] = f->join();
    EXPECT_FALSE(got);
    EXPECT_GE(ms, 29.0);
    EXPECT_LT(ms, scaled(std::chrono::milliseconds(300)).count());
  }
  // glibc's answers for a bad clock or time, checked before anything else,
  // and a thread's clock lock on the monotonic clock.
  pthread_rwlock_t* native = &raw;
  const timespec bad{0, 1'000'000'000};
  const timespec soon = monotonic_in(5ms);
  EXPECT_EQ(pthread_rwlock_clockrdlock(native, CLOCK_PROCESS_CPUTIME_ID, &soon), EINVAL);
  EXPECT_EQ(pthread_rwlock_timedwrlock(native, &bad), EINVAL);
  EXPECT_EQ(pthread_rwlock_clockwrlock(native, CLOCK_MONOTONIC, &soon), ETIMEDOUT);
  EXPECT_EQ(pthread_rwlock_clockrdlock(native, CLOCK_MONOTONIC, &soon), ETIMEDOUT);
  // Released in 20 ms: a 2 s try of each kind succeeds, from a fiber and
  // from a thread, and the bits the leavers left do not hold anyone back.
  stage = 2;
  auto got_write = rt->spawn([&] {
    const bool ok = mu.try_lock_for(2s);
    if (ok) mu.unlock();
    return ok;
  });
  bool got_read = mu.try_lock_shared_for(2s);
  if (got_read) mu.unlock_shared();
  holder.join();
  EXPECT_TRUE(got_write.join());
  EXPECT_TRUE(got_read);
  EXPECT_TRUE(mu.try_lock());
  mu.unlock();
}

TEST_P(OsRwlockTest, ByDefaultAReaderComesInWhileAWriterWaits) {
  // glibc's default (and PTHREAD_RWLOCK_PREFER_WRITER_NP, which glibc
  // treats the same): readers preferred.
  auto rt = start();
  pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;
  ASSERT_EQ(pthread_rwlock_rdlock(&l), 0);  // this thread reads
  std::atomic<bool> writing{false};
  auto writer = rt->spawn([&] {
    const int r = pthread_rwlock_wrlock(&l);
    writing = true;
    return r + pthread_rwlock_unlock(&l);
  });
  std::this_thread::sleep_for(30ms);  // the writer waits by now
  EXPECT_FALSE(writing.load());
  auto reader = rt->spawn([&] {
    const int r = pthread_rwlock_tryrdlock(&l);
    return r == 0 ? pthread_rwlock_unlock(&l) : r;
  });
  EXPECT_EQ(reader.join(), 0) << "a reader was held back behind the waiting writer";
  ASSERT_EQ(pthread_rwlock_unlock(&l), 0);
  EXPECT_EQ(writer.join(), 0);
  EXPECT_TRUE(writing.load());
}

TEST_P(OsRwlockTest, WriterPreferringLockIsNotStarvedByReaders) {
  // PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP: 8 reader fibers keep the
  // lock read-held without a gap (each holds it 2 ms, and they overlap);
  // a writer still gets it, and readers queue behind it.
  auto rt = start();
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_t l;
  ASSERT_EQ(pthread_rwlock_init(&l, &attr), 0);
  pthread_rwlockattr_destroy(&attr);
  std::atomic<bool> stop{false};
  std::atomic<long> reads{0};
  rw_probe probe;
  std::vector<bobbin::fiber<>> readers;
  for (int i = 0; i < 8; i++) {
    readers.push_back(rt->spawn([&] {
      while (!stop.load()) {
        pthread_rwlock_rdlock(&l);
        probe.enter_read();
        bobbin::this_fiber::sleep_for(2ms);
        reads++;
        probe.leave_read();
        pthread_rwlock_unlock(&l);
      }
    }));
  }
  while (reads.load() < 16) std::this_thread::sleep_for(1ms);
  const auto t0 = clock_type::now();
  auto writer = rt->spawn([&] {
    const int r = pthread_rwlock_wrlock(&l);
    probe.enter_write();
    bobbin::this_fiber::sleep_for(1ms);
    probe.leave_write();
    return r + pthread_rwlock_unlock(&l);
  });
  EXPECT_EQ(writer.join(), 0);
  const double waited_ms = ms_since(t0);
  stop = true;
  for (auto& f : readers) f.join();
  EXPECT_EQ(probe.violations.load(), 0);
  // The readers in the lock when the writer came leave within 2 ms.
  EXPECT_LT(waited_ms, scaled(std::chrono::milliseconds(500)).count());
  EXPECT_EQ(pthread_rwlock_destroy(&l), 0);
}

TEST_P(OsRwlockTest, ManyTimedWaitersGivingUpNeverStrandTheRest) {
  // Readers and writers, fibers and threads, with short timeouts that often
  // expire: each one leaving may hold the wake meant for the next. Every
  // caller finishes, the lock ends free, and nothing overlapped.
  auto rt = start();
  std::shared_timed_mutex mu;
  rw_probe probe;
  std::atomic<long> taken{0}, timed_out{0};
  auto body = [&](bool fiber, unsigned seed) {
    std::minstd_rand rng(seed);
    for (int j = 0; j < 100; j++) {
      const auto wait = std::chrono::microseconds(rng() % 300);
      const bool write = rng() % 3 == 0;
      const bool got = write ? mu.try_lock_for(wait) : mu.try_lock_shared_for(wait);
      if (!got) {
        timed_out++;
        continue;
      }
      taken++;
      write ? probe.enter_write() : probe.enter_read();
      if (fiber) {
        bobbin::this_fiber::sleep_for(std::chrono::microseconds(rng() % 200));
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
      }
      write ? probe.leave_write() : probe.leave_read();
      write ? mu.unlock() : mu.unlock_shared();
    }
  };
  std::vector<bobbin::fiber<>> fibers;
  for (unsigned i = 0; i < 32; i++) fibers.push_back(rt->spawn([&, i] { body(true, i + 1); }));
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 3; i++) threads.emplace_back([&, i] { body(false, 1000 + i); });
  for (auto& f : fibers) f.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(taken.load() + timed_out.load(), 35 * 100);
  EXPECT_GT(timed_out.load(), 0) << "no timeout expired: the test proved nothing";
  EXPECT_GT(taken.load(), 0);
  EXPECT_EQ(probe.violations.load(), 0);
  EXPECT_TRUE(mu.try_lock()) << "the lock was left held";
  mu.unlock();
}

TEST_P(OsRwlockTest, WaitersThatMayResumeOnAnyCarrierAllFinish) {
  // runtime_options::os_lock_waiters_migrate: a woken fiber runs on the
  // first free carrier instead of the one it parked on.
  auto o = bobbin::testing::carriers(GetParam());
  o.os_lock_waiters_migrate = true;
  auto rt = bobbin::runtime::start(o).value();
  shared_across_sleeps(*rt);
}

TEST_P(OsRwlockTest, WithoutAFutexRingFibersParkInTheTableInsteadOfBlockingTheirCarrier) {
  // BOBBIN_FUTEX_RING=off: what a kernel before 6.7 or the epoll backend
  // gets. Blocking the carrier would hang whenever the holder is parked on
  // it; the waiters park in bobbin's futex table (futex_table.h).
  ::setenv("BOBBIN_FUTEX_RING", "off", 1);
  auto rt = start();
  ::unsetenv("BOBBIN_FUTEX_RING");
  shared_across_sleeps(*rt);
  EXPECT_GE(rt->stats().futex_parks, 1u);
}

TEST_P(OsRwlockTest, WithInterceptionOffAFiberBlocksItsCarrierAsGlibcWould) {
  // runtime_options::intercept_blocking_calls = false: the lock is still
  // bobbin's (one algorithm per process), but a fiber's wait blocks its
  // carrier. A plain thread holds it for 30 ms; the fiber gets it after.
  auto o = bobbin::testing::carriers(GetParam());
  o.intercept_blocking_calls = false;
  auto rt = bobbin::runtime::start(o).value();
  std::shared_mutex mu;
  mu.lock();
  auto f = rt->spawn([&] {
    const auto t0 = clock_type::now();
    std::shared_lock l(mu);
    return ms_since(t0);
  });
  std::this_thread::sleep_for(30ms);
  mu.unlock();
  EXPECT_GE(f.join(), 25.0);
  EXPECT_EQ(rt->stats().futex_parks, 0u);
}

TEST_P(OsRwlockTest, AWritePreferringLockGoesToTheWaitingWriterFirst) {
  // glibc's PREFER_WRITER_NP (kind 1): new readers still come in while a
  // writer waits, but a released write lock goes to a waiting writer
  // before waiting readers; the default (kind 0) wakes the readers first.
  auto rt = start();
  for (int kind : {PTHREAD_RWLOCK_PREFER_READER_NP, PTHREAD_RWLOCK_PREFER_WRITER_NP}) {
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, kind);
    pthread_rwlock_t l;
    ASSERT_EQ(pthread_rwlock_init(&l, &attr), 0);
    pthread_rwlockattr_destroy(&attr);
    std::atomic<int> order{0};
    std::atomic<int> reader_turn{0}, writer_turn{0};
    std::atomic<bool> held{false};
    auto holder = rt->spawn([&] {
      pthread_rwlock_wrlock(&l);
      held = true;
      bobbin::this_fiber::sleep_for(60ms);  // both others wait by then
      pthread_rwlock_unlock(&l);
    });
    while (!held.load()) std::this_thread::sleep_for(1ms);
    std::thread reader([&] {
      pthread_rwlock_rdlock(&l);
      reader_turn = ++order;
      std::this_thread::sleep_for(5ms);
      pthread_rwlock_unlock(&l);
    });
    std::this_thread::sleep_for(20ms);
    std::thread writer([&] {
      pthread_rwlock_wrlock(&l);
      writer_turn = ++order;
      std::this_thread::sleep_for(5ms);
      pthread_rwlock_unlock(&l);
    });
    holder.join();
    reader.join();
    writer.join();
    if (kind == PTHREAD_RWLOCK_PREFER_READER_NP) {
      EXPECT_EQ(reader_turn.load(), 1) << "kind " << kind;
    } else {
      EXPECT_EQ(writer_turn.load(), 1) << "kind " << kind;
    }
    EXPECT_EQ(pthread_rwlock_destroy(&l), 0);
  }
}

TEST_P(OsRwlockTest, AWriterThatGaveUpNeverKeepsReadersOutOfAWriterFirstLock) {
  // PREFER_WRITER_NONRECURSIVE (here its static initializer): while a
  // writer waits, new readers wait behind it. Once that writer times out,
  // the reader holding the lock may take it again, and others come in.
  auto rt = start();
  pthread_rwlock_t l = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
  auto r = rt->spawn([&] {
           std::vector<int> out;
           out.push_back(pthread_rwlock_rdlock(&l));  // 0
           auto w = bobbin::spawn([&] {
             const timespec soon = monotonic_in(10ms);
             return pthread_rwlock_clockwrlock(&l, CLOCK_MONOTONIC, &soon);
           });
           bobbin::this_fiber::sleep_for(3ms);
           out.push_back(pthread_rwlock_tryrdlock(&l));  // EBUSY: a writer waits
           out.push_back(w.join());                      // ETIMEDOUT
           out.push_back(pthread_rwlock_tryrdlock(&l));  // 0: it left
           out.push_back(pthread_rwlock_rdlock(&l));     // 0
           auto other = bobbin::spawn([&] {
             const int a = pthread_rwlock_rdlock(&l);
             return a + pthread_rwlock_unlock(&l);
           });
           out.push_back(other.join());  // 0
           for (int i = 0; i < 3; i++) out.push_back(pthread_rwlock_unlock(&l));
           return out;
         }).join();
  EXPECT_EQ(r, (std::vector<int>{0, EBUSY, ETIMEDOUT, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(pthread_rwlock_wrlock(&l), 0);
  EXPECT_EQ(pthread_rwlock_unlock(&l), 0);
}

TEST_P(OsRwlockTest, ManyTimedWaitersGivingUpNeverStrandTheRestOfAWriterFirstLock) {
  // As ManyTimedWaitersGivingUpNeverStrandTheRest, on the kind whose
  // waiting writers hold readers back.
  auto rt = start();
  pthread_rwlock_t l = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
  rw_probe probe;
  std::atomic<long> taken{0}, timed_out{0};
  auto body = [&](bool fiber, unsigned seed) {
    std::minstd_rand rng(seed);
    for (int j = 0; j < 100; j++) {
      const timespec until = monotonic_in(std::chrono::microseconds(rng() % 300));
      const bool write = rng() % 3 == 0;
      const int r = write ? pthread_rwlock_clockwrlock(&l, CLOCK_MONOTONIC, &until)
                          : pthread_rwlock_clockrdlock(&l, CLOCK_MONOTONIC, &until);
      if (r == ETIMEDOUT) {
        timed_out++;
        continue;
      }
      ASSERT_EQ(r, 0);
      taken++;
      write ? probe.enter_write() : probe.enter_read();
      if (fiber) {
        bobbin::this_fiber::sleep_for(std::chrono::microseconds(rng() % 200));
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
      }
      write ? probe.leave_write() : probe.leave_read();
      ASSERT_EQ(pthread_rwlock_unlock(&l), 0);
    }
  };
  std::vector<bobbin::fiber<>> fibers;
  for (unsigned i = 0; i < 32; i++) fibers.push_back(rt->spawn([&, i] { body(true, i + 7); }));
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 3; i++) threads.emplace_back([&, i] { body(false, 2000 + i); });
  for (auto& f : fibers) f.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(taken.load() + timed_out.load(), 35 * 100);
  EXPECT_GT(timed_out.load(), 0);
  EXPECT_EQ(probe.violations.load(), 0);
  EXPECT_EQ(pthread_rwlock_trywrlock(&l), 0) << "the lock was left held";
  EXPECT_EQ(pthread_rwlock_unlock(&l), 0);
}

INSTANTIATE_TEST_SUITE_P(Carriers, OsRwlockTest, ::testing::Values(1u, 2u),
                         [](const auto& info) { return std::to_string(info.param) + "_carriers"; });

TEST(OsRwlockThreadTest, PlainThreadsKeepGlibcsAnswers) {
  // No runtime at all: every rwlock call is bobbin's, for threads too.
  pthread_rwlock_t l;
  ASSERT_EQ(pthread_rwlock_init(&l, nullptr), 0);
  EXPECT_EQ(pthread_rwlock_rdlock(&l), 0);
  EXPECT_EQ(pthread_rwlock_tryrdlock(&l), 0);  // readers share
  EXPECT_EQ(pthread_rwlock_trywrlock(&l), EBUSY);
  std::thread t([&] {
    const timespec soon = monotonic_in(10ms);
    EXPECT_EQ(pthread_rwlock_clockwrlock(&l, CLOCK_MONOTONIC, &soon), ETIMEDOUT);
  });
  t.join();
  EXPECT_EQ(pthread_rwlock_unlock(&l), 0);
  EXPECT_EQ(pthread_rwlock_unlock(&l), 0);
  EXPECT_EQ(pthread_rwlock_unlock(&l), EPERM);  // not held
  EXPECT_EQ(pthread_rwlock_wrlock(&l), 0);
  EXPECT_EQ(pthread_rwlock_wrlock(&l), EDEADLK);
  std::thread u([&] { EXPECT_EQ(pthread_rwlock_unlock(&l), EPERM); });  // not its write lock
  u.join();
  EXPECT_EQ(pthread_rwlock_unlock(&l), 0);
  EXPECT_EQ(pthread_rwlock_destroy(&l), 0);
}

TEST(OsRwlockThreadTest, ALockMayBeFreedAsSoonAsItIsFreeWhileAnUnlockReturns) {
  // POSIX lets a caller destroy and free a lock once it holds no one: an
  // unlock that woke a waiter must not write to the lock after releasing
  // it (AddressSanitizer reports the write to freed memory). Each round: a
  // holder, a writer waiting behind it; the writer, once in, unlocks and
  // frees the lock while the holder's unlock may still be returning.
  for (int round = 0; round < 2000; round++) {
    auto* mu = new std::shared_mutex;
    mu->lock_shared();
    std::atomic<bool> waiting{false};
    std::thread writer([&] {
      waiting = true;
      mu->lock();
      mu->unlock();
      delete mu;
    });
    while (!waiting.load()) std::this_thread::yield();
    if (round % 2 == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    mu->unlock_shared();
    writer.join();
  }
}

}  // namespace
