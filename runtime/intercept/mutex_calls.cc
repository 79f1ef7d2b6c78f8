// Interceptors for pthread mutexes: pthread_mutex_lock, trylock, timedlock,
// clocklock and unlock, which std::mutex, std::timed_mutex and
// std::recursive_mutex (and most C libraries' locks) call.
//
// On a fiber that may park, a mutex of the kinds runtime/sync/os_mutex.h
// takes is locked and unlocked there: the fiber owns it, and waiting for it
// parks the fiber. Everything else -- a plain thread, a carrier between
// fibers, BOBBIN_INTERCEPT=0, a process-shared, robust,
// priority-inheriting or -protecting mutex -- is glibc's own call. Off a
// carrier thread that is one thread-local load and a branch before it. A
// pinned fiber still owns the mutexes it locks; it waits for them as a
// thread would.
//
// glibc's unlock wakes the kernel's waiters only. Where fibers wait in
// bobbin's futex table instead (the epoll backend, kernels before 6.7:
// runtime/park/futex_table.h), every unlock made through glibc here is
// followed by a wake of one of them when the word says a waiter may exist
// (unlock_in_glibc): a load and a branch while the table has never been
// used, two more afterwards.
//
// Condition variables are bobbin's own (cond_calls.cc): their waits unlock
// and relock the mutex through these interposers, so a fiber keeps owning
// what it locked.
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <pthread.h>
#include <time.h>

#include <cerrno>
#include <chrono>

#include "runtime/intercept/abs_time.h"
#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"
#include "runtime/intercept/mutex_calls.h"
#include "runtime/park/futex_table.h"
#include "runtime/sync/os_mutex.h"

namespace bobbin::internal::intercept {
namespace real {
BOBBIN_NEXT_SYMBOL(pthread_mutex_lock)
BOBBIN_NEXT_SYMBOL(pthread_mutex_trylock)
BOBBIN_NEXT_SYMBOL(pthread_mutex_timedlock)
BOBBIN_NEXT_SYMBOL(pthread_mutex_clocklock)
BOBBIN_NEXT_SYMBOL(pthread_mutex_unlock)
}  // namespace real

namespace {

// The fiber that locks or unlocks `m` through os_mutex, or null for
// glibc's call. `c` is the calling thread's carrier, read at the
// interceptor's entry. A pinned fiber is one too: it still owns what it
// locks (a recursive mutex it holds must not look held by its carrier's
// thread when it re-enters inside a pinned_scope); its waits block the
// carrier instead of parking (futex_wait.h), and the pinning report names
// them.
inline fiber_control* owning_fiber(carrier* c, const pthread_mutex_t* m) noexcept {
  fiber_control* f = c->current();
  if (f == nullptr || !os_mutex::handles(m) || !c->rt()->options().intercept_blocking_calls ||
      !enabled_for_process()) {
    return nullptr;
  }
  return f;
}

// The carrier a wait may park on: null for a pinned fiber.
inline carrier* parking(carrier* c, fiber_control* f) noexcept {
  return f->pin_depth.load(std::memory_order_relaxed) == 0 ? c : nullptr;
}

int timed_lock(carrier* c, pthread_mutex_t* m, fiber_control* f, clockid_t clock, const timespec* abstime) noexcept {
  // glibc checks the time only when it has to wait: a free mutex is taken
  // whatever abstime holds.
  if (os_mutex::trylock(m, f) == 0) return 0;
  deadline d;
  if (!to_deadline(clock, abstime, &d)) {
    // An error-checking mutex the caller holds is EDEADLK first, as in glibc.
    return os_mutex::held_by(m, f) ? EDEADLK : EINVAL;
  }
  return os_mutex::lock(m, f, parking(c, f), d);
}

}  // namespace
}  // namespace bobbin::internal::intercept

using bobbin::internal::fiber_control;
using namespace bobbin::internal::intercept;  // NOLINT: the interceptors below are its whole point
namespace os_mutex = bobbin::internal::os_mutex;

using bobbin::internal::carrier;
using bobbin::internal::tls_carrier;

__attribute__((noinline)) static int mutex_lock_on_carrier(carrier* c, pthread_mutex_t* m) {
  fiber_control* f = owning_fiber(c, m);
  if (f == nullptr) return real::pthread_mutex_lock(m);
  return os_mutex::lock(m, f, parking(c, f), bobbin::deadline::never());
}

BOBBIN_INTERPOSE int pthread_mutex_lock(pthread_mutex_t* m) {
  carrier* c = tls_carrier;
  if (__builtin_expect(c == nullptr, 1)) return real::pthread_mutex_lock(m);
  return mutex_lock_on_carrier(c, m);
}

