#include "bobbin/sync/semaphore.h"

#include "runtime/util/check.h"

namespace bobbin {

bool semaphore::try_acquire() noexcept {
  lock_.lock();
  bool ok = count_ > 0;
  if (ok) count_--;
  lock_.unlock();
  return ok;
}

bool semaphore::acquire_until(deadline d, bool cancellable) {
  internal::waiter w;
  lock_.lock();
  if (count_ > 0) {
    count_--;
    lock_.unlock();
    return true;
  }
  if (d.expired()) {
    lock_.unlock();
    return false;
  }
  w.prepare();
  waiters_.push_back(&w);
  // Notified means release() handed us its permit directly.
  return internal::park(w, lock_, waiters_, d, wait_reason::semaphore_acquire, cancellable) == internal::wait_state::notified;
}

void semaphore::release(std::ptrdiff_t n) {
  BOBBIN_CHECK(n >= 0, "bobbin: semaphore::release() with a negative count");
  std::vector<internal::waiter*> woken;
  lock_.lock();
  while (n > 0) {
    internal::waiter* w = internal::pop_and_claim(waiters_);
    if (w == nullptr) break;
    woken.push_back(w);
    n--;
  }
  count_ += n;
  lock_.unlock();
  internal::notify_all(woken);
}

semaphore::~semaphore() {
  lock_.lock();
  if (!waiters_.empty()) {
    internal::report_destroyed_with_waiters("bobbin::semaphore", this, {&waiters_}, "they stay parked for good",
                                            /*strand_fibers=*/true);
  }
  lock_.unlock();
}

std::ptrdiff_t semaphore::available() const noexcept {
  lock_.lock();
  std::ptrdiff_t c = count_;
  lock_.unlock();
  return c;
}

}  // namespace bobbin
