// Not part of the bobbin API.
//
// A glibc pthread mutex locked and unlocked by a fiber, so that waiting for
// it parks the fiber instead of blocking its carrier, and the fiber, not the
// carrier's thread, owns it. Called by the interposers in
// runtime/intercept/mutex_calls.cc; the protocol is written atop
// os_mutex.cc.
//
// Which mutexes: private (not process-shared), non-robust, without priority
// inheritance or protection and without lock elision, of the kinds
// NORMAL/TIMED, ADAPTIVE, RECURSIVE and ERRORCHECK: what std::mutex,
// std::timed_mutex, std::recursive_mutex and nearly every C library
// create. handles() says whether a mutex is one; the others stay glibc's.
#ifndef BOBBIN_RUNTIME_SYNC_OS_MUTEX_H_
#define BOBBIN_RUNTIME_SYNC_OS_MUTEX_H_

#include <pthread.h>

#include "bobbin/deadline.h"

namespace bobbin::internal {

struct fiber_control;

namespace os_mutex {

// Whether the fiber-side protocol below takes this mutex (see above).
bool handles(const pthread_mutex_t* m) noexcept;

// pthread_mutex_lock / timedlock / clocklock for the fiber `self`, with
// glibc's results: 0, EDEADLK (an error-checking mutex `self` holds), EAGAIN
// (a recursive mutex's count would overflow), ETIMEDOUT (`d` passed).
int lock(pthread_mutex_t* m, fiber_control* self, deadline d) noexcept;

// pthread_mutex_trylock: 0 or EBUSY (EAGAIN on a recursive overflow).
int trylock(pthread_mutex_t* m, fiber_control* self) noexcept;

// pthread_mutex_unlock: 0, or EPERM when a recursive or error-checking
// mutex is not held by `self`.
int unlock(pthread_mutex_t* m, fiber_control* self) noexcept;

// The value a fiber-held mutex records in __owner: negative, so that no
// thread id (always positive) equals it.
int owner_id(const fiber_control* f) noexcept;

}  // namespace os_mutex
}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_SYNC_OS_MUTEX_H_
