// The futex table (runtime/park/futex_table.h), where fibers' OS-lock and
// futex waits park on the epoll backend: what the table itself must get
// right, beyond what os_mutex_test and futex_calls_test check through it.
//
// This binary replaces the global operator new (below) so that a test can
// make allocations wait on a contended std::mutex, as allocators with
// locks of their own (jemalloc's arenas, tcmalloc's spin locks through
// syscall(SYS_futex)) do.
#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <thread>

#include "bobbin/fiber.h"
#include "bobbin/runtime.h"
#include "bobbin/this_fiber.h"
#include "runtime/park/futex_table.h"
#include "tests/testing/runtime_fixture.h"

namespace {

// While set, every allocation of the process takes this mutex around
// malloc(), as an allocator's own lock would.
std::atomic<pthread_mutex_t*> g_allocator_lock{nullptr};
// Allocations that found it held (and so waited for it).
std::atomic<int> g_allocations_that_waited{0};

void* allocate(std::size_t n) {
  pthread_mutex_t* m = g_allocator_lock.load(std::memory_order_acquire);
  if (m == nullptr) return std::malloc(n == 0 ? 1 : n);
  if (pthread_mutex_trylock(m) != 0) {
    g_allocations_that_waited.fetch_add(1, std::memory_order_relaxed);
    pthread_mutex_lock(m);
  }
  void* p = std::malloc(n == 0 ? 1 : n);
  pthread_mutex_unlock(m);
  return p;
}

}  // namespace

// They pair with each other (malloc and free underneath), which GCC's
// mismatch check cannot see through a replaced operator new.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (void* p = allocate(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = allocate(n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

using namespace std::chrono_literals;

const void* lock_word(pthread_mutex_t* m) { return &m->__data.__lock; }

// Before: a fiber's timed table wait (every OS-mutex wait is one: it
// re-checks the word after 1 ms, futex_table.h) made its deadline's timer
// with the bucket's spin lock held. An allocation there that waited on an
// allocator's lock hashing to the same bucket parked in the table and took
// that spin lock again: the carrier spun for ever (the test's watchdog
// fired after 10 s). Now the timer is made before the lock is taken.
TEST(FutexTableTest, AFiberWhoseWaitAllocatesBehindAContendedLockInTheSameBucketCarriesOn) {
  bobbin::runtime_options o = bobbin::testing::carriers(2);
  o.backend = bobbin::io_backend::epoll;  // the table, whatever the kernel
  auto rt = bobbin::runtime::start(o).value();

  pthread_mutex_t wanted = PTHREAD_MUTEX_INITIALIZER;
  // An "allocator lock" whose word shares the bucket of `wanted`'s.
  static pthread_mutex_t candidates[4096];
  pthread_mutex_t* allocator_lock = nullptr;
  const unsigned bucket = bobbin::internal::futex_table_bucket_index(lock_word(&wanted));
  for (auto& m : candidates) {
    if (bobbin::internal::futex_table_bucket_index(lock_word(&m)) == bucket) {
      allocator_lock = &m;
      break;
    }
  }
  ASSERT_NE(allocator_lock, nullptr);
  pthread_mutex_init(allocator_lock, nullptr);

  std::atomic<bool> go{false};
  std::atomic<bool> done{false};
  auto f = rt->spawn([&] {
    while (!go.load()) bobbin::this_fiber::yield();
    pthread_mutex_lock(&wanted);  // held by `holder`: a timed table wait
    pthread_mutex_unlock(&wanted);
    done = true;
  });

  // A thread holds `wanted` for 300 ms; another holds the allocator lock
  // for the first 150 ms, with allocations routed through it.
  std::atomic<bool> wanted_held{false};
  std::thread holder([&] {
    pthread_mutex_lock(&wanted);
    wanted_held = true;
    std::this_thread::sleep_for(300ms);
    pthread_mutex_unlock(&wanted);
  });
  while (!wanted_held.load()) std::this_thread::yield();
  std::thread allocator_holder([&] {
    pthread_mutex_lock(allocator_lock);
    g_allocator_lock.store(allocator_lock, std::memory_order_release);
    go = true;
    std::this_thread::sleep_for(150ms);
    g_allocator_lock.store(nullptr, std::memory_order_release);
    pthread_mutex_unlock(allocator_lock);
  });

  const auto limit = std::chrono::steady_clock::now() + bobbin::testing::scaled(10s);
  while (!done.load() && std::chrono::steady_clock::now() < limit) std::this_thread::sleep_for(1ms);
  if (!done.load()) {
    // A carrier spins for ever: nothing can be joined or shut down.
    std::fprintf(stderr, "FAILED: the fiber never got the mutex (a carrier deadlocked in the futex table)\n");
    std::_Exit(1);
  }
  holder.join();
  allocator_holder.join();
  f.join();
  EXPECT_GE(g_allocations_that_waited.load(), 1) << "no allocation waited: the test did not contend";
  EXPECT_GE(rt->stats().futex_parks, 2u);
}

}  // namespace
