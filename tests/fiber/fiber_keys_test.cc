// Per-fiber pthread keys (runtime/fiber/fiber_keys.h): a key made by a
// library BOBBIN_FIBER_KEYS names (here libbobbin_key_probe.so, standing in
// for OpenSSL's libcrypto, whose keys are per fiber by default) has one
// value per fiber, moved with the fiber and destroyed when it ends; any other
// key stays per carrier thread, glibc's. OpenSSL's own error queue is tested
// with the real library in tests/clients.
#include <pthread.h>
#include <stdlib.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>
#include <string_view>
#include <vector>

#include "bobbin/fiber.h"
#include "bobbin/fiber_local.h"
#include "bobbin/runtime.h"
#include "bobbin/this_fiber.h"
#include "tests/testing/runtime_fixture.h"

extern "C" int key_probe_create(pthread_key_t* key, void (*destructor)(void*));

namespace {

using namespace std::chrono_literals;

// A key the probe library makes: per fiber. Read at each key creation, so
// setting it here, before any runtime starts, is enough.
pthread_key_t per_fiber_key(void (*destructor)(void*) = nullptr) {
  setenv("BOBBIN_FIBER_KEYS", "libunrelated.so,libbobbin_key_probe", 1);
  pthread_key_t key;
  EXPECT_EQ(key_probe_create(&key, destructor), 0);
  return key;
}

void* as_value(long i) { return reinterpret_cast<void*>(i); }
long as_long(void* v) { return reinterpret_cast<long>(v); }

TEST(FiberKeysTest, EachFiberOnOneCarrierHasItsOwnValueAcrossParks) {
  const pthread_key_t key = per_fiber_key();
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  std::atomic<int> wrong{0};
  std::vector<bobbin::fiber<>> fs;
  for (long i = 1; i <= 50; i++) {
    fs.push_back(rt->spawn([&, i] {
      if (pthread_getspecific(key) != nullptr) wrong++;  // a new fiber starts with null
      EXPECT_EQ(pthread_setspecific(key, as_value(i)), 0);
      for (int j = 0; j < 20; j++) {
        if (j % 2 == 0) {
          bobbin::this_fiber::yield();
        } else {
          bobbin::this_fiber::sleep_for(100us);
        }
        if (as_long(pthread_getspecific(key)) != i) wrong++;
      }
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(pthread_getspecific(key), nullptr) << "the fibers' values leaked into the main thread's";
  pthread_key_delete(key);
}

TEST(FiberKeysTest, AValueMovesWithItsFiberAcrossCarriers) {
  const pthread_key_t key = per_fiber_key();
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::atomic<int> wrong{0}, moved{0};
  std::vector<bobbin::fiber<>> fs;
  for (long i = 1; i <= 100; i++) {
    fs.push_back(rt->spawn([&, i] {
      pthread_setspecific(key, as_value(i));
      const int first = bobbin::this_fiber::carrier_index();
      bool seen_other = false;
      for (int j = 0; j < 50; j++) {
        if (j % 2 == 0) {
          bobbin::this_fiber::yield();
        } else {
          bobbin::this_fiber::sleep_for(50us);
        }
        seen_other |= bobbin::this_fiber::carrier_index() != first;
        if (as_long(pthread_getspecific(key)) != i) wrong++;
      }
      if (seen_other) moved++;
    }));
  }
  for (auto& f : fs) f.join();
  EXPECT_EQ(wrong.load(), 0);
  std::printf("  %d of 100 fibers ran on both carriers\n", moved.load());
  // Not asserted: whether a fiber moves is the scheduler's choice (work
  // stealing); every run here has seen some (10 of 100 in the normal build).
  pthread_key_delete(key);
}

std::mutex destroyed_mu;
std::vector<long> destroyed;  // under destroyed_mu
std::atomic<bool> destroyed_on_fiber{true};
void record_destroyed(void* v) {
  if (!bobbin::this_fiber::is_fiber()) destroyed_on_fiber = false;
  std::lock_guard l(destroyed_mu);
  destroyed.push_back(as_long(v));
}

TEST(FiberKeysTest, TheDestructorRunsOnTheFiberWhenItEndsForEachNonNullValue) {
  const pthread_key_t key = per_fiber_key(record_destroyed);
  {
    std::lock_guard l(destroyed_mu);
    destroyed.clear();
  }
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(2)).value();
  std::vector<bobbin::fiber<>> fs;
  for (long i = 1; i <= 100; i++) {
    fs.push_back(rt->spawn([&, i] {
      pthread_setspecific(key, as_value(i));
      bobbin::this_fiber::sleep_for(1ms);
      if (i % 2 == 0) pthread_setspecific(key, nullptr);  // null: no destructor, as glibc
    }));
  }
  for (auto& f : fs) f.join();  // a joiner sees the values destroyed
  std::vector<long> got;
  {
    std::lock_guard l(destroyed_mu);
    got = destroyed;
  }
  std::sort(got.begin(), got.end());
  std::vector<long> odd;
  for (long i = 1; i <= 100; i += 2) odd.push_back(i);
  EXPECT_EQ(got, odd);
  EXPECT_TRUE(destroyed_on_fiber.load());
  pthread_key_delete(key);
}

pthread_key_t restoring_key;
std::atomic<int> restoring_calls{0};
void restore_again(void* v) {
  restoring_calls++;
  pthread_setspecific(restoring_key, v);  // stores again: glibc gives up after 4 rounds
}

TEST(FiberKeysTest, ADestructorThatStoresAgainRunsAtMostFourTimes) {
  restoring_key = per_fiber_key(restore_again);
  restoring_calls = 0;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  rt->spawn([] { pthread_setspecific(restoring_key, as_value(7)); }).join();
  EXPECT_EQ(restoring_calls.load(), PTHREAD_DESTRUCTOR_ITERATIONS);
  // The same on a plain thread, from glibc, for comparison.
  restoring_calls = 0;
  std::thread([] { pthread_setspecific(restoring_key, as_value(7)); }).join();
  EXPECT_EQ(restoring_calls.load(), PTHREAD_DESTRUCTOR_ITERATIONS);
  pthread_key_delete(restoring_key);
}

std::atomic<int> deleted_key_destroyed{0};
void count_deleted_key(void*) { deleted_key_destroyed++; }

TEST(FiberKeysTest, ADeletedKeysValuesAreNeitherFoundNorDestroyed) {
  deleted_key_destroyed = 0;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  rt->spawn([] {
      const pthread_key_t old_key = per_fiber_key(count_deleted_key);
      pthread_setspecific(old_key, as_value(1));
      pthread_key_delete(old_key);
      // glibc hands the lowest free number out again: usually the same one.
      const pthread_key_t new_key = per_fiber_key(count_deleted_key);
      EXPECT_EQ(old_key, new_key) << "glibc did not reuse the number: the test proves nothing";
      EXPECT_EQ(pthread_getspecific(new_key), nullptr);
      pthread_key_delete(new_key);
    }).join();
  EXPECT_EQ(deleted_key_destroyed.load(), 0);
}

// A destructor that makes a new key and stores a value under it grows the
// fiber's table while the values are being destroyed; the new value is
// destroyed too, in the next round.
pthread_key_t first_key, later_key;
std::atomic<int> later_destroyed{0};
void make_a_later_key(void*) {
  later_key = per_fiber_key([](void* v) { later_destroyed += as_long(v) == 77; });
  pthread_setspecific(later_key, as_value(77));
}

TEST(FiberKeysTest, AValueADestructorStoresUnderANewKeyIsDestroyedToo) {
  first_key = per_fiber_key(make_a_later_key);
  later_destroyed = 0;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  rt->spawn([] { pthread_setspecific(first_key, as_value(1)); }).join();
  EXPECT_EQ(later_destroyed.load(), 1);
  pthread_key_delete(later_key);
  pthread_key_delete(first_key);
}

// A fiber_local's destructor that stores a per-fiber key value: that value
// is destroyed too (the two kinds of destructors alternate at fiber end).
pthread_key_t key_set_by_local;
std::atomic<int> key_set_by_local_destroyed{0};
struct sets_a_key_when_destroyed {
  ~sets_a_key_when_destroyed() { pthread_setspecific(key_set_by_local, as_value(5)); }
};

TEST(FiberKeysTest, AValueAFiberLocalsDestructorStoresIsDestroyedToo) {
  key_set_by_local = per_fiber_key([](void* v) { key_set_by_local_destroyed += as_long(v) == 5; });
  key_set_by_local_destroyed = 0;
  bobbin::fiber_local<sets_a_key_when_destroyed> local;
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  rt->spawn([&] { (void)local.get(); }).join();
  EXPECT_EQ(key_set_by_local_destroyed.load(), 1);
  pthread_key_delete(key_set_by_local);
}

TEST(FiberKeysTest, OffAFiberAPerFiberKeyIsTheThreadsAsGlibcKeepsIt) {
  std::atomic<int> destroyed_by_thread{0};
  static std::atomic<int>* counter = nullptr;
  counter = &destroyed_by_thread;
  const pthread_key_t key = per_fiber_key([](void*) { (*counter)++; });
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  ASSERT_EQ(pthread_setspecific(key, as_value(42)), 0);
  rt->spawn([&] {
      EXPECT_EQ(pthread_getspecific(key), nullptr);
      pthread_setspecific(key, as_value(5));
    }).join();
  EXPECT_EQ(as_long(pthread_getspecific(key)), 42);
  std::thread([&] {
    EXPECT_EQ(pthread_getspecific(key), nullptr);
    pthread_setspecific(key, as_value(9));
  }).join();
  EXPECT_EQ(destroyed_by_thread.load(), 2);  // the fiber's and the thread's
  pthread_setspecific(key, nullptr);
  pthread_key_delete(key);
}

TEST(FiberKeysTest, KeysOfUnnamedCodeStayTheCarrierThreads) {
  // Made here, by the test program, which BOBBIN_FIBER_KEYS does not name:
  // the value is the carrier thread's, shared by its fibers (as a
  // thread_local is), because a library may pair such a key with
  // thread-local state the carrier keeps using after a fiber ends.
  pthread_key_t key;
  ASSERT_EQ(pthread_key_create(&key, nullptr), 0);
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  rt->spawn([&] { pthread_setspecific(key, as_value(3)); }).join();
  EXPECT_EQ(as_long(rt->spawn([&] { return pthread_getspecific(key); }).join()), 3);
  pthread_key_delete(key);
}

// Run by the fiber_keys_off test, with BOBBIN_INTERCEPT=0 (skipped otherwise):
// then even a named library's key is the carrier thread's, glibc's.
TEST(FiberKeysTest, WithInterceptionOffEveryKeyIsTheCarrierThreads) {
  const char* v = std::getenv("BOBBIN_INTERCEPT");
  if (v == nullptr || std::string_view(v) != "0") GTEST_SKIP() << "run with BOBBIN_INTERCEPT=0 (test fiber_keys_off)";
  const pthread_key_t key = per_fiber_key();
  auto rt = bobbin::runtime::start(bobbin::testing::carriers(1)).value();
  rt->spawn([&] { pthread_setspecific(key, as_value(3)); }).join();
  EXPECT_EQ(as_long(rt->spawn([&] { return pthread_getspecific(key); }).join()), 3);
  rt->spawn([&] { pthread_setspecific(key, nullptr); }).join();
  pthread_key_delete(key);
}

}  // namespace
