// bobbin::mutex: barging with a starvation guard (the design of Go's
// sync.Mutex), in a form that keeps std::mutex's lifetime rule: the last
// write an unlock makes to the object is the one that lets another locker in,
// so a fiber that then locks, unlocks and destroys the mutex never races a
// late write. Concretely: an unlock changes the flag bits (under lock_) and
// releases lock_ while it still holds kLocked, and only then clears kLocked
// (normal mode) or leaves it set for the waiter it hands ownership to
// (hand-off mode). A locker may queue in the gap between the two (it sees
// kLocked); the clear is therefore a compare-and-swap that fails when it
// did, and the unlock goes round to serve it (release_unless_queued). Waking the waiter after that touches only the waiter,
// which lives on the waiter's stack and cannot leave before it is woken.
//
// Why barging: with strict FIFO hand-off every unlock under contention waits
// for the next owner to be scheduled (a convoy: 16 fibers contending cost
// 2.6 us per lock, against Go's 48 ns). Why the 1 ms guard: barging alone
// can starve a woken waiter indefinitely behind a fiber that relocks at once.
#include "bobbin/sync/mutex.h"

#include <time.h>

#include "runtime/fiber/fiber_control.h"
#include "runtime/sync/lock_cycle.h"
#include "runtime/util/check.h"
#include "runtime/util/mutex_lock.h"

