// Not part of the bobbin API.
//
// What every interceptor shares: deciding whether the calling code is a
// fiber that may park, and parking it on one io_uring operation so that it
// resumes on the same carrier (OS thread) it parked on.
//
// Why the same carrier. The caller of an intercepted function is compiled
// third-party code. glibc declares __errno_location() const, so that code
// may compute &errno before recv() and read through it after; OpenSSL's
// error queue and any library's thread_local behave the same way. If the
// fiber resumed on another carrier, those addresses would name the other
// thread's variables. A fiber parked inside an intercepted call therefore
// never migrates (carrier::push_bound); it may migrate at any bobbin park,
// where bobbin's own code re-reads every thread-local (runtime/DESIGN.md).
#ifndef BOBBIN_RUNTIME_INTERCEPT_FIBER_CALLS_H_
#define BOBBIN_RUNTIME_INTERCEPT_FIBER_CALLS_H_

#include <sys/types.h>

#include <atomic>
#include <cerrno>

#include "bobbin/deadline.h"
#include "bobbin/wait_reason.h"
#include "runtime/io/io_wait.h"
#include "runtime/sched/carrier.h"

// Interceptors are exported from libbobbin.so (which is built with hidden
// visibility) and must keep C linkage and glibc's exact names.
#define BOBBIN_INTERPOSE extern "C" __attribute__((visibility("default")))

namespace bobbin::internal::intercept {

// False when BOBBIN_INTERCEPT=0 (read once, at the first intercepted call).
// An atomic rather than a function-local static: its guard would be taken
// inside sanitizer interceptors, where TSan does not see the guard's
// synchronization. Threads that race to read the environment compute the
// same answer.
inline std::atomic<int> intercept_state{0};  // 0 unknown, 1 on, 2 off
int read_intercept_state() noexcept;          // stores and returns it
inline bool enabled_for_process() noexcept {
  int s = intercept_state.load(std::memory_order_relaxed);
  if (__builtin_expect(s == 0, 0)) s = read_intercept_state();
  return s == 1;
}

// The calling fiber's carrier if an intercepted call should park it: the
// caller is a fiber, not in a pinned region, and interception is on for the
// process and the fiber's runtime. Null means: make the plain libc call.
// Off a carrier thread (the common case for a plain program) this is one
// thread-local load and a branch: tls_carrier is read directly here, at the
// interceptor's entry, where no switch can have happened yet.
inline carrier* parking_carrier() noexcept {
  if (__builtin_expect(tls_carrier == nullptr, 1)) return nullptr;
  carrier* c = current_fiber_carrier();
  if (c == nullptr) return nullptr;
  if (!c->rt()->options().intercept_blocking_calls || !enabled_for_process()) return nullptr;
  return c;
}

// Parks the calling fiber on one operation (`prep` fills the SQE) until it
// completes or `d` passes; resumes on `c`. Returns the result or -errno;
// -ETIMEDOUT when `d` passed.
template <class Prep>
int park_on_ring(carrier* c, Prep&& prep, wait_reason reason, deadline d = deadline::never(),
                 bool run_first = false) {
  bump(c->intercepted_parks);
  return await_sqe(c, prep, reason, d, /*stay_on_carrier=*/true, run_first);
}

// Parks the calling fiber on `c` until a timeout (`ts` and IORING_TIMEOUT_*
// `flags`, as io_uring_prep_timeout takes them) fires. False if the fiber's
// stop was requested (it returns at once). A sleep (libc_sleep) resumes at
// the head of the carrier's bound fibers, as bobbin's own sleeps run next
// (carrier::ready_from_timer); a polling wait (join) queues behind them.
inline bool park_for_timeout(carrier* c, __kernel_timespec ts, unsigned flags, wait_reason reason) {
  return park_on_ring(
             c, [&](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, &ts, 0, flags); }, reason, deadline::never(),
             /*run_first=*/reason == wait_reason::libc_sleep) != -ECANCELED;
}

// True if `fd` has O_NONBLOCK set (or fcntl fails: let the plain call
// report the error).
bool nonblocking(int fd) noexcept;

// The socket's SO_RCVTIMEO or SO_SNDTIMEO as a deadline from now; never when
// unset or when `fd` is not a socket. Costs a getsockopt only once some code
// in the process has set one of them (setsockopt is intercepted to know).
deadline socket_timeout(int fd, int option) noexcept;

// Called by the setsockopt interceptor: remembers that socket timeouts are
// in use somewhere in the process.
void note_socket_option(int level, int name) noexcept;

// Whether `return_address` (an interceptor's caller) lies in one of the
// loaded libabsl_*.so libraries. Abseil's synchronization keeps a waiter
// record per thread, not per fiber: its futex waits must block the carrier
// as they would a thread; parking there would let a second fiber of the
// same carrier into absl::Mutex with the first one's waiter record still in
// use (absl aborts: "illegal recursion into Mutex code"). Costs a scan of a
// few address ranges, only on the interceptors' slow paths.
bool called_by_abseil(const void* return_address) noexcept;

// Whether the calling thread's stack runs through libabsl_synchronization:
// absl::Mutex's lock backoff sleeps with absl::SleepFor, which must not
// park for the same reason, while a user's own absl::SleepFor may. Unwinds
// the stack (a few microseconds): only for sleeps called by Abseil.
bool inside_abseil_synchronization() noexcept;

// Sets errno from a -errno result and returns -1, or returns the result.
inline long to_libc_result(long res) noexcept {
  if (res < 0) {
    errno = static_cast<int>(-res);
    return -1;
  }
  return res;
}

}  // namespace bobbin::internal::intercept

#endif  // BOBBIN_RUNTIME_INTERCEPT_FIBER_CALLS_H_
