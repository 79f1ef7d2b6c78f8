// Not part of the bobbin API.
//
// What the pthread_mutex_lock and pthread_mutex_unlock interposers do
// (mutex_calls.cc), callable from inside bobbin without the dynamic
// linker: condition variable waits (cond_calls.cc) release and retake their
// mutex with these. Through the dynamic linker, a sanitizer's interceptor,
// first in the search order, would see the mutex a second time, after its
// own condition variable interceptor had accounted for it.
#ifndef BOBBIN_RUNTIME_INTERCEPT_MUTEX_CALLS_H_
#define BOBBIN_RUNTIME_INTERCEPT_MUTEX_CALLS_H_

#include <pthread.h>

namespace bobbin::internal::intercept {

int mutex_lock(pthread_mutex_t* m) noexcept;
int mutex_unlock(pthread_mutex_t* m) noexcept;

}  // namespace bobbin::internal::intercept

#endif  // BOBBIN_RUNTIME_INTERCEPT_MUTEX_CALLS_H_
