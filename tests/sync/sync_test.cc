// mutex, condition_variable, semaphore, latch, wait_group: behaviour and
// stress with many fibers on every carrier, and use from plain threads.
#include <gtest/gtest.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/runtime.h"
#include "bobbin/sync/condition_variable.h"
#include "bobbin/sync/latch.h"
#include "bobbin/sync/mutex.h"
#include "bobbin/sync/semaphore.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

namespace {

using namespace std::chrono_literals;
using bobbin::testing::run_on;

TEST(MutexTest, ExcludesAcrossCarriersUnderStress) {
  for (int round = 0; round < 5; round++) {
    run_on(2, [] {
      bobbin::mutex mu;
      long counter = 0;  // not atomic: the mutex must protect it
      std::vector<bobbin::fiber<>> fs;
      for (int i = 0; i < 200; i++) {
        fs.push_back(bobbin::spawn([&] {
          for (int j = 0; j < 200; j++) {
            std::lock_guard l(mu);
            long v = counter;
            if (j % 16 == 0) bobbin::this_fiber::yield();  // park while holding it
            counter = v + 1;
          }
        }));
      }
      for (auto& f : fs) f.join();
      EXPECT_EQ(counter, 200 * 200);
    });
  }
}

TEST(MutexTest, SharedBetweenFibersAndThreads) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  bobbin::mutex mu;
  long counter = 0;
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 50; i++) {
    fs.push_back(rt->spawn([&] {
      for (int j = 0; j < 1000; j++) {
        std::lock_guard l(mu);
        counter++;
      }
    }));
  }
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; i++) {
    ts.emplace_back([&] {
      for (int j = 0; j < 5000; j++) {
        std::lock_guard l(mu);
        counter++;
      }
    });
  }
  for (auto& t : ts) t.join();
  for (auto& f : fs) f.join();
  EXPECT_EQ(counter, 50 * 1000 + 2 * 5000);
}

TEST(MutexTest, TryLockForTimesOut) {
  run_on(2, [] {
    bobbin::mutex mu;
    mu.lock();
    auto f = bobbin::spawn([&] {
      auto t0 = std::chrono::steady_clock::now();
      bool got = mu.try_lock_for(20ms);
      return std::make_pair(got, std::chrono::steady_clock::now() - t0);
    });
    auto [got, took] = f.join();
    EXPECT_FALSE(got);
    EXPECT_GE(took, 20ms);
    mu.unlock();
    EXPECT_TRUE(mu.try_lock_for(20ms));
    mu.unlock();
  });
}

// Barging lets a fiber that relocks at once keep the mutex; the 1 ms
// starvation guard must still bound every waiter's wait. Each fiber takes the
// lock in a tight loop (no yields), holding it ~1 us, for 300 ms. Without the
// guard a waiter waits for the whole run (checked by disabling the guard: 299
// ms of 300); with it, a few ms. The bound asserted (100 ms, a third of the
// starved figure) is loose because the machine is shared: an OS preemption
// of a carrier counts as waiting (66 ms seen once with the other suites
// running beside it, which is why sync_test now runs alone).
TEST(MutexTest, NoWaiterStarvesUnderBarging) {
  int64_t worst = 0;
  run_on(2, [&worst] {
    constexpr int kFibers = 16;
    bobbin::mutex mu;
    long counter = 0;
    std::vector<int64_t> max_wait_us(kFibers, 0);
    std::vector<long> acquired(kFibers, 0);
    const auto end = std::chrono::steady_clock::now() + 300ms;
    std::vector<bobbin::fiber<>> fs;
    for (int i = 0; i < kFibers; i++) {
      fs.push_back(bobbin::spawn([&, i] {
        while (std::chrono::steady_clock::now() < end) {
          const auto asked = std::chrono::steady_clock::now();
          mu.lock();
          const auto got = std::chrono::steady_clock::now();
          max_wait_us[i] = std::max<int64_t>(
              max_wait_us[i], std::chrono::duration_cast<std::chrono::microseconds>(got - asked).count());
          counter++;
          while (std::chrono::steady_clock::now() - got < 1us) {
          }
          mu.unlock();
          acquired[i]++;
        }
      }));
    }
    for (auto& f : fs) f.join();
    long total = 0;
    for (int i = 0; i < kFibers; i++) {
      EXPECT_GT(acquired[i], 0) << "fiber " << i << " never got the mutex";
      total += acquired[i];
      worst = std::max(worst, max_wait_us[i]);
    }
    EXPECT_EQ(counter, total);
    const int64_t bound_us = bobbin::testing::kUnderSanitizer ? 200'000 : 100'000;
    EXPECT_LT(worst, bound_us) << "a waiter waited " << worst << " us";
  });
  RecordProperty("worst_wait_us", std::to_string(worst));
}

