// Interceptors for pthread reader-writer locks: pthread_rwlock_init,
// destroy, rdlock, tryrdlock, timedrdlock, clockrdlock, wrlock, trywrlock,
// timedwrlock, clockwrlock and unlock, which std::shared_mutex,
// std::shared_timed_mutex and OpenSSL 3 call.
//
// Like the condition variables' (cond_calls.cc), these take every caller,
// threads too: the lock is bobbin's own (runtime/sync/os_rwlock.h), so
// fibers and threads hold and wait for the same one. Only a process-shared
// lock is glibc's, whole, and so is every lock with BOBBIN_INTERCEPT=0 or
// when ThreadSanitizer's own interceptors come before bobbin's (bobbin a
// shared library): both fixed for the life of the process, so one lock is
// never driven by both algorithms. (glibc also exports compat-only
// __pthread_rwlock_* names, GLIBC_2.2.5, which nothing links against any
// more; they are not interposed: a binary that still called them would run
// glibc's algorithm on bobbin's locks.)
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
#include "runtime/sync/os_rwlock.h"

namespace bobbin::internal::intercept {
namespace real {
BOBBIN_NEXT_SYMBOL(pthread_rwlock_init)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_destroy)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_rdlock)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_tryrdlock)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_timedrdlock)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_clockrdlock)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_wrlock)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_trywrlock)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_timedwrlock)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_clockwrlock)
BOBBIN_NEXT_SYMBOL(pthread_rwlock_unlock)
}  // namespace real

namespace {

// Whether ThreadSanitizer's pthread_rwlock_* interceptors run before these
// (see cond_calls.cc, which decides the same for condition variables).
bool tsan_interceptors_first() noexcept {
#if BOBBIN_TSAN
  static std::atomic<int> cache{0};
  return libc::comes_before_bobbin("pthread_rwlock_unlock", cache);
#else
  return false;
#endif
}

// Whether `l` is one of bobbin's (else glibc's: see above).
inline bool ours(const pthread_rwlock_t* l) noexcept {
  return enabled_for_process() && !os_rwlock::shared(l) && !tsan_interceptors_first();
}

// glibc checks the clock and the time before anything else, even when the
// lock is free, and only when there is a time: a null one waits for ever.
// (glibc's header declares the time non-null, and the compiler would drop
// the check on the strength of it: the pointer is laundered first.)
inline bool timed_deadline(clockid_t clock, const timespec* abstime, deadline* d) noexcept {
  asm("" : "+r"(abstime));
  if (abstime == nullptr) {
    *d = deadline::never();
    return true;
  }
  return (clock == CLOCK_MONOTONIC || clock == CLOCK_REALTIME) && to_deadline(clock, abstime, d);
}

}  // namespace
}  // namespace bobbin::internal::intercept

using namespace bobbin::internal::intercept;  // NOLINT: the interceptors below are its whole point
namespace os_rwlock = bobbin::internal::os_rwlock;

BOBBIN_INTERPOSE int pthread_rwlock_init(pthread_rwlock_t* l, const pthread_rwlockattr_t* attr) {
  if (!enabled_for_process() || tsan_interceptors_first()) return real::pthread_rwlock_init(l, attr);
  int pshared = PTHREAD_PROCESS_PRIVATE;
  int kind = PTHREAD_RWLOCK_DEFAULT_NP;
  if (attr != nullptr) {
    pthread_rwlockattr_getpshared(attr, &pshared);
    pthread_rwlockattr_getkind_np(attr, &kind);
  }
  if (pshared != PTHREAD_PROCESS_PRIVATE) return real::pthread_rwlock_init(l, attr);
  os_rwlock::init(l, kind);
  return 0;
}

BOBBIN_INTERPOSE int pthread_rwlock_destroy(pthread_rwlock_t* l) {
  if (!ours(l)) return real::pthread_rwlock_destroy(l);
  return os_rwlock::destroy(l);
}

BOBBIN_INTERPOSE int pthread_rwlock_rdlock(pthread_rwlock_t* l) {
  if (!ours(l)) return real::pthread_rwlock_rdlock(l);
  return os_rwlock::read_lock(l, os_rwlock::caller_id(), bobbin::deadline::never());
}

BOBBIN_INTERPOSE int pthread_rwlock_tryrdlock(pthread_rwlock_t* l) {
  if (!ours(l)) return real::pthread_rwlock_tryrdlock(l);
  return os_rwlock::try_read_lock(l, os_rwlock::caller_id());
}

BOBBIN_INTERPOSE int pthread_rwlock_timedrdlock(pthread_rwlock_t* l, const timespec* abstime) {
  if (!ours(l)) return real::pthread_rwlock_timedrdlock(l, abstime);
  bobbin::deadline d;
  if (!timed_deadline(CLOCK_REALTIME, abstime, &d)) return EINVAL;
  return os_rwlock::read_lock(l, os_rwlock::caller_id(), d);
}

BOBBIN_INTERPOSE int pthread_rwlock_clockrdlock(pthread_rwlock_t* l, clockid_t clock, const timespec* abstime) {
  if (!ours(l)) return real::pthread_rwlock_clockrdlock(l, clock, abstime);
  bobbin::deadline d;
  if (!timed_deadline(clock, abstime, &d)) return EINVAL;
  return os_rwlock::read_lock(l, os_rwlock::caller_id(), d);
}

BOBBIN_INTERPOSE int pthread_rwlock_wrlock(pthread_rwlock_t* l) {
  if (!ours(l)) return real::pthread_rwlock_wrlock(l);
  return os_rwlock::write_lock(l, os_rwlock::caller_id(), bobbin::deadline::never());
}

BOBBIN_INTERPOSE int pthread_rwlock_trywrlock(pthread_rwlock_t* l) {
  if (!ours(l)) return real::pthread_rwlock_trywrlock(l);
  return os_rwlock::try_write_lock(l, os_rwlock::caller_id());
}

BOBBIN_INTERPOSE int pthread_rwlock_timedwrlock(pthread_rwlock_t* l, const timespec* abstime) {
  if (!ours(l)) return real::pthread_rwlock_timedwrlock(l, abstime);
  bobbin::deadline d;
  if (!timed_deadline(CLOCK_REALTIME, abstime, &d)) return EINVAL;
  return os_rwlock::write_lock(l, os_rwlock::caller_id(), d);
}

BOBBIN_INTERPOSE int pthread_rwlock_clockwrlock(pthread_rwlock_t* l, clockid_t clock, const timespec* abstime) {
  if (!ours(l)) return real::pthread_rwlock_clockwrlock(l, clock, abstime);
  bobbin::deadline d;
  if (!timed_deadline(clock, abstime, &d)) return EINVAL;
  return os_rwlock::write_lock(l, os_rwlock::caller_id(), d);
}

BOBBIN_INTERPOSE int pthread_rwlock_unlock(pthread_rwlock_t* l) {
  if (!ours(l)) return real::pthread_rwlock_unlock(l);
  return os_rwlock::unlock(l, os_rwlock::caller_id());
}

