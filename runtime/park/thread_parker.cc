#include "runtime/park/thread_parker.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "runtime/park/futex_wait.h"
#include "runtime/util/deadline_time.h"

namespace bobbin::internal {

thread_parker* thread_parker::current() noexcept {
  static thread_local thread_parker parker;
  return &parker;
}

void thread_parker::park(deadline d) noexcept {
  if (permit_.exchange(0, std::memory_order_acquire) == 1) return;
  timespec ts;
  const timespec* tsp = nullptr;
  if (!d.is_never()) {
    ts = monotonic_timespec<timespec>(d);
    tsp = &ts;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline.
  // errno is the caller's: the condition-variable and lock calls that end
  // here (glibc's never set it) must leave it alone.
  const int saved_errno = errno;
  futex_syscall(&permit_, FUTEX_WAIT_BITSET_PRIVATE, 0u, tsp, FUTEX_BITSET_MATCH_ANY);
  errno = saved_errno;
  // A read-modify-write, not a store: an unpark that lands after the wait
  // returned is then either consumed here, and the caller's re-check that
  // follows sees what it published, or left for the next park.
  permit_.exchange(0, std::memory_order_acquire);
}

void thread_parker::unpark() noexcept {
  if (permit_.exchange(1, std::memory_order_release) == 0) {
    futex_syscall(&permit_, FUTEX_WAKE_PRIVATE, 1, nullptr, 0);
  }
}

}  // namespace bobbin::internal
