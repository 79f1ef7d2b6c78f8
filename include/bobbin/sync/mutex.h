// bobbin/sync/mutex.h
//
// A mutual-exclusion lock that parks fibers, not carriers.
//
//   bobbin::mutex mu;
//   {
//     std::lock_guard lock(mu);     // or std::unique_lock / std::scoped_lock
//     shared_state.update();
//   }
//
// Blocks: lock() parks the calling fiber while another holder has it; the
// carrier runs other fibers meanwhile. On a plain thread it blocks the thread,
// so fibers and threads may share one mutex.
// Fairness: barging with a starvation guard, as Go's sync.Mutex. An unlock
// frees the mutex and wakes the longest waiter, which then competes with
// fibers arriving meanwhile: a fiber that unlocks and relocks at once keeps
// the lock without a switch, so a contended mutex does not convoy. A waiter
// that has waited over 1 ms switches the mutex to hand-off mode: each unlock
// then passes ownership straight to the longest waiter and newcomers queue,
// until the queue is drained or a waiter is served within 1 ms. So no waiter
// waits much over 1 ms plus the critical sections queued ahead of it.
// Cost: uncontended lock/unlock is one compare-and-swap each; no allocation,
// no system call. Contended: a short spin, then a park; an unlock with
// waiters takes the internal spin lock and readies one waiter.
// Ordering: unlock() happens-before the next successful lock().
// try_lock() fails while the mutex is held or in hand-off mode; it may also
// fail spuriously when it races another locker (as std::mutex::try_lock()).
// Lifetime: as with std::mutex, a mutex may be destroyed once it is unlocked
// and no one else uses it; a concurrent unlock() has then left the object.
// Misuse: unlocking a mutex that is not locked aborts with a message. The
// mutex is not recursive; relocking from the owner deadlocks.
// Pinning: holding a bobbin::mutex across a park is fine (it is not an OS
// lock); holding a std::mutex across a park is not (see README "Pinning").
#ifndef BOBBIN_SYNC_MUTEX_H_
#define BOBBIN_SYNC_MUTEX_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"

namespace bobbin {

class BOBBIN_API mutex {
 public:
  mutex() = default;
  // Destroying a mutex that fibers wait for is a bug (as with std::mutex):
  // it writes a report naming them, and they stay parked for good.
  ~mutex() {
    if ((state_.load(std::memory_order_relaxed) & kWaiters) != 0) report_destroyed_with_waiters();
  }
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  void lock() {
    uint32_t expected = 0;
    if (state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire)) return;
    lock_slow(deadline::never());
  }
  bool try_lock() noexcept {
    uint32_t s = state_.load(std::memory_order_relaxed);
    return (s & (kLocked | kStarving)) == 0 &&
           state_.compare_exchange_strong(s, s | kLocked, std::memory_order_acquire);
  }
  // Parks until the lock is had (true) or `d` passes (false).
  bool try_lock_until(deadline d) { return try_lock() || lock_slow(d); }
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return try_lock_until(deadline(timeout));
  }
  void unlock() {
    uint32_t expected = kLocked;
    if (state_.compare_exchange_strong(expected, 0, std::memory_order_release)) return;
    unlock_slow();
  }

 private:
  bool lock_slow(deadline d);
  void unlock_slow();
  void report_destroyed_with_waiters() noexcept;

  // Bits of state_. kLocked is the lock itself. The others change only
  // under lock_ (kWoken is also cleared by the woken waiter); any of them
  // sends unlock() to its slow path.
  static constexpr uint32_t kLocked = 1;    // held, or being handed off
  static constexpr uint32_t kWaiters = 2;   // waiters_ may be non-empty
  static constexpr uint32_t kWoken = 4;     // a woken waiter is on its way
  static constexpr uint32_t kStarving = 8;  // hand-off mode: no barging

  std::atomic<uint32_t> state_{0};
  // Written only by the holder, in unlock(): when the waiter last woken first
  // queued, and how many unlocks have passed since it was woken.
  int64_t woken_since_ns_ = 0;
  uint32_t unlocks_since_wake_ = 0;
  internal::spin_lock lock_;
  internal::waiter_list waiters_;
};

}  // namespace bobbin

#endif  // BOBBIN_SYNC_MUTEX_H_
