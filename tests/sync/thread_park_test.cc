// How a plain thread waits in bobbin's parking primitive (bobbin/internal/
// park.h, runtime/park/thread_parker.h): a thread that finds itself claimed
// by a notifier that has not finished sleeps instead of spinning; the
// notifier's unpark may come after the thread has left, even exited; and a
// thread's parker goes back to the pool when it exits, so threads that come
// and go do not make new ones.
#include <gtest/gtest.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>
#include <vector>

#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"
#include "runtime/park/thread_parker.h"

namespace {

using namespace std::chrono_literals;
using bobbin::deadline;
using bobbin::wait_reason;
using bobbin::internal::park;
using bobbin::internal::spin_lock;
using bobbin::internal::thread_parker;
using bobbin::internal::wait_state;
using bobbin::internal::waiter;
using bobbin::internal::waiter_list;

std::chrono::nanoseconds thread_cpu_time() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

// A notifier claims the thread's waiter, then is held up (as the kernel may
// preempt one right after its futex wake) for 500 ms. The thread's own
// deadline (20 ms) passes meanwhile, so it wakes and finds itself claimed.
// It must sleep until the notifier finishes: the spin it did before cost
// the four-library mix of perf/blocking 23% of its CPU.
TEST(ThreadParkTest, AClaimedThreadSleepsUntilItsNotifierFinishes) {
  spin_lock lock;
  waiter_list list;
  waiter w;
  std::atomic<bool> linked{false};
  wait_state result = wait_state::waiting;
  std::chrono::nanoseconds cpu{};
  std::thread t([&] {
    w.prepare();
    lock.lock();
    list.push_back(&w);
    linked.store(true);
    const auto cpu0 = thread_cpu_time();
    result = park(w, lock, list, deadline(std::chrono::steady_clock::now() + 20ms), wait_reason::condition_wait,
                  /*cancellable=*/false);
    cpu = thread_cpu_time() - cpu0;
  });
  while (!linked.load()) std::this_thread::yield();
  lock.lock();
  waiter* claimed = bobbin::internal::pop_and_claim(list);
  lock.unlock();
  ASSERT_EQ(claimed, &w);
  std::this_thread::sleep_for(500ms);
  bobbin::internal::notify(claimed);
  t.join();
  EXPECT_EQ(result, wait_state::notified);  // claimed first: the deadline lost
  EXPECT_LT(cpu, 100ms) << "the claimed thread spun for its notifier";
}

// Each of many short-lived threads waits, is notified, and exits at once;
// the notifier's unpark comes after the `notified` it published, so it
// often lands after the thread has gone (on its parker, which lives on:
// AddressSanitizer checks). Every wait ends notified.
TEST(ThreadParkTest, AnUnparkAfterTheWaiterExitedIsHarmless) {
  constexpr int kThreads = 200;
  spin_lock lock;
  waiter_list list;
  std::atomic<int> waiting{0}, notified{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&] {
      waiter w;
      w.prepare();
      lock.lock();
      list.push_back(&w);
      waiting.fetch_add(1);
      if (park(w, lock, list, deadline::never(), wait_reason::condition_wait, false) == wait_state::notified) {
        notified.fetch_add(1);
      }
    });
  }
  int woken = 0;
  while (woken < kThreads) {
    lock.lock();
    waiter* w = bobbin::internal::pop_and_claim(list);
    lock.unlock();
    if (w == nullptr) {
      std::this_thread::yield();
      continue;
    }
    bobbin::internal::notify(w);
    woken++;
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(notified.load(), kThreads);
}

// Threads that come and go one after another reuse the parkers of those
// that exited: the pool does not grow with the number of threads a program
// ever started. A recycled parker may carry a stale unpark; its next owner
// then returns once spuriously and waits again.
TEST(ThreadParkTest, ExitedThreadsParkersAreReused) {
  std::set<thread_parker*> seen;
  for (int i = 0; i < 100; i++) {
    thread_parker* p = nullptr;
    std::thread([&] {
      p = thread_parker::current();
      p->unpark();  // left over for the next owner
      EXPECT_EQ(thread_parker::current(), p);
    }).join();
    seen.insert(p);
  }
  EXPECT_LE(seen.size(), 2u);  // one, unless another test's thread exits meanwhile

  // The next owner of a parker with a stale permit: its wait is still correct.
  spin_lock lock;
  waiter_list list;
  waiter w;
  std::atomic<bool> linked{false};
  wait_state result = wait_state::waiting;
  std::thread t([&] {
    w.prepare();
    lock.lock();
    list.push_back(&w);
    linked.store(true);
    result = park(w, lock, list, deadline::never(), wait_reason::condition_wait, false);
  });
  while (!linked.load()) std::this_thread::yield();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(w.state.load(), wait_state::waiting);  // the stale permit did not end the wait
  lock.lock();
  waiter* c = bobbin::internal::pop_and_claim(list);
  lock.unlock();
  ASSERT_EQ(c, &w);
  bobbin::internal::notify(c);
  t.join();
  EXPECT_EQ(result, wait_state::notified);
}

}  // namespace
