// How a plain thread waits in bobbin's parking primitive (bobbin/internal/
// park.h, runtime/park/thread_parker.h): a thread that finds itself claimed
// by a notifier that has not finished sleeps instead of spinning; the
// notifier's unpark may come after the thread has left, even exited; and a
// thread's parker goes back to the pool when it exits, so threads that come
// and go do not make new ones.
#include <gtest/gtest.h>
#include <pthread.h>
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
// preempt one right after its futex wake) for 500 ms. The thread finds
// itself claimed, at once or when its own 50 ms deadline passes. It must
// sleep until the notifier finishes: the spin it did before cost the
// four-library mix of perf/blocking 23% of its CPU.
TEST(ThreadParkTest, AClaimedThreadSleepsUntilItsNotifierFinishes) {
  // A main thread descheduled for 50 ms before its claim lets the wait time
  // out instead: then try again.
  for (int attempt = 0; attempt < 5; attempt++) {
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
      result = park(w, lock, list, deadline(std::chrono::steady_clock::now() + 50ms), wait_reason::condition_wait,
                    /*cancellable=*/false);
      cpu = thread_cpu_time() - cpu0;
    });
    while (!linked.load()) std::this_thread::yield();
    lock.lock();
    waiter* claimed = bobbin::internal::pop_and_claim(list);
    lock.unlock();
    if (claimed == nullptr) {  // timed out first
      t.join();
      continue;
    }
    std::this_thread::sleep_for(500ms);
    bobbin::internal::notify(claimed);
    t.join();
    EXPECT_EQ(claimed, &w);
    EXPECT_EQ(result, wait_state::notified);  // claimed first: the deadline lost
    EXPECT_LT(cpu, 100ms) << "the claimed thread spun for its notifier";
    return;
  }
  FAIL() << "every wait timed out before it could be claimed";
}

// Each of many short-lived threads waits, is notified, and exits at once;
// the notifier's unpark comes after the `notified` it published, so it
// often lands after the thread has gone, on a parker that has gone back to
// the pool or to the next thread. Every wait ends notified, none is lost.
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
// ever started, and a parker is not in the thread's own memory (its stack
// and static TLS), which glibc may unmap once the thread is gone. A
// recycled parker may carry a stale unpark; its next owner then returns
// once spuriously and waits again.
TEST(ThreadParkTest, ExitedThreadsParkersAreReused) {
  std::set<thread_parker*> seen;
  thread_parker* last = nullptr;
  for (int i = 0; i < 100; i++) {
    std::thread([&] {
      thread_parker* p = thread_parker::current();
      pthread_attr_t attr;
      void* stack = nullptr;
      size_t size = 0;
      ASSERT_EQ(pthread_getattr_np(pthread_self(), &attr), 0);
      pthread_attr_getstack(&attr, &stack, &size);
      pthread_attr_destroy(&attr);
      const auto* at = reinterpret_cast<const char*>(p);
      EXPECT_FALSE(at >= static_cast<const char*>(stack) && at < static_cast<const char*>(stack) + size)
          << "the parker lives in the thread's own memory";
      p->unpark();  // left over for the next owner
      EXPECT_EQ(thread_parker::current(), p);
      last = p;
    }).join();
    seen.insert(last);
  }
  EXPECT_LE(seen.size(), 2u);  // one, unless another thread exits meanwhile

  // The next thread gets the last one back, stale permit and all: its wait
  // still lasts until it is notified.
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
  EXPECT_EQ(w.token.target, last);
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(result, wait_state::waiting);  // not returned: the stale permit did not end the wait
  lock.lock();
  waiter* c = bobbin::internal::pop_and_claim(list);
  lock.unlock();
  if (c != nullptr) bobbin::internal::notify(c);
  t.join();
  EXPECT_EQ(c, &w);
  EXPECT_EQ(result, wait_state::notified);
}

}  // namespace
