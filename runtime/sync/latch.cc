#include "bobbin/sync/latch.h"

#include <vector>

#include "runtime/util/check.h"

namespace bobbin {
namespace {

// Shared by latch and wait_group: park until `count` is zero.
bool wait_for_zero(const std::atomic<std::ptrdiff_t>& count, internal::spin_lock& lock,
                   internal::waiter_list& waiters, deadline d, wait_reason reason) {
  if (count.load(std::memory_order_acquire) == 0) return true;
  internal::waiter w;
  w.prepare();
  lock.lock();
  // Re-checked under the lock: the last count-down takes the lock to wake.
  if (count.load(std::memory_order_acquire) == 0) {
    lock.unlock();
    return true;
  }
  waiters.push_back(&w);
  return internal::park(w, lock, waiters, d, reason) == internal::wait_state::notified;
}

void wake_all(internal::spin_lock& lock, internal::waiter_list& waiters) {
  std::vector<internal::waiter*> woken;
  lock.lock();
  internal::claim_all(waiters, 0, woken);
  lock.unlock();
  internal::notify_all(woken);
}

}  // namespace

void latch::count_down(std::ptrdiff_t n) {
  std::ptrdiff_t left = count_.fetch_sub(n, std::memory_order_acq_rel) - n;
  BOBBIN_CHECK(left >= 0, "bobbin: latch counted down below zero");
  if (left == 0) wake_all(lock_, waiters_);
}

bool latch::wait_until(deadline d) const {
  return wait_for_zero(count_, lock_, waiters_, d, wait_reason::latch_wait);
}

void wait_group::add(std::ptrdiff_t n) {
  std::ptrdiff_t now = count_.fetch_add(n, std::memory_order_acq_rel) + n;
  BOBBIN_CHECK(now >= 0, "bobbin: wait_group count went below zero (more done() than add())");
  if (now == 0) wake_all(lock_, waiters_);
}

bool wait_group::wait_until(deadline d) {
  return wait_for_zero(count_, lock_, waiters_, d, wait_reason::wait_group_wait);
}

}  // namespace bobbin