// Timed lockers that give up (some after being woken by an unlock) race
// plain lockers: nobody is left parked on a free mutex, and exclusion holds.
TEST(MutexTest, TimedLockersGivingUpLoseNoWakeUp) {
  for (int round = 0; round < 3; round++) {
    run_on(2, [] {
      bobbin::mutex mu;
      long counter = 0;
      std::atomic<long> timed_out{0};
      std::vector<bobbin::fiber<>> fs;
      for (int i = 0; i < 32; i++) {
        fs.push_back(bobbin::spawn([&, i] {
          for (int j = 0; j < 500; j++) {
            if (i % 2 == 0) {
              std::lock_guard l(mu);
              counter++;
              if (j % 8 == 0) bobbin::this_fiber::yield();  // make the others queue
              continue;
            }
            if (!mu.try_lock_for(std::chrono::microseconds(j % 50))) {
              timed_out.fetch_add(1, std::memory_order_relaxed);
              continue;
            }
            counter++;
            mu.unlock();
          }
        }));
      }
      for (auto& f : fs) f.join();
      EXPECT_EQ(counter, 32 * 500 - timed_out.load());
      // The mutex is free and nobody waits: an uncontended lock succeeds.
      EXPECT_TRUE(mu.try_lock());
      mu.unlock();
    });
  }
}

TEST(ConditionVariableTest, ProducerConsumerStress) {
  for (int round = 0; round < 3; round++) {
    run_on(2, [] {
      bobbin::mutex mu;
      bobbin::condition_variable cv;
      std::deque<int> q;
      bool done = false;
      long sum = 0;
      std::vector<bobbin::fiber<>> consumers;
      for (int c = 0; c < 20; c++) {
        consumers.push_back(bobbin::spawn([&] {
          std::unique_lock l(mu);
          for (;;) {
            cv.wait(l, [&] { return !q.empty() || done; });
            if (q.empty()) return;
            sum += q.front();
            q.pop_front();
          }
        }));
      }
      std::vector<bobbin::fiber<>> producers;
      for (int p = 0; p < 10; p++) {
        producers.push_back(bobbin::spawn([&] {
          for (int i = 1; i <= 1000; i++) {
            std::lock_guard l(mu);
            q.push_back(i);
            cv.notify_one();
          }
        }));
      }
      for (auto& p : producers) p.join();
      {
        std::lock_guard l(mu);
        done = true;
      }
      cv.notify_all();
      for (auto& c : consumers) c.join();
      EXPECT_EQ(sum, 10L * 1000 * 1001 / 2);
    });
  }
}

TEST(ConditionVariableTest, WaitForTimesOutAndReacquires) {
  run_on(2, [] {
    bobbin::mutex mu;
    bobbin::condition_variable cv;
    std::unique_lock l(mu);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(cv.wait_for(l, 15ms), std::cv_status::timeout);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 15ms);
    EXPECT_TRUE(l.owns_lock());
    EXPECT_FALSE(mu.try_lock());
  });
}

TEST(ConditionVariableTest, TimedWaitsRacingNotifiesWakeExactlyOnce) {
  // Timeouts that fire while notifications arrive: each waiter must come back
  // exactly once, with a consistent answer.
  for (int round = 0; round < 5; round++) {
    run_on(2, [] {
      bobbin::mutex mu;
      bobbin::condition_variable cv;
      int tokens = 0, taken = 0, timeouts = 0;
      std::vector<bobbin::fiber<>> fs;
      for (int i = 0; i < 100; i++) {
        fs.push_back(bobbin::spawn([&, i] {
          std::unique_lock l(mu);
          if (cv.wait_for(l, std::chrono::microseconds(200 + (i % 10) * 100), [&] { return tokens > 0; })) {
            tokens--;
            taken++;
          } else {
            timeouts++;
          }
        }));
      }
      for (int i = 0; i < 50; i++) {
        {
          std::lock_guard l(mu);
          tokens++;
        }
        cv.notify_one();
        if (i % 5 == 0) bobbin::this_fiber::sleep_for(100us);
      }
      for (auto& f : fs) f.join();
      EXPECT_EQ(taken + timeouts, 100);
      EXPECT_EQ(taken + tokens, 50);
    });
  }
}

