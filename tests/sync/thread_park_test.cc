// How a plain thread waits in bobbin's parking primitive (bobbin/internal/
// park.h, runtime/park/park.cc): a thread that finds itself claimed by a
// notifier that has not finished gives its core away instead of spinning
// for the notifier's whole time slice; short-lived threads that are
// notified and exit at once are each woken exactly once.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"

namespace {

using namespace std::chrono_literals;
using bobbin::deadline;
using bobbin::wait_reason;
using bobbin::internal::park;
using bobbin::internal::spin_lock;
using bobbin::internal::wait_state;
using bobbin::internal::waiter;
using bobbin::internal::waiter_list;

std::chrono::nanoseconds thread_cpu_time() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof set, &set), 0);
}

// A notifier claims the thread's waiter and, before it finishes the
// hand-over, computes for 200 ms of CPU (as a notifier the kernel preempted
// right after its futex wake keeps the waiter claimed), on the same core as
// the waiter. The waiter's own 20 ms deadline passes meanwhile, so it finds
// itself claimed. It must leave the core to the notifier: spinning, it took
// half of it (the four-library mix of perf/blocking lost 23% of its CPU so).
TEST(ThreadParkTest, AClaimedThreadGivesItsCoreToItsNotifier) {
  const int cpu = sched_getcpu();
  ASSERT_GE(cpu, 0);
  cpu_set_t before;
  ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof before, &before), 0);
  pin_to_cpu(cpu);
  // A main thread descheduled for 20 ms before its claim lets the wait time
  // out instead: then try again.
  for (int attempt = 0; attempt < 5; attempt++) {
    spin_lock lock;
    waiter_list list;
    waiter w;
    std::atomic<bool> linked{false};
    wait_state result = wait_state::waiting;
    std::thread t([&] {
      pin_to_cpu(cpu);
      w.prepare();
      lock.lock();
      list.push_back(&w);
      linked.store(true);
      result = park(w, lock, list, deadline(std::chrono::steady_clock::now() + 20ms), wait_reason::condition_wait,
                    /*cancellable=*/false);
    });
    while (!linked.load()) std::this_thread::yield();
    lock.lock();
    waiter* claimed = bobbin::internal::pop_and_claim(list);
    lock.unlock();
    if (claimed == nullptr) {  // timed out first
      t.join();
      continue;
    }
    const auto wall0 = std::chrono::steady_clock::now();
    const auto cpu0 = thread_cpu_time();
    while (thread_cpu_time() - cpu0 < 200ms) {
    }
    const auto wall = std::chrono::steady_clock::now() - wall0;
    bobbin::internal::notify(claimed);
    t.join();
    pthread_setaffinity_np(pthread_self(), sizeof before, &before);
    EXPECT_EQ(claimed, &w);
    EXPECT_EQ(result, wait_state::notified);  // claimed first: the deadline lost
    // Spinning, the waiter took about half the core from 20 ms on: ~380 ms.
    EXPECT_LT(wall, 300ms) << "the claimed thread kept the core from its notifier";
    return;
  }
  pthread_setaffinity_np(pthread_self(), sizeof before, &before);
  FAIL() << "every wait timed out before it could be claimed";
}

// Each of many short-lived threads waits, is notified, and exits at once:
// every wait ends notified, none is lost (a guard for the yield above: it
// passed before it too).
TEST(ThreadParkTest, ShortLivedThreadsAreEachWokenOnce) {
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

}  // namespace
