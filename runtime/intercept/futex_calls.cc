// The interceptor for syscall(): a futex wait made through glibc's exported
// syscall() on a fiber parks the fiber instead of blocking its carrier.
//
// Who waits this way (GCC 12, glibc 2.36; ../shared/research/os-locks.md §3):
// libstdc++'s std::atomic<T>::wait, std::latch, std::barrier and
// std::counting_semaphore (header code inlined into the caller:
// FUTEX_WAIT_PRIVATE, or FUTEX_WAIT_BITSET_PRIVATE with an absolute
// steady-clock time), std::future / promise / packaged_task / async
// (libstdc++.so: shared FUTEX_WAIT, or FUTEX_WAIT_BITSET with an absolute
// time on the realtime or monotonic clock) and the guard of a function-local
// static (__cxa_guard_acquire: shared FUTEX_WAIT). glibc's own waits make
// the system call inline and never come here: pthread_once and pthread_join
// are interposed by thread_calls.cc; the rest (stdio, malloc, the resolver)
// block the carrier and the pinning report names them.
//
// What is taken over: SYS_futex with FUTEX_WAIT or FUTEX_WAIT_BITSET, private
// or shared, either clock, on a fiber, with interception on. It waits on the
// same futex key through runtime/park/futex_wait.h, so a FUTEX_WAKE from any
// thread ends it, and answers as the kernel would: 0 when woken (a spurious
// 0 is allowed, as futex(2) says), EAGAIN when the word did not hold the
// value, ETIMEDOUT when the time passed, EINVAL for a malformed time or an
// empty bitset. A parked fiber is not interrupted by signals, so EINTR never
// comes back. The fiber resumes on the carrier it parked on: its caller is
// compiled code (fiber_calls.h). A realtime deadline is turned into the time
// left when the wait starts: a jump of the wall clock during the wait does
// not move it. A pinned fiber's wait blocks its carrier (futex_wait does
// that, marked for the pinning report).
//
// Wakes: FUTEX_WAKE and FUTEX_WAKE_BITSET made here, by any thread, first
// wake fibers waiting in bobbin's futex table, where the kernel cannot wait
// for them (the epoll backend, kernels before 6.7: runtime/park/
// futex_table.h), then the kernel's waiters for the rest of the count, and
// answer with the sum; requeues and FUTEX_WAKE_OP wake every fiber in the
// table on the words they name (a spurious wake, which futex(2) allows;
// WAKE_OP's second word after the kernel has changed it) and go on to the
// kernel. A shared wait there also re-checks on a timer:
// another process may wake it.
//
// What is left to the kernel: every other system call and futex operation
// (PI locks among them), waits with an unaligned or null address (the
// kernel's EINVAL/EFAULT), and Abseil's waits. Abseil's Mutex, CondVar,
// Notification and its internal spin lock wait through syscall() on a
// per-thread semaphore: two fibers of one carrier parked there would share
// one waiter record (absl aborts). Calls made by Abseil pass straight
// through (called_by_abseil, fiber_calls.h). The runtime's own futex waits
// never come here (futex_syscall, park/futex_wait.h): a scheduler lock that
// parks deadlocks.
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdint>

#include "runtime/intercept/abs_time.h"
#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"
#include "runtime/park/futex_table.h"
#include "runtime/park/futex_wait.h"

