// The global-deadlock report (runtime_options::deadlock_report_after): a
// deliberate deadlock is reported with a dump, or aborts the process when
// asked; fibers that sleep, do I/O, wait with deadlines or are waited on by a
// thread with a deadline are not reported.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "bobbin/bobbin.h"

namespace {

using namespace std::chrono_literals;

bobbin::runtime_options quick_report(bool abort = false) {
  bobbin::runtime_options o;
  o.carriers = 2;
  o.deadlock_report_after = 200ms;
  o.abort_on_deadlock = abort;
  return o;
}

// Each fiber waits for a message only the other would send after its own.
__attribute__((noinline)) void wait_for_the_other(bobbin::channel<int>& mine, bobbin::channel<int>& theirs) {
  int v;
  if (mine.receive(v) == bobbin::channel_status::ok) (void)theirs.send(v);
  asm volatile("");
}

TEST(DeadlockTest, TwoFibersWaitingOnEachOtherAreReported) {
  auto rt = bobbin::runtime::start(quick_report()).value();
  bobbin::channel<int> to_a(0), to_b(0);
  testing::internal::CaptureStderr();
  auto a = rt->spawn([&] { wait_for_the_other(to_a, to_b); }, {.name = "a"});
  auto b = rt->spawn([&] { wait_for_the_other(to_b, to_a); }, {.name = "b"});
  std::this_thread::sleep_for(700ms);  // the report comes after 200 ms of standstill
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("bobbin: all 2 fibers are parked and nothing can wake them"), std::string::npos) << err;
  EXPECT_NE(err.find("1 fiber parked on channel receive"), std::string::npos) << err;  // one group per spawn site
  EXPECT_NE(err.find("wait_for_the_other"), std::string::npos) << err;
  EXPECT_EQ(err.find("nothing can wake them", err.find("nothing can wake them") + 1), std::string::npos)
      << "reported once per standstill";
  // Closing the channels ends the deadlock.
  to_a.close();
  to_b.close();
  a.join();
  b.join();
}

TEST(DeadlockDeathTest, AbortOnDeadlockAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto rt = bobbin::runtime::start(quick_report(/*abort=*/true)).value();
        bobbin::channel<int> never(0);
        auto f = rt->spawn([&] { (void)never.receive(); });
        std::this_thread::sleep_for(10s);
      },
      "all 1 fibers are parked and nothing can wake them");
}

TEST(DeadlockTest, FibersThatCanStillBeWokenAreNotReported) {
  auto rt = bobbin::runtime::start(quick_report()).value();
  bobbin::channel<int> quiet(0);
  testing::internal::CaptureStderr();
  std::vector<bobbin::fiber<>> fs;
  fs.push_back(rt->spawn([&] { bobbin::this_fiber::sleep_for(800ms); }));  // a timer ends it
  fs.push_back(rt->spawn([&] {
    int v;
    (void)quiet.receive(v, 800ms);  // a deadline ends it
  }));
  fs.push_back(rt->spawn([&] { (void)quiet.receive(); }));  // untimed, but the thread below may send
  // A plain thread in a timed wait could wake a fiber when it times out.
  int v;
  (void)bobbin::channel<int>(0).receive(v, 700ms);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("nothing can wake them"), std::string::npos) << err;
  quiet.close();
  for (auto& f : fs) f.join();
}

}  // namespace
