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
// Fairness: when the holder unlocks with waiters queued, ownership passes
// directly to the longest waiter (FIFO hand-off): no barging, no starvation,
// at the price of a hand-off latency under heavy contention.
// Cost: uncontended lock/unlock is one compare-and-swap each; no allocation,
// no system call. Contended: a park and a run-queue push per hand-off.
// Ordering: unlock() happens-before the next successful lock().
// try_lock() may fail spuriously for the few instructions while an unlock
// with queued waiters is finishing (as std::mutex::try_lock() may).
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
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  void lock() {
    uint32_t expected = 0;
    if (state_.compare_exchange_strong(expected, 1, std::memory_order_acquire)) return;
    lock_slow(deadline::never());
  }
  bool try_lock() noexcept {
    uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire);
  }
  // Parks until the lock is had (true) or `d` passes (false).
  bool try_lock_until(deadline d) { return try_lock() || lock_slow(d); }
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return try_lock_until(deadline(timeout));
  }
  void unlock() {
    uint32_t expected = 1;
    if (state_.compare_exchange_strong(expected, 0, std::memory_order_release)) return;
    unlock_slow();
  }

 private:
  bool lock_slow(deadline d);
  void unlock_slow();

  // 0: unlocked; 1: locked, nobody queued; 2: locked, waiters may be queued;
  // 3: being released by unlock_slow() (counts as locked until it clears).
  std::atomic<uint32_t> state_{0};
  internal::spin_lock lock_;
  internal::waiter_list waiters_;
};

}  // namespace bobbin

#endif  // BOBBIN_SYNC_MUTEX_H_
