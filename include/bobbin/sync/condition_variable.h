// bobbin/sync/condition_variable.h
//
// A condition variable for bobbin::mutex, parking fibers.
//
//   bobbin::mutex mu;
//   bobbin::condition_variable cv;
//   std::unique_lock lock(mu);
//   cv.wait(lock, [&] { return ready; });
//   if (!cv.wait_for(lock, 100ms, [&] { return ready; })) { /* timed out */ }
//
// Blocks: wait() parks the calling fiber (blocks a plain thread) until
// notified or the deadline passes; the mutex is released while waiting and
// re-acquired before returning. Spurious wake-ups do not happen, but use the
// predicate forms anyway: another waiter may consume the condition first.
// Cost: notify with no waiters is one spin-lock round trip; no allocation.
// Timed waits allocate one small timer record on a fiber.
#ifndef BOBBIN_SYNC_CONDITION_VARIABLE_H_
#define BOBBIN_SYNC_CONDITION_VARIABLE_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"
#include "bobbin/sync/mutex.h"

namespace bobbin {

class BOBBIN_API condition_variable {
 public:
  condition_variable() = default;
  // Destroying a condition variable that fibers wait on is a bug (as with
  // std::condition_variable): it writes a report naming them and wakes them
  // as from a spurious wake-up (they relock their mutex and recheck).
  ~condition_variable();
  condition_variable(const condition_variable&) = delete;
  condition_variable& operator=(const condition_variable&) = delete;

  void notify_one() noexcept;
  void notify_all() noexcept;

  // Never interrupted by a cancellation (a predicate loop would spin on it).
  void wait(std::unique_lock<mutex>& lock) { (void)wait_impl(lock, deadline::never(), /*cancellable=*/false); }
  template <class Pred>
  void wait(std::unique_lock<mutex>& lock, Pred pred) {
    while (!pred()) wait(lock);
  }

  // std::cv_status::timeout when `d` passed before a notification, or the
  // calling fiber was cancelled (the mutex is held again either way).
  std::cv_status wait_until(std::unique_lock<mutex>& lock, deadline d) {
    return wait_impl(lock, d, /*cancellable=*/true);
  }
  template <class Pred>
  bool wait_until(std::unique_lock<mutex>& lock, deadline d, Pred pred) {
    while (!pred()) {
      if (wait_until(lock, d) == std::cv_status::timeout) return pred();
    }
    return true;
  }
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<mutex>& lock, std::chrono::duration<Rep, Period> timeout) {
    return wait_until(lock, deadline(timeout));
  }
  template <class Rep, class Period, class Pred>
  bool wait_for(std::unique_lock<mutex>& lock, std::chrono::duration<Rep, Period> timeout, Pred pred) {
    return wait_until(lock, deadline(timeout), std::move(pred));
  }

 private:
  std::cv_status wait_impl(std::unique_lock<mutex>& lock, deadline d, bool cancellable);
  internal::spin_lock lock_;
  internal::waiter_list waiters_;
};

}  // namespace bobbin

#endif  // BOBBIN_SYNC_CONDITION_VARIABLE_H_
