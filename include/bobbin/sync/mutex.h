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
// Lock cycles: in builds of the library without NDEBUG (meson's debug and
// debugoptimized, the default), or with BOBBIN_DETECT_LOCK_CYCLES=1 in the
// environment (=0 turns it off), each mutex records the fiber that holds
// it. A fiber about to park on a mutex then follows the chain of holders
// (the holder's own wait, that mutex's holder, ...), and if the chain comes
// back to it, writes a report naming each fiber and mutex of the cycle with
// the fibers' stacks, before it parks (it is then deadlocked, as it would
// be without the report). Relocking a mutex one holds is the smallest such
// cycle. A fiber that ends while holding a mutex is reported too. Costs
// while on: one store per lock and unlock, and the walk when a fiber parks;
// while off, one load of a global flag per lock and unlock. Plain threads
// are not followed: a chain through a thread ends there.
#ifndef BOBBIN_SYNC_MUTEX_H_
#define BOBBIN_SYNC_MUTEX_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"

namespace bobbin {

namespace internal {
// Whether mutexes record their holders (see "Lock cycles" above).
BOBBIN_API extern std::atomic<bool> g_track_mutex_holders;
// Waits until no lock-cycle walk, which may read this object, is running.
BOBBIN_API void wait_out_cycle_walks() noexcept;
struct mutex_access;
}  // namespace internal

class BOBBIN_API mutex {
 public:
  mutex() = default;
  // Destroying a mutex that fibers wait for is a bug (as with std::mutex):
  // it writes a report naming them, and they stay parked for good.
  ~mutex() {
    if (tracking()) [[unlikely]] internal::wait_out_cycle_walks();
    if ((state_.load(std::memory_order_relaxed) & kWaiters) != 0) report_destroyed_with_waiters();
  }
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  void lock() {
    uint32_t expected = 0;
    if (state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire)) {
      if (tracking()) [[unlikely]] note_holder();
      return;
    }
    lock_slow(deadline::never(), /*cancellable=*/false);
  }
  bool try_lock() noexcept {
    uint32_t s = state_.load(std::memory_order_relaxed);
    if ((s & (kLocked | kStarving)) == 0 &&
        state_.compare_exchange_strong(s, s | kLocked, std::memory_order_acquire)) {
      if (tracking()) [[unlikely]] note_holder();
      return true;
    }
    return false;
  }
  // Parks until the lock is had (true) or `d` passes (false); false too
  // when the calling fiber is cancelled (lock() is never interrupted).
  bool try_lock_until(deadline d) { return try_lock() || lock_slow(d, /*cancellable=*/true); }
  template <class Rep, class Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return try_lock_until(deadline(timeout));
  }
  void unlock() {
    if (tracking()) [[unlikely]] forget_holder();
    uint32_t expected = kLocked;
    if (state_.compare_exchange_strong(expected, 0, std::memory_order_release)) return;
    unlock_slow();
  }

 private:
  bool lock_slow(deadline d, bool cancellable);
  void unlock_slow();
  // Clears kLocked unless one of `queued_flags` is set; whether it did.
  bool release_unless_queued(uint32_t queued_flags) noexcept;
  void report_destroyed_with_waiters() noexcept;

  friend struct internal::mutex_access;
  static bool tracking() noexcept { return internal::g_track_mutex_holders.load(std::memory_order_relaxed); }
  void note_holder() noexcept;    // holder_ = the calling fiber
  void forget_holder() noexcept;  // holder_ = none

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
  // The fiber holding the mutex, while holders are tracked (else null).
  std::atomic<void*> holder_{nullptr};
};

}  // namespace bobbin

#endif  // BOBBIN_SYNC_MUTEX_H_
