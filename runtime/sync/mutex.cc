#include "bobbin/sync/mutex.h"

#include "runtime/util/check.h"

namespace bobbin {

using internal::wait_state;

bool mutex::lock_slow(deadline d) {
  // A short optimistic spin: critical sections guarded by a fiber mutex are
  // often a few hundred nanoseconds, far less than a park and wake.
  for (int i = 0; i < 64; i++) {
    uint32_t expected = 0;
    if (state_.load(std::memory_order_relaxed) == 0 &&
        state_.compare_exchange_weak(expected, 1, std::memory_order_acquire)) {
      return true;
    }
    __builtin_ia32_pause();
  }
  internal::waiter w;
  w.prepare();
  lock_.lock();
  // Announce a waiter; if the mutex turned out to be free, it is ours (the
  // state stays 2, which only costs the next unlock() a trip to the slow path).
  if (state_.exchange(2, std::memory_order_acquire) == 0) {
    lock_.unlock();
    return true;
  }
  waiters_.push_back(&w);
  // On notification, ownership was handed to us by unlock_slow().
  return internal::park(w, lock_, waiters_, d, wait_reason::mutex_lock) == wait_state::notified;
}

void mutex::unlock_slow() {
  BOBBIN_CHECK(state_.load(std::memory_order_relaxed) != 0, "bobbin: mutex::unlock() of an unlocked mutex");
  for (;;) {
    lock_.lock();
    internal::waiter* w = internal::pop_and_claim(waiters_);
    if (w != nullptr) {
      // Hand-off: the mutex stays locked, now owned by the woken waiter, who
      // cannot return (and so destroy the mutex) before notify() below.
      state_.store(waiters_.empty() ? 1 : 2, std::memory_order_release);
      lock_.unlock();
      internal::notify(w);
      return;
    }
    // No waiter. Storing 0 here and then unlocking lock_ would let another
    // thread lock, unlock and destroy the mutex between the two stores, so the
    // last write to the object must be the one that frees it. Mark it
    // "releasing" (still locked to everyone else), drop lock_, then clear the
    // state with one compare-and-swap.
    state_.store(3, std::memory_order_relaxed);
    lock_.unlock();
    uint32_t expected = 3;
    if (state_.compare_exchange_strong(expected, 0, std::memory_order_release, std::memory_order_relaxed)) {
      return;
    }
    // lock_slow() queued a waiter meanwhile (state is now 2): it is waiting
    // for this unlock, so hand the mutex to it.
  }
}

}  // namespace bobbin
