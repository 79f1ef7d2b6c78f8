// bobbin/sync/latch.h
//
// Waiting for a number of things to finish.
//
// bobbin::latch is std::latch for fibers: a count fixed at construction,
// counted down once per event; wait() parks until it reaches zero.
//
//   bobbin::latch done(3);
//   for (int i = 0; i < 3; i++) bobbin::spawn([&] { work(i); done.count_down(); }).detach();
//   done.wait();
//
// bobbin::wait_group is Go's sync.WaitGroup: add() before starting work,
// done() when each piece ends, wait() until the count is zero. Unlike a latch
// it can be reused once it has reached zero.
//
//   bobbin::wait_group wg;
//   for (auto& conn : conns) {
//     wg.add(1);
//     bobbin::spawn([&] { serve(conn); wg.done(); }).detach();
//   }
//   wg.wait();
//
// Blocks: wait() parks the fiber (blocks a plain thread). Cost: counting is
// one atomic operation; the last count_down()/done() wakes every waiter.
// Ordering: every count_down()/done() happens-before wait() returns.
// Lifetime: once wait() or try_wait() has seen zero, no count_down()/done()
// is still touching the object, so the waiter may destroy it.
// Misuse: counting below zero aborts with a message.
#ifndef BOBBIN_SYNC_LATCH_H_
#define BOBBIN_SYNC_LATCH_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"

namespace bobbin {

class BOBBIN_API latch {
 public:
  explicit latch(std::ptrdiff_t count) : count_(count) {}
  // Destroying a latch that fibers wait on is a bug: it writes a report
  // naming them, and they stay parked for good.
  ~latch();
  latch(const latch&) = delete;
  latch& operator=(const latch&) = delete;

  void count_down(std::ptrdiff_t n = 1);
  bool try_wait() const noexcept;
  // Never interrupted by a cancellation.
  void wait() const { (void)wait_until(deadline::never(), /*cancellable=*/false); }
  // True once the count is zero; false if `d` passed first, or the calling
  // fiber was cancelled.
  bool wait_until(deadline d) const { return wait_until(d, /*cancellable=*/true); }
  void arrive_and_wait(std::ptrdiff_t n = 1) {
    count_down(n);
    wait();
  }

 private:
  bool wait_until(deadline d, bool cancellable) const;
  std::atomic<std::ptrdiff_t> count_;
  mutable internal::spin_lock lock_;
  mutable internal::waiter_list waiters_;
};

class BOBBIN_API wait_group {
 public:
  wait_group() = default;
  // As ~latch().
  ~wait_group();
  wait_group(const wait_group&) = delete;
  wait_group& operator=(const wait_group&) = delete;

  void add(std::ptrdiff_t n);
  void done() { add(-1); }
  void wait() { (void)wait_until(deadline::never(), /*cancellable=*/false); }
  bool wait_until(deadline d) { return wait_until(d, /*cancellable=*/true); }
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) {
    return wait_until(deadline(timeout));
  }
  std::ptrdiff_t count() const noexcept { return count_.load(std::memory_order_acquire); }

 private:
  bool wait_until(deadline d, bool cancellable);
  std::atomic<std::ptrdiff_t> count_{0};
  internal::spin_lock lock_;
  internal::waiter_list waiters_;
};

}  // namespace bobbin

#endif  // BOBBIN_SYNC_LATCH_H_
