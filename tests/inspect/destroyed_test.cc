// Primitives destroyed while fibers wait on them: each destructor names the
// waiters (id, name, wait reason, spawn site) on stderr and does what its
// header says: a channel wakes them with `closed`, a condition variable
// wakes them spuriously, and a mutex, semaphore, latch or wait group
// strands them, so that not even their deadline resumes them into the
// freed object.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "bobbin/bobbin.h"

namespace {

using namespace std::chrono_literals;

bobbin::runtime_options two_carriers() {
  bobbin::runtime_options o;
  o.carriers = 2;
  return o;
}

// Polls until `n` fibers of `rt` are parked on `reason` (by the JSON dump).
void wait_until_parked(bobbin::runtime& rt, int n, std::string_view reason) {
  const std::string needle = "\"wait_reason\":\"" + std::string(reason) + "\"";
  for (auto give_up = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < give_up;) {
    const std::string dump = rt.dump(bobbin::dump_format::json);
    int seen = 0;
    for (auto at = dump.find(needle); at != std::string::npos; at = dump.find(needle, at + 1)) seen++;
    if (seen >= n) return;
    std::this_thread::sleep_for(1ms);
  }
  FAIL() << n << " fibers never parked on " << reason;
}

TEST(DestroyedPrimitiveTest, AChannelWakesItsWaitersWithClosedAndNamesThem) {
  auto rt = bobbin::runtime::start(two_carriers()).value();
  auto ch = std::make_unique<bobbin::channel<std::string>>(0);
  std::atomic<int> closed{0};
  testing::internal::CaptureStderr();
  // The fibers use the objects through pointers of their own: this thread
  // resets the unique_ptrs, and a fiber's read of one, made before it
  // parked, has no order with that write that ThreadSanitizer can see
  // (wait_until_parked reads a dump).
  auto receiver = rt->spawn(
      [&, ch = ch.get()] {
        std::string v;
        if (ch->receive(v) == bobbin::channel_status::closed) closed++;
      },
      {.name = "orphan-receiver"});
  wait_until_parked(*rt, 1, "channel receive");
  auto ch2 = std::make_unique<bobbin::channel<std::string>>(0);
  auto sender = rt->spawn(
      [&, ch2 = ch2.get()] {
        std::string v = "kept";
        if (ch2->send(std::move(v)) == bobbin::channel_status::closed && v == "kept") closed++;
      },
      {.name = "orphan-sender"});
  wait_until_parked(*rt, 1, "channel send");
  ch.reset();
  ch2.reset();
  receiver.join();
  sender.join();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(closed.load(), 2) << "both woke with closed; the sender kept its value";
  EXPECT_NE(err.find("bobbin: bobbin::channel"), std::string::npos) << err;
  EXPECT_NE(err.find("destroyed while 1 was waiting on it; they get channel_status::closed"), std::string::npos)
      << err;
  EXPECT_NE(err.find("\"orphan-receiver\" parked on channel receive, spawned at"), std::string::npos) << err;
  EXPECT_NE(err.find("\"orphan-sender\" parked on channel send, spawned at"), std::string::npos) << err;
  EXPECT_NE(err.find("destroyed_test.cc"), std::string::npos) << "the spawn site names the file\n" << err;
}

TEST(DestroyedPrimitiveTest, AConditionVariableWakesItsWaitersSpuriously) {
  auto rt = bobbin::runtime::start(two_carriers()).value();
  bobbin::mutex mu;
  auto cv = std::make_unique<bobbin::condition_variable>();
  std::atomic<bool> woke{false};
  testing::internal::CaptureStderr();
  auto waiter = rt->spawn(
      [&, cv = cv.get()] {  // not the unique_ptr this thread resets (see the channel test)
        std::unique_lock lock(mu);
        cv->wait(lock);
        woke = true;
      },
      {.name = "cv-waiter"});
  wait_until_parked(*rt, 1, "condition wait");
  cv.reset();
  waiter.join();
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(woke.load());
  EXPECT_NE(err.find("bobbin::condition_variable"), std::string::npos) << err;
  EXPECT_NE(err.find("they wake as from a spurious wake-up"), std::string::npos) << err;
  EXPECT_NE(err.find("\"cv-waiter\" parked on condition wait"), std::string::npos) << err;
}

// The waiter has a deadline: once stranded, it must not resume when the
// deadline passes (it would touch the freed mutex).
TEST(DestroyedPrimitiveTest, AMutexStrandsItsWaitersEvenPastTheirDeadline) {
  auto rt = bobbin::runtime::start(two_carriers()).value();
  auto mu = std::make_unique<bobbin::mutex>();
  mu->lock();  // held by this thread, and never unlocked: the bug under test
  std::atomic<bool> resumed{false};
  testing::internal::CaptureStderr();
  auto stranded = rt->spawn(
      [&, mu = mu.get()] {  // not the unique_ptr this thread resets (see the channel test)
        (void)mu->try_lock_for(300ms);
        resumed = true;
      },
      {.name = "stranded-locker"});
  stranded.detach();
  wait_until_parked(*rt, 1, "mutex lock");
  mu.reset();
  std::this_thread::sleep_for(600ms);  // well past the deadline
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_FALSE(resumed.load());
  EXPECT_NE(err.find("bobbin: bobbin::mutex"), std::string::npos) << err;
  EXPECT_NE(err.find("they stay parked for good"), std::string::npos) << err;
  EXPECT_NE(err.find("\"stranded-locker\" parked on mutex lock"), std::string::npos) << err;
  // The fiber is still there for dumps to show.
  EXPECT_NE(rt->dump(bobbin::dump_format::text).find("stranded-locker"), std::string::npos);
  setenv("BOBBIN_QUIET_SHUTDOWN", "1", 1);  // it is abandoned at shutdown, as intended
  rt.reset();
  unsetenv("BOBBIN_QUIET_SHUTDOWN");
}

TEST(DestroyedPrimitiveTest, SemaphoreLatchAndWaitGroupStrandTheirWaiters) {
  auto rt = bobbin::runtime::start(two_carriers()).value();
  auto sem = std::make_unique<bobbin::semaphore>(0);
  auto lat = std::make_unique<bobbin::latch>(1);
  auto wg = std::make_unique<bobbin::wait_group>();
  wg->add(1);
  std::atomic<int> resumed{0};
  testing::internal::CaptureStderr();
  // Not the unique_ptrs this thread resets (see the channel test).
  rt->spawn([&, sem = sem.get()] { (void)sem->try_acquire_for(200ms), resumed++; }, {.name = "sem-waiter"}).detach();
  rt->spawn([&, lat = lat.get()] { lat->wait(), resumed++; }, {.name = "latch-waiter"}).detach();
  rt->spawn([&, wg = wg.get()] { (void)wg->wait_for(200ms), resumed++; }, {.name = "wg-waiter"}).detach();
  wait_until_parked(*rt, 1, "semaphore acquire");
  wait_until_parked(*rt, 1, "latch wait");
  wait_until_parked(*rt, 1, "wait group wait");
  sem.reset();
  lat.reset();
  wg.reset();
  std::this_thread::sleep_for(400ms);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(resumed.load(), 0);
  for (const char* what : {"bobbin::semaphore", "bobbin::latch", "bobbin::wait_group", "\"sem-waiter\"",
                           "\"latch-waiter\"", "\"wg-waiter\""}) {
    EXPECT_NE(err.find(what), std::string::npos) << what << "\n" << err;
  }
  setenv("BOBBIN_QUIET_SHUTDOWN", "1", 1);
  rt.reset();
  unsetenv("BOBBIN_QUIET_SHUTDOWN");
}

TEST(DestroyedPrimitiveTest, DestroyingWithoutWaitersSaysNothing) {
  auto rt = bobbin::runtime::start(two_carriers()).value();
  testing::internal::CaptureStderr();
  rt->spawn([] {
      bobbin::channel<int> ch(4);
      (void)ch.send(1);
      bobbin::mutex mu;
      std::lock_guard lock(mu);
      bobbin::condition_variable cv;
      bobbin::semaphore sem(1);
      sem.acquire();
      bobbin::wait_group wg;
    }).join();
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

}  // namespace