TEST(SemaphoreTest, BoundsConcurrency) {
  run_on(2, [] {
    bobbin::semaphore sem(3);
    std::atomic<int> inside{0}, peak{0};
    std::vector<bobbin::fiber<>> fs;
    for (int i = 0; i < 100; i++) {
      fs.push_back(bobbin::spawn([&] {
        sem.acquire();
        int now = ++inside;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        bobbin::this_fiber::sleep_for(100us);
        --inside;
        sem.release();
      }));
    }
    for (auto& f : fs) f.join();
    EXPECT_LE(peak.load(), 3);
    EXPECT_GE(peak.load(), 1);
    EXPECT_EQ(sem.available(), 3);
  });
}

TEST(SemaphoreTest, TryAcquireForTimesOut) {
  run_on(1, [] {
    bobbin::semaphore sem(0);
    EXPECT_FALSE(sem.try_acquire());
    EXPECT_FALSE(sem.try_acquire_for(5ms));
    sem.release(2);
    EXPECT_TRUE(sem.try_acquire_for(5ms));
    EXPECT_TRUE(sem.try_acquire());
    EXPECT_EQ(sem.available(), 0);
  });
}

TEST(LatchTest, WaitsForAllCountDowns) {
  run_on(2, [] {
    bobbin::latch l(50);
    std::atomic<int> n{0};
    for (int i = 0; i < 50; i++) {
      bobbin::spawn([&] {
        n++;
        l.count_down();
      }).detach();
    }
    l.wait();
    EXPECT_EQ(n.load(), 50);
    EXPECT_TRUE(l.try_wait());
  });
}

TEST(WaitGroupTest, ReusableAndTimed) {
  run_on(2, [] {
    bobbin::wait_group wg;
    for (int round = 0; round < 3; round++) {
      std::atomic<int> n{0};
      for (int i = 0; i < 20; i++) {
        wg.add(1);
        bobbin::spawn([&] {
          bobbin::this_fiber::sleep_for(1ms);
          n++;
          wg.done();
        }).detach();
      }
      wg.wait();
      EXPECT_EQ(n.load(), 20);
    }
    wg.add(1);
    EXPECT_FALSE(wg.wait_for(5ms));
    wg.done();
    EXPECT_TRUE(wg.wait_for(5ms));
  });
}

TEST(WaitGroupTest, PlainThreadWaitsForFibers) {
  auto rt = bobbin::runtime::start({.carriers = 2}).value();
  bobbin::wait_group wg;
  std::atomic<int> n{0};
  for (int i = 0; i < 100; i++) {
    wg.add(1);
    rt->spawn([&] {
      bobbin::this_fiber::sleep_for(1ms);
      n++;
      wg.done();
    }).detach();
  }
  wg.wait();  // on this plain thread
  EXPECT_EQ(n.load(), 100);
}

// The usual lifetime pattern: the waiter destroys the primitive as soon as
// wait()/lock() returns, while the fiber that released it may still be
// finishing its call. Under AddressSanitizer a touch after the release is a
// heap-use-after-free report; with many rounds on two carriers the window
// is hit often when the release path is wrong.
TEST(LifetimeTest, PrimitivesMayBeDestroyedAsSoonAsTheWaiterReturns) {
  run_on(2, [] {
    const int rounds = bobbin::testing::kUnderTsan ? 2000 : 20000;
    for (int i = 0; i < rounds; i++) {
      auto* wg = new bobbin::wait_group;
      wg->add(1);
      bobbin::spawn([wg] { wg->done(); }).detach();
      wg->wait();
      delete wg;

      auto* l = new bobbin::latch(1);
      bobbin::spawn([l] { l->count_down(); }).detach();
      while (!l->try_wait()) bobbin::this_fiber::yield();
      delete l;

      // A waiter queued behind the owner takes the mutex from the owner's
      // slow-path unlock, unlocks it and deletes it while that unlock may
      // still be running: its last write must come before the waiter's lock.
      auto* mu = new bobbin::mutex;
      auto* locked = new bobbin::latch(1);
      mu->lock();
      bobbin::spawn([mu, locked] {
        mu->lock();
        mu->unlock();
        delete mu;
        locked->count_down();
      }).detach();
      for (int y = 0; y < i % 4; y++) bobbin::this_fiber::yield();  // let it spin, queue or park
      mu->unlock();
      locked->wait();
      delete locked;
    }
  });
}

}  // namespace
