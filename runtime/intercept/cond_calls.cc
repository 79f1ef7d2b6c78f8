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
// A wait releases and retakes the mutex through the interposed
// pthread_mutex_unlock and pthread_mutex_lock (mutex_calls.cc). Timed waits
// on a fiber end early, as from a timeout, when the fiber is cancelled
// (fiber::request_stop); an untimed wait does not (the caller's predicate
// loop would wait again at once, spinning on the sticky request).
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <pthread.h>
#include <time.h>

#include <cerrno>

#include "runtime/intercept/abs_time.h"
#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"
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

// Whether `cv` is one of bobbin's (else glibc's: see above).
inline bool ours(const pthread_cond_t* cv) noexcept { return enabled_for_process() && !os_cond::shared(cv); }

int timed_wait(pthread_cond_t* cv, pthread_mutex_t* m, clockid_t clock, const timespec* abstime) noexcept {
  deadline d;
  // Checked before the mutex is touched, as glibc does.
  if (!to_deadline(clock, abstime, &d)) return EINVAL;
  return os_cond::wait(cv, m, d, /*stoppable=*/true);
}

}  // namespace
}  // namespace bobbin::internal::intercept

using namespace bobbin::internal::intercept;  // NOLINT: the interceptors below are its whole point
namespace os_cond = bobbin::internal::os_cond;

BOBBIN_INTERPOSE int pthread_cond_init(pthread_cond_t* cv, const pthread_condattr_t* attr) {
  if (!enabled_for_process()) return real::pthread_cond_init(cv, attr);
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
  return os_cond::wait(cv, m, bobbin::deadline::never(), /*stoppable=*/false);
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