namespace bobbin {

using internal::wait_state;

namespace {

// A waiter that has waited this long switches the mutex to hand-off mode.
constexpr int64_t kStarvationNs = 1'000'000;
// Lock attempts spun before parking: critical sections guarded by a fiber
// mutex are often shorter than a park and wake. Short: under contention a
// spinning carrier keeps pulling the mutex's cache line from the holder's
// (perf/micro park_bench: 8 beat 4, 32, 64 and 128, and exponential backoff).
constexpr int kSpinAttempts = 8;

int64_t monotonic_now_ns() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct mutex_waiter : internal::waiter {
  int64_t first_queued_ns = 0;  // when this lock() first queued; 0: not yet
  bool handed_off = false;      // set by the unlocker: we own the mutex
};

}  // namespace

bool mutex::lock_slow(deadline d, bool cancellable) {
  bool woken = false;  // we hold kWoken: an unlock woke us, and we must clear it
  for (int i = 0; i < kSpinAttempts; i++) {
    uint32_t s = state_.load(std::memory_order_relaxed);
    if ((s & (kLocked | kStarving)) == 0 &&
        state_.compare_exchange_weak(s, s | kLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
      if (tracking()) note_holder();
      return true;
    }
    __builtin_ia32_pause();
  }
  // From here on the fiber waits for this mutex: lock-cycle detection
  // follows the chain of holders from it once, before the first park.
  internal::mutex_wait_mark waiting(tracking() ? internal::current_fiber_or_null() : nullptr, this);
  waiting.check_for_cycle();
  mutex_waiter w;
  for (;;) {
    uint32_t s = state_.load(std::memory_order_relaxed);
    if ((s & (kLocked | kStarving)) == 0) {
      const uint32_t acquired = (s | kLocked) & ~(woken ? kWoken : 0u);
      if (state_.compare_exchange_weak(s, acquired, std::memory_order_acquire, std::memory_order_relaxed)) {
        if (tracking()) note_holder();
        return true;
      }
      continue;
    }
    if (d.expired()) {
      if (!woken) return false;
      // Give up kWoken only while the mutex is held, so that its unlock
      // wakes the next waiter: nobody is left waiting on a free mutex.
      if (state_.compare_exchange_weak(s, s & ~kWoken, std::memory_order_relaxed)) return false;
      continue;
    }
    // Queue. The flag update is the commit point: it succeeds only while
    // the mutex is held, so the holder's unlock sees kWaiters and takes
    // lock_, which we hold until we are parked.
    const int64_t now = monotonic_now_ns();
    if (w.first_queued_ns == 0) w.first_queued_ns = now;
    const bool starving = now - w.first_queued_ns > kStarvationNs;
    lock_.lock();
    bool queued = false;
    for (s = state_.load(std::memory_order_relaxed);;) {
      if ((s & (kLocked | kStarving)) == 0) break;  // freed meanwhile: retry
      uint32_t next = s | kWaiters;
      if (woken) next &= ~kWoken;
      if (starving) next |= kStarving;
      if (state_.compare_exchange_weak(s, next, std::memory_order_relaxed)) {
        queued = true;
        break;
      }
    }
    if (!queued) {
      lock_.unlock();
      continue;
    }
    w.prepare();
    // A waiter woken before keeps its place at the head of the line.
    if (woken) waiters_.push_front(&w); else waiters_.push_back(&w);
    woken = false;
    const wait_state r = internal::park(w, lock_, waiters_, d, wait_reason::mutex_lock, cancellable);
    if (r == wait_state::timed_out || r == wait_state::canceled) return false;  // kWaiters may be stale: unlock tolerates that
    if (w.handed_off) {  // ownership passed in hand-off mode
      if (tracking()) note_holder();
      return true;
    }
    woken = true;
  }
}

void mutex::unlock_slow() {
  bool force_hand_off = false;
  for (;;) {
    uint32_t s = state_.load(std::memory_order_relaxed);
    BOBBIN_CHECK((s & kLocked) != 0, "bobbin: mutex::unlock() of an unlocked mutex");
    if (!force_hand_off && (s & kStarving) == 0 && ((s & kWaiters) == 0 || (s & kWoken) != 0)) {
      // Nobody to wake, or a woken waiter is on its way. That waiter may
      // not get to run at all while a fiber on its carrier keeps relocking
      // (fibers are not preempted), so now and then check how long it has
      // waited, and once that is over the limit hand the mutex to the next
      // in line: the relocking fiber then finds it taken and parks.
      if ((s & kWoken) != 0 && (++unlocks_since_wake_ & 15) == 0 &&
          monotonic_now_ns() - woken_since_ns_ > kStarvationNs) {
        force_hand_off = true;
        continue;
      }
      if (state_.compare_exchange_weak(s, s & ~kLocked, std::memory_order_release, std::memory_order_relaxed)) return;
      continue;
    }
    lock_.lock();
    auto* w = static_cast<mutex_waiter*>(internal::pop_and_claim(waiters_));
    if (w == nullptr) {
      // Everyone queued timed out: clear the flags, then release.
      s = state_.load(std::memory_order_relaxed);
      while (!state_.compare_exchange_weak(s, s & ~(kWaiters | kStarving), std::memory_order_relaxed)) {
      }
      lock_.unlock();
      // The last write (see the top), unless a locker queued between the
      // unlock of lock_ and here: it saw kLocked and set kWaiters, and
      // clearing kLocked now would leave it parked on a free mutex (with
      // kStarving, one nobody could take again). We still own the mutex:
      // go round and wake it.
      if (release_unless_queued(kWaiters | kStarving)) return;
      continue;
    }
    const int64_t now = monotonic_now_ns();
    const int64_t waited = now - w->first_queued_ns;
    s = state_.load(std::memory_order_relaxed);
    if (force_hand_off || (s & kStarving) != 0 || waited > kStarvationNs) {
      // Hand-off: kLocked stays set and the mutex is now w's. Leave hand-off
      // mode once the line is empty or a waiter is served promptly.
      w->handed_off = true;
      // The holder is w's fiber from now, though it has not run yet: a
      // cycle walk must not see the mutex free, nor held by us.
      if (tracking()) holder_.store(w->token.is_fiber ? w->token.target : nullptr, std::memory_order_release);
      const bool leave = waiters_.empty() || waited < kStarvationNs;
      uint32_t next;
      do {
        next = s | kStarving;
        if (leave) next &= ~kStarving;
        if (waiters_.empty()) next &= ~kWaiters;
      } while (!state_.compare_exchange_weak(s, next, std::memory_order_relaxed));
      lock_.unlock();
      internal::notify(w);
      return;
    }
    // Normal mode: wake w to compete for the mutex with whoever arrives.
    woken_since_ns_ = w->first_queued_ns;
    unlocks_since_wake_ = 0;
    uint32_t next;
    do {
      next = s | kWoken;
      if (waiters_.empty()) next &= ~kWaiters;
    } while (!state_.compare_exchange_weak(s, next, std::memory_order_relaxed));
    lock_.unlock();
    // The last write (see the top). A locker that queued since lock_ was
    // released without kStarving is served by w's turn (w's unlock wakes
    // it); one that set kStarving would block w and everyone after: then
    // we keep the mutex and go round to hand it off.
    const bool released = release_unless_queued(kStarving);
    internal::notify(w);
    if (released) return;
  }
}

bool mutex::release_unless_queued(uint32_t queued_flags) noexcept {
  uint32_t s = state_.load(std::memory_order_relaxed);
  while ((s & queued_flags) == 0) {
    if (state_.compare_exchange_weak(s, s & ~kLocked, std::memory_order_release, std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

// Plain loads and stores, no read-modify-writes: only the holder changes
// holder_ and its own count (an unlock from another fiber, which
// std::mutex does not allow either, may leave the count off by one; it only
// decides whether a fiber that ends is reported as holding a mutex).
void mutex::note_holder() noexcept {
  internal::fiber_control* self = internal::current_fiber_or_null();
  holder_.store(self, std::memory_order_release);
  if (self != nullptr) {
    self->mutexes_held.store(self->mutexes_held.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
}

void mutex::forget_holder() noexcept {
  auto* holder = static_cast<internal::fiber_control*>(holder_.load(std::memory_order_relaxed));
  if (holder == nullptr) return;
  holder_.store(nullptr, std::memory_order_release);
  holder->mutexes_held.store(holder->mutexes_held.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

void mutex::report_destroyed_with_waiters() noexcept {
  lock_.lock();
  internal::report_destroyed_with_waiters("bobbin::mutex", this, {&waiters_}, "they stay parked for good",
                                          /*strand_fibers=*/true);
  lock_.unlock();
}

}  // namespace bobbin