namespace bobbin::internal::intercept {
namespace {

// Whether a futex wait made here is taken over: on a fiber (pinned ones too:
// futex_wait then blocks the carrier and names the wait in the pinning
// report), with interception on for the process and the fiber's runtime.
bool on_intercepting_fiber(carrier* c) noexcept {
  return c->current() != nullptr && c->rt()->options().intercept_blocking_calls && enabled_for_process();
}

// FUTEX_WAIT or FUTEX_WAIT_BITSET made by a fiber: parks it (see above).
long futex_wait_on_fiber(const uint32_t* word, int op, uint32_t val, const timespec* timeout, uint32_t bitset) {
  const int cmd = op & FUTEX_CMD_MASK;
  const futex_scope scope = (op & FUTEX_PRIVATE_FLAG) != 0 ? futex_scope::process_private : futex_scope::shared;
  deadline d = deadline::never();
  if (timeout != nullptr) {
    if (!valid_timespec(timeout)) return to_libc_result(-EINVAL);
    if (cmd == FUTEX_WAIT) {
      d = relative_deadline(*timeout);  // whichever clock is named: the time left is the same
    } else {
      (void)to_deadline((op & FUTEX_CLOCK_REALTIME) != 0 ? CLOCK_REALTIME : CLOCK_MONOTONIC, timeout, &d);
    }
  }
  if (bitset == 0) return to_libc_result(-EINVAL);
  const auto* w = reinterpret_cast<const std::atomic<uint32_t>*>(word);
  const futex_wakers wakers =
      scope == futex_scope::shared ? futex_wakers::may_bypass_bobbin : futex_wakers::seen_by_bobbin;
  switch (futex_wait(w, val, d, scope, wait_reason::futex_wait, futex_resume::parking_carrier, bitset, wakers)) {
    case futex_wait_result::woken: return 0;
    case futex_wait_result::value_changed: return to_libc_result(-EAGAIN);
    case futex_wait_result::timed_out: return to_libc_result(-ETIMEDOUT);
  }
  return 0;
}

// Any other futex operation, from any thread: the wakes reach the futex
// table first (see above). The kernel answers everything it can refuse
// (a bad address, a zero bitset, an unknown operation).
__attribute__((noinline)) long futex_call_reaching_table(long a1, long a2, long a3, long a4, long a5, long a6) {
  const int op = static_cast<int>(a2);
  const int cmd = op & FUTEX_CMD_MASK;
  const void* word = reinterpret_cast<const void*>(a1);
  const futex_scope scope = (op & FUTEX_PRIVATE_FLAG) != 0 ? futex_scope::process_private : futex_scope::shared;
  switch (cmd) {
    case FUTEX_WAKE:
    case FUTEX_WAKE_BITSET: {
      const uint32_t bitset = cmd == FUTEX_WAKE_BITSET ? static_cast<uint32_t>(a6) : FUTEX_BITSET_MATCH_ANY;
      // The kernel's count: at least one (it wakes one for 0, and for a
      // value past INT_MAX, which it reads as negative).
      const int n = std::max(static_cast<int>(a3), 1);
      if (bitset == 0 || (op & FUTEX_CLOCK_REALTIME) != 0) break;  // the kernel's EINVAL, ENOSYS
      const int woken = futex_table_wake(word, n, scope, bitset);
      if (woken == 0) break;
      if (woken >= n) return woken;
      const long r = libc::syscall(SYS_futex, a1, a2, static_cast<long>(n - woken), a4, a5, a6);
      return r < 0 ? woken : r + woken;
    }
    case FUTEX_WAKE_OP: {
      // uaddr2's waiters are woken after the kernel has changed it: woken
      // before, they would find the old value and wait again.
      futex_table_wake_all(word);
      const long r = libc::syscall(SYS_futex, a1, a2, a3, a4, a5, a6);
      futex_table_wake_all(reinterpret_cast<const void*>(a5));
      return r;
    }
    case FUTEX_REQUEUE:
    case FUTEX_CMP_REQUEUE:
      futex_table_wake_all(word);
      break;
    default:
      break;
  }
  return libc::syscall(SYS_futex, a1, a2, a3, a4, a5, a6);
}

}  // namespace
}  // namespace bobbin::internal::intercept

using namespace bobbin::internal::intercept;  // NOLINT: the interceptor below is its whole point
using bobbin::internal::carrier;

// The slow path, for a call on a carrier thread. Reads the futex arguments
// the operation defines: uaddr, op, val and the timeout for both waits, val3
// (the bitset) only for FUTEX_WAIT_BITSET.
__attribute__((noinline)) static long syscall_on_carrier(carrier* c, const void* caller, long number, long a1, long a2, long a3,
                                                        long a4, long a5, long a6) {
  const int op = static_cast<int>(a2);
  const int cmd = op & FUTEX_CMD_MASK;
  auto* word = reinterpret_cast<const uint32_t*>(a1);
  if (number != SYS_futex) return bobbin::internal::libc::syscall(number, a1, a2, a3, a4, a5, a6);
  if ((cmd != FUTEX_WAIT && cmd != FUTEX_WAIT_BITSET) || word == nullptr ||
      reinterpret_cast<uintptr_t>(word) % alignof(uint32_t) != 0 || !on_intercepting_fiber(c) ||
      called_by_abseil(caller)) {
    return futex_call_reaching_table(a1, a2, a3, a4, a5, a6);
  }
  const uint32_t bitset = cmd == FUTEX_WAIT_BITSET ? static_cast<uint32_t>(a6) : FUTEX_BITSET_MATCH_ANY;
  return futex_wait_on_fiber(word, op, static_cast<uint32_t>(a3), reinterpret_cast<const timespec*>(a4), bitset);
}

// syscall(2) passes up to six arguments and does not say how many, so a
// call passed on must carry six: like glibc's own syscall(), which loads all
// six argument registers, the sixth from the caller's stack whether or not
// the caller put one there (a slot of the caller's frame: always mapped).
// Only the futex path interprets them, each as its operation defines it.
// AddressSanitizer would flag that sixth read as a stack-buffer underflow
// when fewer were passed, hence no_sanitize: the read is glibc's own.
BOBBIN_INTERPOSE __attribute__((no_sanitize("address"))) long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  const long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long), a4 = va_arg(ap, long),
             a5 = va_arg(ap, long), a6 = va_arg(ap, long);
  va_end(ap);
  carrier* c = bobbin::internal::tls_carrier;
  if (__builtin_expect(c == nullptr, 1)) {
    if (number == SYS_futex) return futex_call_reaching_table(a1, a2, a3, a4, a5, a6);
    return bobbin::internal::libc::syscall(number, a1, a2, a3, a4, a5, a6);
  }
  return syscall_on_carrier(c, __builtin_return_address(0), number, a1, a2, a3, a4, a5, a6);
}
