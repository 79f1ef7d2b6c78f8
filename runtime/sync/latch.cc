#include "bobbin/sync/latch.h"

#include <vector>

#include "runtime/util/check.h"

namespace bobbin {
namespace {

// Shared by latch and wait_group: park until `count` is zero.
// The count reaches zero only under `lock` (see count_down_locked), so a
// waiter that sees zero takes the lock once before returning: the counter
// that brought it to zero has then left the object, and the caller may
// destroy it (the usual `wg.wait(); return;` with `wg` on the stack).
void wait_for_last_counter(internal::spin_lock& lock) {
  lock.lock();
  lock.unlock();
}

bool wait_for_zero(const std::atomic<std::ptrdiff_t>& count, internal::spin_lock& lock,
                   internal::waiter_list& waiters, deadline d, wait_reason reason, bool cancellable) {
  if (count.load(std::memory_order_acquire) == 0) {
    wait_for_last_counter(lock);
    return true;
  }
  internal::waiter w;
  w.prepare();
  lock.lock();
  // Re-checked under the lock: the last count-down takes the lock to wake.
  if (count.load(std::memory_order_acquire) == 0) {
    lock.unlock();
    return true;
  }
  waiters.push_back(&w);
  return internal::park(w, lock, waiters, d, reason, cancellable) == internal::wait_state::notified;
}

// Subtracts `n` under the lock and, at zero, wakes every waiter. Nothing
// touches the object after the unlock: the woken waiters live on their own
// stacks.
void count_down_locked(std::atomic<std::ptrdiff_t>& count, internal::spin_lock& lock,
                       internal::waiter_list& waiters, std::ptrdiff_t n, const char* below_zero) {
  std::vector<internal::waiter*> woken;
  lock.lock();
  std::ptrdiff_t left = count.fetch_sub(n, std::memory_order_acq_rel) - n;
  if (left < 0) {
    lock.unlock();
    BOBBIN_CHECK(false, below_zero);
  }
  if (left == 0) internal::claim_all(waiters, 0, woken);
  lock.unlock();
  internal::notify_all(woken);
}

// Waiters left at destruction are reported and stranded: telling them the
// count reached zero would be a lie.
void report_waiters_left(const char* primitive, const void* object, internal::spin_lock& lock,
                         internal::waiter_list& waiters) {
  lock.lock();
  if (!waiters.empty()) {
    internal::report_destroyed_with_waiters(primitive, object, {&waiters}, "they stay parked for good",
                                            /*strand_fibers=*/true);
  }
  lock.unlock();
}

}  // namespace

latch::~latch() { report_waiters_left("bobbin::latch", this, lock_, waiters_); }

wait_group::~wait_group() { report_waiters_left("bobbin::wait_group", this, lock_, waiters_); }

void latch::count_down(std::ptrdiff_t n) {
  count_down_locked(count_, lock_, waiters_, n, "bobbin: latch counted down below zero");
}

bool latch::try_wait() const noexcept {
  if (count_.load(std::memory_order_acquire) != 0) return false;
  wait_for_last_counter(lock_);
  return true;
}

bool latch::wait_until(deadline d, bool cancellable) const {
  return wait_for_zero(count_, lock_, waiters_, d, wait_reason::latch_wait, cancellable);
}

void wait_group::add(std::ptrdiff_t n) {
  if (n > 0) {  // cannot reach zero: no lock needed
    count_.fetch_add(n, std::memory_order_acq_rel);
    return;
  }
  count_down_locked(count_, lock_, waiters_, -n,
                    "bobbin: wait_group count went below zero (more done() than add())");
}

bool wait_group::wait_until(deadline d, bool cancellable) {
  return wait_for_zero(count_, lock_, waiters_, d, wait_reason::wait_group_wait, cancellable);
}

}  // namespace bobbin
