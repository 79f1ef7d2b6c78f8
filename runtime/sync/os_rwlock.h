// Not part of the bobbin API.
//
// pthread reader-writer locks of bobbin's own, in glibc's 56 bytes, for
// every caller: a fiber waiting for one parks, a plain thread sleeps, and
// both hold and wait for the same lock. What std::shared_mutex,
// std::shared_timed_mutex and OpenSSL 3 (for its object stores and
// providers) lock. Called by the interposers in
// runtime/intercept/rwlock_calls.cc; the protocol is written atop
// os_rwlock.cc.
//
// Why not drive glibc's: it records the writer's kernel thread id in
// __cur_writer and answers EDEADLK when that thread asks again, so a second
// fiber on the writer's carrier would be told it deadlocks with itself; and
// its waits block the carrier. This one records the fiber (os_mutex's
// owner_id) or the thread, and waits with runtime/park/futex_wait.h.
// A process-shared lock (another process may use it with glibc's
// algorithm) is left to glibc whole, recognised by the __shared word glibc's
// pthread_rwlock_init sets.
//
// glibc's attributes are kept where they are, with glibc's meaning: __flags
// holds the kind -- PTHREAD_RWLOCK_PREFER_READER_NP (the default): new
// readers come in while a writer waits, and a released lock goes to the
// waiting readers first; PREFER_WRITER_NP: new readers still come in, but a
// released lock goes to a waiting writer first; PREFER_WRITER_NONRECURSIVE_NP:
// both, and new readers wait behind a waiting writer -- and the all-zero
// static initializer is a private, reader-preferring lock.
#ifndef BOBBIN_RUNTIME_SYNC_OS_RWLOCK_H_
#define BOBBIN_RUNTIME_SYNC_OS_RWLOCK_H_

#include <pthread.h>

#include "bobbin/deadline.h"

namespace bobbin::internal::os_rwlock {

// A process-shared lock: glibc's, whole.
inline bool shared(const pthread_rwlock_t* l) noexcept {
  return __atomic_load_n(&l->__data.__shared, __ATOMIC_RELAXED) != 0;
}

// Who calls: the fiber running on this thread (os_mutex::owner_id,
// negative) or, off a fiber, the thread (positive). Read once, on entry to
// an interposer, before any wait.
int caller_id() noexcept;

// pthread_rwlock_init for a private lock of glibc's `kind`.
void init(pthread_rwlock_t* l, int kind) noexcept;

// pthread_rwlock_destroy: 0 (as glibc, which checks nothing).
int destroy(pthread_rwlock_t* l) noexcept;

// pthread_rwlock_rdlock / timedrdlock / clockrdlock: 0, EDEADLK (`self`
// holds it for writing), EAGAIN (2^30 - 2 readers hold it), ETIMEDOUT.
int read_lock(pthread_rwlock_t* l, int self, deadline d) noexcept;
// pthread_rwlock_tryrdlock: 0, EBUSY, EAGAIN.
int try_read_lock(pthread_rwlock_t* l, int self) noexcept;

// pthread_rwlock_wrlock / timedwrlock / clockwrlock: 0, EDEADLK (`self`
// holds it for writing), ETIMEDOUT.
int write_lock(pthread_rwlock_t* l, int self, deadline d) noexcept;
// pthread_rwlock_trywrlock: 0, EBUSY.
int try_write_lock(pthread_rwlock_t* l, int self) noexcept;

// pthread_rwlock_unlock: releases `self`'s write lock, or one read lock.
// 0, or EPERM when the lock is not held, or held for writing by another
// (glibc does not check, and corrupts the lock).
int unlock(pthread_rwlock_t* l, int self) noexcept;

}  // namespace bobbin::internal::os_rwlock

#endif  // BOBBIN_RUNTIME_SYNC_OS_RWLOCK_H_
