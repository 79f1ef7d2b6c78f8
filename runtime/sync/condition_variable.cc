#include "bobbin/sync/condition_variable.h"

#include <vector>

namespace bobbin {

std::cv_status condition_variable::wait_impl(std::unique_lock<mutex>& lock, deadline d, bool cancellable) {
  internal::waiter w;
  w.prepare();
  lock_.lock();
  waiters_.push_back(&w);
  // Queued before the mutex is released, so a notify issued by whoever takes
  // the mutex next cannot be missed. Lock order: cv, then mutex internals.
  lock.unlock();
  internal::wait_state s = internal::park(w, lock_, waiters_, d, wait_reason::condition_wait, cancellable);
  lock.lock();
  return s == internal::wait_state::timed_out || s == internal::wait_state::canceled ? std::cv_status::timeout
                                                                                     : std::cv_status::no_timeout;
}

condition_variable::~condition_variable() {
  std::vector<internal::waiter*> woken;
  lock_.lock();
  if (!waiters_.empty()) {
    internal::report_destroyed_with_waiters("bobbin::condition_variable", this, {&waiters_},
                                            "they wake as from a spurious wake-up", /*strand_fibers=*/false);
    internal::claim_all(waiters_, 0, woken);
  }
  lock_.unlock();
  internal::notify_all(woken);
}

void condition_variable::notify_one() noexcept {
  lock_.lock();
  internal::waiter* w = internal::pop_and_claim(waiters_);
  if (w == nullptr) {
    lock_.unlock();
    return;
  }
  lock_.unlock();
  internal::notify(w);
}

void condition_variable::notify_all() noexcept {
  std::vector<internal::waiter*> woken;
  lock_.lock();
  internal::claim_all(waiters_, 0, woken);
  lock_.unlock();
  internal::notify_all(woken);
}

}  // namespace bobbin