__attribute__((noinline)) static int mutex_trylock_on_carrier(carrier* c, pthread_mutex_t* m) {
  fiber_control* f = owning_fiber(c, m);
  if (f == nullptr) return real::pthread_mutex_trylock(m);
  return os_mutex::trylock(m, f);
}

BOBBIN_INTERPOSE int pthread_mutex_trylock(pthread_mutex_t* m) {
  carrier* c = tls_carrier;
  if (__builtin_expect(c == nullptr, 1)) return real::pthread_mutex_trylock(m);
  return mutex_trylock_on_carrier(c, m);
}

__attribute__((noinline)) static int mutex_timedlock_on_carrier(carrier* c, pthread_mutex_t* m,
                                                               const timespec* abstime) {
  fiber_control* f = owning_fiber(c, m);
  if (f == nullptr) return real::pthread_mutex_timedlock(m, abstime);
  return timed_lock(c, m, f, CLOCK_REALTIME, abstime);
}

BOBBIN_INTERPOSE int pthread_mutex_timedlock(pthread_mutex_t* m, const timespec* abstime) {
  carrier* c = tls_carrier;
  if (__builtin_expect(c == nullptr, 1)) return real::pthread_mutex_timedlock(m, abstime);
  return mutex_timedlock_on_carrier(c, m, abstime);
}

__attribute__((noinline)) static int mutex_clocklock_on_carrier(carrier* c, pthread_mutex_t* m, clockid_t clock,
                                                               const timespec* abstime) {
  fiber_control* f = owning_fiber(c, m);
  if (f == nullptr || (clock != CLOCK_MONOTONIC && clock != CLOCK_REALTIME)) {
    return real::pthread_mutex_clocklock(m, clock, abstime);  // glibc answers EINVAL for other clocks
  }
  return timed_lock(c, m, f, clock, abstime);
}

BOBBIN_INTERPOSE int pthread_mutex_clocklock(pthread_mutex_t* m, clockid_t clock, const timespec* abstime) {
  carrier* c = tls_carrier;
  if (__builtin_expect(c == nullptr, 1)) return real::pthread_mutex_clocklock(m, clock, abstime);
  return mutex_clocklock_on_carrier(c, m, clock, abstime);
}

// glibc's unlock, then the futex table's wake (see above), for a word
// marked as waited for (2): a fiber marks it so before it parks in the
// table, as glibc's own waiters do before futex(2). One that marks it
// between the load here and glibc's release is not woken here; its re-check
// finds the lock free (futex_table.h). The table's load after glibc's xchg
// on the word needs no fence: that xchg is a full barrier on x86-64.
__attribute__((noinline)) static int unlock_in_glibc_waking_table(pthread_mutex_t* m) {
  const int r = real::pthread_mutex_unlock(m);
  if (r == 0) {
    bobbin::internal::futex_table_wake_after_locked_rmw(os_mutex::lock_word(m), 1,
                                                        bobbin::internal::futex_scope::process_private, ~0u);
  }
  return r;
}

static inline int unlock_in_glibc(pthread_mutex_t* m) {
  if (__builtin_expect(!bobbin::internal::futex_table_used(), 1) ||
      os_mutex::lock_word(m)->load(std::memory_order_relaxed) <= 1) {
    return real::pthread_mutex_unlock(m);
  }
  return unlock_in_glibc_waking_table(m);
}

__attribute__((noinline)) static int mutex_unlock_on_carrier(carrier* c, pthread_mutex_t* m) {
  fiber_control* f = owning_fiber(c, m);
  if (f == nullptr) return unlock_in_glibc(m);
  return os_mutex::unlock(m, f);
}

BOBBIN_INTERPOSE int pthread_mutex_unlock(pthread_mutex_t* m) {
  carrier* c = tls_carrier;
  if (__builtin_expect(c == nullptr, 1)) return unlock_in_glibc(m);
  return mutex_unlock_on_carrier(c, m);
}

// The same two calls for bobbin's own condition variables (mutex_calls.h).
int bobbin::internal::intercept::mutex_lock(pthread_mutex_t* m) noexcept {
  carrier* c = tls_carrier;
  if (__builtin_expect(c == nullptr, 1)) return real::pthread_mutex_lock(m);
  return mutex_lock_on_carrier(c, m);
}

int bobbin::internal::intercept::mutex_unlock(pthread_mutex_t* m) noexcept {
  carrier* c = tls_carrier;
  if (__builtin_expect(c == nullptr, 1)) return unlock_in_glibc(m);
  return mutex_unlock_on_carrier(c, m);
}
