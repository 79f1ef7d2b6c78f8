// The carrier's ring (runtime/io/ring.h) against the real kernel: completions
// the kernel defers on a DEFER_TASKRUN ring are all collected by the
// non-waiting enter a busy carrier makes, not 20 per enter with the rest left
// unflagged (since Linux 6.13: a fiber whose timer had fired then waited
// seconds behind them; see ring::enter).
#include <gtest/gtest.h>
#include <linux/time_types.h>

#include <chrono>
#include <thread>
#include <vector>

#include "runtime/io/ring.h"

namespace {

using bobbin::internal::ring;

// Timeouts that have fired: their completions are task work the kernel
// runs only when the ring's thread enters it.
void arm_expired_timeouts(ring& r, int n, std::vector<__kernel_timespec>& when) {
  when.assign(static_cast<std::size_t>(n), __kernel_timespec{0, 1'000'000});  // 1 ms
  for (int i = 0; i < n; i++) {
    io_uring_sqe* sqe = r.try_get_sqe();
    ASSERT_NE(sqe, nullptr);
    io_uring_prep_timeout(sqe, &when[static_cast<std::size_t>(i)], 0, 0);
    io_uring_sqe_set_data64(sqe, 0);
  }
  ASSERT_GE(r.enter(/*wait=*/false), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // all have fired
}

TEST(RingTest, ABusyCarriersEnterCollectsEveryDeferredCompletion) {
  ring r;
  ASSERT_TRUE(r.init(1024).ok());
  std::vector<__kernel_timespec> when;
  constexpr int kTimers = 200;
  arm_expired_timeouts(r, kTimers, when);
  // What a carrier with fibers to run does: ask without waiting.
  ASSERT_TRUE(r.needs_enter() || (r.setup_flags() & IORING_SETUP_DEFER_TASKRUN) == 0);
  ASSERT_GE(r.enter(/*wait=*/false), 0);
  const unsigned reaped = r.drain([](io_uring_cqe* cqe) { EXPECT_EQ(cqe->res, -ETIME); });
  EXPECT_EQ(reaped, static_cast<unsigned>(kTimers)) << "one non-waiting enter collects them all";
}

TEST(RingTest, NoCompletionIsLeftBehindWhenTheyOutnumberTheCompletionQueue) {
  // More fired timeouts than the CQ holds: the carrier's loop (enter when
  // needs_enter() says so, drain, report what it reaped) must collect every
  // one before it would go to sleep.
  ring r;
  ASSERT_TRUE(r.init(16).ok());  // a CQ of 32
  std::vector<__kernel_timespec> when;
  constexpr int kTimers = 60;
  int armed = 0;
  while (armed < kTimers) {  // the SQ holds 16 at a time
    std::vector<__kernel_timespec> batch;
    const int n = std::min(16, kTimers - armed);
    arm_expired_timeouts(r, n, batch);
    when.insert(when.end(), batch.begin(), batch.end());
    armed += n;
    // Completions for the batch stay deferred (or already reached the CQ).
  }
  unsigned total = 0;
  for (int turn = 0; turn < 20 && total < static_cast<unsigned>(kTimers); turn++) {
    if (!r.needs_enter() && !r.cq_ready()) break;  // the carrier would sleep: nothing must be left
    ASSERT_GE(r.enter(/*wait=*/false), 0);
    const unsigned n = r.drain([](io_uring_cqe*) {});
    r.reaped(n);
    total += n;
  }
  EXPECT_EQ(total, static_cast<unsigned>(kTimers)) << "no completion left behind without a flag";
}

}  // namespace
