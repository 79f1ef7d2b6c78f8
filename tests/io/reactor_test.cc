// The carrier's reactor (runtime/io/reactor.h) on a real ring: what each
// failure of a submit or an enter leads to. EBUSY and EAGAIN: reap through
// the owner, then submit again (bounded); EINTR: submit again; anything
// else: a fatal message that names the call and the errno.
#include "runtime/io/reactor.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <thread>

namespace {

using bobbin::internal::reactor;

struct owner {
  int reaps = 0;
  reactor io;
  static void reap(void* self) {
    auto* o = static_cast<owner*>(self);
    o->reaps++;
    o->io.reap();
  }
};

// A reactor whose submission queue holds one SQE, with that one taken.
void init_full(owner& o) {
  ASSERT_TRUE(o.io.init(1, &owner::reap, &o).ok());
  io_uring_sqe* first = o.io.get_sqe();
  ASSERT_NE(first, nullptr);
  io_uring_prep_nop(first);
  io_uring_sqe_set_data64(first, 0);
}

TEST(ReactorTest, AFullQueueIsSubmittedToMakeRoom) {
  owner o;
  init_full(o);
  io_uring_sqe* second = o.io.get_sqe();  // the queue was full: submits the first
  ASSERT_NE(second, nullptr);
  io_uring_prep_nop(second);
  io_uring_sqe_set_data64(second, 0);
  EXPECT_EQ(o.io.submitted.load(), 1u);
  EXPECT_EQ(o.reaps, 0);
}

TEST(ReactorTest, BusyOrAgainReapsThroughTheOwnerAndSubmitsAgain) {
  for (int err : {EBUSY, EAGAIN}) {
    owner o;
    init_full(o);
    o.io.inject_failure_for_testing(err, 3);
    EXPECT_NE(o.io.get_sqe(), nullptr) << err;
    EXPECT_EQ(o.reaps, 3) << "one reap per refused submit, errno " << err;
    EXPECT_EQ(o.io.submitted.load(), 1u);
  }
}

TEST(ReactorTest, ReserveSqesFollowsTheSamePolicy) {
  owner o;
  init_full(o);
  o.io.inject_failure_for_testing(EBUSY, 1);
  o.io.reserve_sqes(1);
  EXPECT_EQ(o.reaps, 1);
  EXPECT_EQ(o.io.submitted.load(), 1u);
}

TEST(ReactorTest, AnInterruptedSubmitIsRetriedWithoutReaping) {
  owner o;
  init_full(o);
  o.io.inject_failure_for_testing(EINTR, 2);
  EXPECT_NE(o.io.get_sqe(), nullptr);
  EXPECT_EQ(o.reaps, 0);
  EXPECT_EQ(o.io.submitted.load(), 1u);
}

TEST(ReactorDeathTest, AnyOtherSubmitErrorIsFatalAndSaysWhich) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        owner o;
        init_full(o);
        o.io.inject_failure_for_testing(EINVAL, 1);
        o.io.get_sqe();
      },
      "bobbin: io_uring_submit failed unexpectedly: Invalid argument \\(errno 22\\)");
}

TEST(ReactorDeathTest, AKernelThatNeverTakesTheSubmissionEndsInAFatalMessage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        owner o;
        init_full(o);
        o.io.inject_failure_for_testing(EBUSY, 1 << 30);
        o.io.get_sqe();
      },
      "bobbin: io_uring_submit failed unexpectedly: Device or resource busy");
}

TEST(ReactorTest, EnterErrorsTheLoopRetriesAreNotFatal) {
  owner o;
  ASSERT_TRUE(o.io.init(8, &owner::reap, &o).ok());
  for (int err : {EINTR, EBUSY, EAGAIN, ETIME}) {
    io_uring_sqe* sqe = o.io.get_sqe();
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, 0);
    o.io.inject_failure_for_testing(err, 1);
    o.io.submit_and_collect(false);  // refused: the SQE stays prepared
    o.io.submit_and_collect(false);  // the next loop turn submits it
    o.io.reap();
  }
  EXPECT_EQ(o.io.submitted.load(), 4u);
}

TEST(ReactorDeathTest, AnyOtherEnterErrorIsFatalAndSaysWhich) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        owner o;
        if (!o.io.init(8, &owner::reap, &o).ok()) std::abort();
        io_uring_sqe* sqe = o.io.get_sqe();
        io_uring_prep_nop(sqe);
        o.io.inject_failure_for_testing(EBADF, 1);
        o.io.submit_and_collect(false);
      },
      "bobbin: io_uring_enter failed unexpectedly: Bad file descriptor \\(errno 9\\)");
}

TEST(ReactorTest, WakeFromAnotherThreadEndsTheSleepAndTheNextSleepArmsAgain) {
  owner o;
  ASSERT_TRUE(o.io.init(8, &owner::reap, &o).ok());
  for (int sleep = 0; sleep < 2; sleep++) {
    const uint64_t submitted = o.io.submitted.load();
    o.io.arm_wake();
    o.io.arm_wake();  // armed already: no second read
    std::thread waker([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      o.io.wake();
    });
    const auto start = std::chrono::steady_clock::now();
    o.io.submit_and_collect(/*wait=*/true);  // sleeps until the waker writes
    const auto slept = std::chrono::steady_clock::now() - start;
    waker.join();
    EXPECT_EQ(o.io.submitted.load(), submitted + 1) << "one read of the eventfd per sleep";
    EXPECT_GE(slept, std::chrono::milliseconds(15)) << "it slept until woken";
    EXPECT_EQ(o.io.reap(), 1u);  // the read's completion, which disarms it
  }
}

}  // namespace
