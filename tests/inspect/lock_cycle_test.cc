// Lock-cycle detection for bobbin::mutex (on in builds without NDEBUG, as
// the test builds are): a two- and a three-fiber cycle and a relock are
// reported with the fibers, the mutexes and the stacks; consistent lock
// order under heavy contention on two carriers is never reported; a fiber
// that ends holding a mutex is.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "bobbin/bobbin.h"

namespace {

using namespace std::chrono_literals;

class LockCycleTest : public testing::Test {
 protected:
  void SetUp() override {
    if (!bobbin::internal::g_track_mutex_holders.load()) GTEST_SKIP() << "lock-cycle detection is off in this build";
    bobbin::runtime_options o;
    o.carriers = 2;
    rt_ = bobbin::runtime::start(o).value();
  }
  std::unique_ptr<bobbin::runtime> rt_;
};

int count_of(const std::string& s, const std::string& what) {
  int n = 0;
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) n++;
  return n;
}

// Takes `first`, waits until every fiber of the ring holds its own, then
// wants `second`, held by the next fiber. Gives up after `patience`, which
// is what lets the test end, and keeps `first` until every fiber has given
// up: the deadlines are not simultaneous, and releasing early would let a
// later fiber take the mutex it waits for (seen under TSan).
__attribute__((noinline)) void lock_one_then_the_next(bobbin::mutex& first, bobbin::mutex& second,
                                                       bobbin::latch& all_hold, bobbin::latch& all_tried,
                                                       std::chrono::milliseconds patience,
                                                       std::atomic<int>& gave_up) {
  std::lock_guard hold(first);
  all_hold.arrive_and_wait();
  if (second.try_lock_for(patience)) {
    second.unlock();
  } else {
    gave_up++;
  }
  all_tried.arrive_and_wait();
  asm volatile("");
}

TEST_F(LockCycleTest, TwoFibersLockingInOppositeOrderAreReported) {
  bobbin::mutex m1, m2;
  bobbin::latch all_hold(2), all_tried(2);
  std::atomic<int> gave_up{0};
  testing::internal::CaptureStderr();
  auto a = rt_->spawn([&] { lock_one_then_the_next(m1, m2, all_hold, all_tried, 500ms, gave_up); }, {.name = "a"});
  auto b = rt_->spawn([&] { lock_one_then_the_next(m2, m1, all_hold, all_tried, 500ms, gave_up); }, {.name = "b"});
  a.join();
  b.join();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(gave_up.load(), 2);
  EXPECT_EQ(count_of(err, "bobbin: lock cycle (deadlock)"), 1) << "reported once, by the fiber closing it\n" << err;
  EXPECT_NE(err.find("waits for bobbin::mutex"), std::string::npos) << err;
  EXPECT_NE(err.find(" \"a\""), std::string::npos) << err;
  EXPECT_NE(err.find(" \"b\""), std::string::npos) << err;
  char m1_text[32], m2_text[32];
  snprintf(m1_text, sizeof m1_text, "%p", static_cast<void*>(&m1));
  snprintf(m2_text, sizeof m2_text, "%p", static_cast<void*>(&m2));
  EXPECT_NE(err.find(m1_text), std::string::npos) << err;
  EXPECT_NE(err.find(m2_text), std::string::npos) << err;
  // Both fibers' stacks, each through the function that locked.
  EXPECT_EQ(count_of(err, "lock_one_then_the_next"), 2) << err;
  EXPECT_GE(count_of(err, "bobbin::mutex::lock_slow"), 2) << err;
}

TEST_F(LockCycleTest, AThreeFiberCycleIsReported) {
  bobbin::mutex m[3];
  bobbin::latch all_hold(3), all_tried(3);
  std::atomic<int> gave_up{0};
  testing::internal::CaptureStderr();
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 3; i++) {
    fs.push_back(rt_->spawn([&, i] { lock_one_then_the_next(m[i], m[(i + 1) % 3], all_hold, all_tried, 500ms, gave_up); },
                            {.name = "ring-" + std::to_string(i)}));
  }
  for (auto& f : fs) f.join();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(gave_up.load(), 3);
  EXPECT_EQ(count_of(err, "bobbin: lock cycle (deadlock)"), 1) << err;
  EXPECT_EQ(count_of(err, ", held by "), 3) << "three hops back to the first fiber\n" << err;
  for (const char* name : {"\"ring-0\"", "\"ring-1\"", "\"ring-2\""}) EXPECT_NE(err.find(name), std::string::npos) << err;
  EXPECT_EQ(count_of(err, "lock_one_then_the_next"), 3) << err;
}

TEST_F(LockCycleTest, RelockingAHeldMutexIsReported) {
  bobbin::mutex mu;
  testing::internal::CaptureStderr();
  rt_->spawn(
         [&] {
           std::lock_guard hold(mu);
           EXPECT_FALSE(mu.try_lock_for(100ms));
         },
         {.name = "relocker"})
      .join();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("\"relocker\" locks bobbin::mutex"), std::string::npos) << err;
  EXPECT_NE(err.find("which it already holds (bobbin::mutex is not recursive)"), std::string::npos) << err;
}

// Many fibers on two carriers, two mutexes always taken in the same order,
// with hand-offs, barging and timed attempts: never a cycle.
TEST_F(LockCycleTest, ConsistentOrderUnderContentionIsNeverReported) {
  bobbin::mutex outer, inner;
  std::atomic<int> done{0};
  std::atomic<bool> stop{false};
  testing::internal::CaptureStderr();
  std::vector<bobbin::fiber<>> fs;
  for (int i = 0; i < 16; i++) {
    fs.push_back(rt_->spawn([&, i] {
      while (!stop.load(std::memory_order_relaxed)) {
        if (i % 4 == 0) {
          if (!outer.try_lock_for(1ms)) continue;
        } else {
          outer.lock();
        }
        {
          std::lock_guard b(inner);
          done++;
        }
        outer.unlock();
        if (i % 3 == 0) bobbin::this_fiber::yield();
      }
    }));
  }
  // A plain thread takes part too: chains through it end there.
  for (auto until = std::chrono::steady_clock::now() + 1s; std::chrono::steady_clock::now() < until;) {
    std::lock_guard a(outer);
    std::lock_guard b(inner);
  }
  stop = true;
  for (auto& f : fs) f.join();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_GT(done.load(), 1000);
  EXPECT_EQ(err.find("lock cycle"), std::string::npos) << err;
}

TEST_F(LockCycleTest, AFiberEndingWhileHoldingAMutexIsReported) {
  bobbin::mutex mu;
  testing::internal::CaptureStderr();
  rt_->spawn([&] { mu.lock(); }, {.name = "forgetful"}).join();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("\"forgetful\" ended holding 1 bobbin::mutex; they stay locked"), std::string::npos)
      << err;
  // The next locker waits; its walk reads the ended fiber safely.
  rt_->spawn([&] { EXPECT_FALSE(mu.try_lock_for(50ms)); }).join();
  mu.unlock();  // from here: the bug's cleanup, so the mutex can be destroyed
}

}  // namespace
