// Interceptors for pthread condition variables: pthread_cond_init, destroy,
// wait, timedwait, clockwait, signal and broadcast, which
// std::condition_variable (and condition_variable_any, through its internal
// std::mutex) and most C libraries' queues and pools call.
//
// Unlike the other interceptors, these take every caller, threads too: the
// condition variable is bobbin's own (runtime/sync/os_cond.h), so a thread
// and a fiber can wait on, and signal, the same one. Only a process-shared
// condition variable is glibc's, whole (another process may use it with
// glibc's algorithm), and so is everything with BOBBIN_INTERCEPT=0, which is
// fixed for the life of the process.
//
// A wait releases and retakes the mutex as the pthread_mutex_unlock and
// pthread_mutex_lock interposers do (mutex_calls.h). Timed waits
// on a fiber end early, as from a timeout, when the fiber is cancelled
// (fiber::request_stop); an untimed wait does not (the caller's predicate
// loop would wait again at once, spinning on the sticky request).
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <pthread.h>
#include <time.h>

#include <atomic>

#include <cerrno>

#include "runtime/fiber/context.h"  // BOBBIN_TSAN
#include "runtime/intercept/abs_time.h"
#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"
#include "runtime/intercept/mutex_calls.h"
#include "runtime/sync/os_cond.h"

namespace bobbin::internal::intercept {
namespace real {
BOBBIN_NEXT_SYMBOL(pthread_cond_init)
BOBBIN_NEXT_SYMBOL(pthread_cond_destroy)
BOBBIN_NEXT_SYMBOL(pthread_cond_wait)
BOBBIN_NEXT_SYMBOL(pthread_cond_timedwait)
BOBBIN_NEXT_SYMBOL(pthread_cond_clockwait)
BOBBIN_NEXT_SYMBOL(pthread_cond_signal)
BOBBIN_NEXT_SYMBOL(pthread_cond_broadcast)
}  // namespace real

namespace {

constexpr os_cond::mutex_calls kMutexCalls{&mutex_unlock, &mutex_lock};

// Whether ThreadSanitizer's own pthread_cond_* interceptors run before
// these: bobbin a shared library, libtsan first in the search order (not
// when bobbin is linked into the executable, which comes first). Behind
// them bobbin's code runs as TSan's "blocking call", in which TSan ignores
// its atomics but not the plain accesses they order, and it accounts for
// the mutex itself; condition variables are then left to glibc, as before
// bobbin took them over (fibers waiting in one block their carrier). The
// sanitizer build's unit tests link bobbin into the executable and check
// bobbin's own.
bool tsan_interceptors_first() noexcept {
#if BOBBIN_TSAN
  static std::atomic<int> cache{0};
  return libc::comes_before_bobbin("pthread_cond_signal", cache);
#else
  return false;
#endif
}

// Whether `cv` is one of bobbin's (else glibc's: see above).
inline bool ours(const pthread_cond_t* cv) noexcept {
  return enabled_for_process() && !os_cond::shared(cv) && !tsan_interceptors_first();
}

int timed_wait(pthread_cond_t* cv, pthread_mutex_t* m, clockid_t clock, const timespec* abstime) noexcept {
  deadline d;
  // Checked before the mutex is touched, as glibc does.
  if (!to_deadline(clock, abstime, &d)) return EINVAL;
  return os_cond::wait(cv, m, d, /*stoppable=*/true, kMutexCalls);
}

}  // namespace
}  // namespace bobbin::internal::intercept

using namespace bobbin::internal::intercept;  // NOLINT: the interceptors below are its whole point
namespace os_cond = bobbin::internal::os_cond;

BOBBIN_INTERPOSE int pthread_cond_init(pthread_cond_t* cv, const pthread_condattr_t* attr) {
  if (!enabled_for_process() || tsan_interceptors_first()) return real::pthread_cond_init(cv, attr);
  int pshared = PTHREAD_PROCESS_PRIVATE;
  clockid_t clock = CLOCK_REALTIME;
  if (attr != nullptr) {
    pthread_condattr_getpshared(attr, &pshared);
    pthread_condattr_getclock(attr, &clock);
  }
  if (pshared != PTHREAD_PROCESS_PRIVATE) return real::pthread_cond_init(cv, attr);
  os_cond::init(cv, clock);
  return 0;
}

BOBBIN_INTERPOSE int pthread_cond_destroy(pthread_cond_t* cv) {
  if (!ours(cv)) return real::pthread_cond_destroy(cv);
  return os_cond::destroy(cv);
}

BOBBIN_INTERPOSE int pthread_cond_wait(pthread_cond_t* cv, pthread_mutex_t* m) {
  if (!ours(cv)) return real::pthread_cond_wait(cv, m);
  return os_cond::wait(cv, m, bobbin::deadline::never(), /*stoppable=*/false, kMutexCalls);
}

BOBBIN_INTERPOSE int pthread_cond_timedwait(pthread_cond_t* cv, pthread_mutex_t* m, const timespec* abstime) {
  if (!ours(cv)) return real::pthread_cond_timedwait(cv, m, abstime);
  return timed_wait(cv, m, os_cond::clock_of(cv), abstime);
}

BOBBIN_INTERPOSE int pthread_cond_clockwait(pthread_cond_t* cv, pthread_mutex_t* m, clockid_t clock,
                                            const timespec* abstime) {
  if (!ours(cv)) return real::pthread_cond_clockwait(cv, m, clock, abstime);
  if (clock != CLOCK_MONOTONIC && clock != CLOCK_REALTIME) return EINVAL;  // as glibc
  return timed_wait(cv, m, clock, abstime);
}

BOBBIN_INTERPOSE int pthread_cond_signal(pthread_cond_t* cv) {
  if (!ours(cv)) return real::pthread_cond_signal(cv);
  return os_cond::signal(cv);
}

BOBBIN_INTERPOSE int pthread_cond_broadcast(pthread_cond_t* cv) {
  if (!ours(cv)) return real::pthread_cond_broadcast(cv);
  return os_cond::broadcast(cv);
}
