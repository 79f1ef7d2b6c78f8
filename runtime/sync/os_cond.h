// Not part of the bobbin API.
//
// pthread condition variables of bobbin's own, in glibc's 48 bytes, for
// every caller: fibers park in them, plain threads sleep in them, and both
// wait on and signal the same one. Called by the interposers in
// runtime/intercept/cond_calls.cc; the protocol is written atop os_cond.cc.
//
// Why not drive glibc's: its pthread_cond_wait unlocks and relocks the mutex
// through internal calls bobbin cannot see (so a fiber would lose ownership
// of a recursive or error-checking mutex), and in 2.36 its signal and
// broadcast may themselves block on earlier waiters; 2.41 changed the
// algorithm again. This one is independent of the glibc version, except
// for one word: a process-shared condition variable (which another process
// may use with glibc's algorithm) is left to glibc entirely, recognised by
// the bit glibc's pthread_cond_init sets for it (shared() below).
#ifndef BOBBIN_RUNTIME_SYNC_OS_COND_H_
#define BOBBIN_RUNTIME_SYNC_OS_COND_H_

#include <pthread.h>
#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"
#include "bobbin/internal/spin_lock.h"

namespace bobbin::internal {
class carrier;
}

namespace bobbin::internal::os_cond {

// glibc's __wrefs word: bit 0 set by pthread_cond_init for a process-shared
// condition variable, bit 1 for one on CLOCK_MONOTONIC. bobbin keeps both
// meanings in the same word of its own layout, so the all-zero static
// initializer is a private one on CLOCK_REALTIME, as in glibc.
inline constexpr size_t kFlagsOffset = offsetof(pthread_cond_t, __data.__wrefs);
inline constexpr uint32_t kSharedFlag = 1;
inline constexpr uint32_t kMonotonicFlag = 2;

// The layout inside pthread_cond_t. All zero is an empty, unlocked one.
struct state {
  waiter_list waiters;  // oldest first; guarded by lock
  spin_lock lock;
};
// The state starts after the first word, which bobbin never writes:
// ThreadSanitizer's interceptors of pthread_cond_signal, broadcast and
// wait (first in the search order when bobbin is a shared library) read it
// without any lock, and a write of ours there would be reported as a race.
inline constexpr size_t kStateOffset = sizeof(void*);
static_assert(kStateOffset + sizeof(state) <= kFlagsOffset,
              "bobbin's condition variable must not overlap glibc's flags word");
static_assert(kFlagsOffset + sizeof(uint32_t) <= sizeof(pthread_cond_t));

inline state* state_of(pthread_cond_t* cv) noexcept {
  return reinterpret_cast<state*>(reinterpret_cast<char*>(cv) + kStateOffset);
}
inline uint32_t flags(const pthread_cond_t* cv) noexcept {
  return __atomic_load_n(reinterpret_cast<const uint32_t*>(reinterpret_cast<const char*>(cv) + kFlagsOffset),
                         __ATOMIC_RELAXED);
}
// A process-shared condition variable: glibc's, whole.
inline bool shared(const pthread_cond_t* cv) noexcept { return (flags(cv) & kSharedFlag) != 0; }
inline clockid_t clock_of(const pthread_cond_t* cv) noexcept {
  return (flags(cv) & kMonotonicFlag) != 0 ? CLOCK_MONOTONIC : CLOCK_REALTIME;
}

// pthread_cond_init for a private condition variable on `clock`.
void init(pthread_cond_t* cv, clockid_t clock) noexcept;

// pthread_cond_destroy: 0, or EBUSY while a waiter has not been woken
// (waiters that are leaving, woken or timed out, are waited for: after 0
// nobody touches the memory).
int destroy(pthread_cond_t* cv) noexcept;

// How a wait releases and retakes its mutex: the interposers' own
// pthread_mutex_unlock and pthread_mutex_lock (runtime/intercept/
// mutex_calls.cc), called directly rather than through the dynamic linker,
// so that a fiber's lock is released and taken as its own and a sanitizer's
// interceptor, which annotated the condition variable call already, does
// not see the mutex twice.
struct mutex_calls {
  int (*unlock)(pthread_mutex_t*) noexcept;
  int (*lock)(pthread_mutex_t*) noexcept;
};

// pthread_cond_wait / timedwait / clockwait: releases `m`, waits until
// signalled, until `d` passes or, when `stoppable`, until the calling fiber
// is cancelled, and takes `m` again before it returns. 0, ETIMEDOUT (the
// deadline or a cancellation), or the mutex's error (EPERM: not the owner,
// before any wait).
int wait(pthread_cond_t* cv, pthread_mutex_t* m, deadline d, bool stoppable, const mutex_calls& calls) noexcept;

// pthread_cond_signal / broadcast: 0.
int signal(pthread_cond_t* cv) noexcept;
int broadcast(pthread_cond_t* cv) noexcept;

// Called by the pinning monitor when it marks `c` blocked: each fiber a
// signal woke that must resume on `c` and has not run yet cannot run until
// c's pinned call ends, so its condition variable is signalled again for a
// waiter that can run (the stuck fiber returns later, as from a spurious
// wake-up). broadcast's wakes need no such help: every waiter is woken,
// and a stuck carrier holds back only its own fibers' turn order.
void pass_on_wakes_stuck_on(const carrier* c) noexcept;

}  // namespace bobbin::internal::os_cond

#endif  // BOBBIN_RUNTIME_SYNC_OS_COND_H_
