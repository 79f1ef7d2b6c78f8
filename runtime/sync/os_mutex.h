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

#include <atomic>
#include <cstdint>

#include "bobbin/deadline.h"
#include "runtime/fiber/fiber_control.h"

namespace bobbin::internal {

class carrier;

namespace os_mutex {

// Whether the fiber-side protocol below takes this mutex (see above).
// glibc's kinds (nptl/pthreadP.h): the type in the low two bits, then flags;
// only PTHREAD_MUTEX_NO_ELISION_NP (512), which glibc sets on mutexes that
// must not use lock elision, leaves a mutex one of ours. (A plain read: the
// kind is written once, by pthread_mutex_init.)
inline bool handles(const pthread_mutex_t* m) noexcept {
  const int kind = m->__data.__kind;
  return kind >= 0 && (kind & ~512) <= 3;
}

// The value a fiber-held mutex records in __owner: negative, so that no
// thread id (always positive) equals it.
inline int owner_id(const fiber_control* f) noexcept {
  return static_cast<int>(0x80000000u | static_cast<uint32_t>(f->id & 0x7fffffff));
}

// Fibers waiting for a mutex, and those of them starving, by address hash
// (os_mutex.cc). A collision only makes fibers on another mutex polite for
// a while.
struct alignas(64) waiter_counts {
  std::atomic<uint32_t> waiting{0};
  std::atomic<uint32_t> starving{0};
};
inline constexpr unsigned kWaiterSlots = 64;
extern waiter_counts waiter_slots[kWaiterSlots];
inline waiter_counts& slot_of(const pthread_mutex_t* m) noexcept {
  return waiter_slots[(reinterpret_cast<uintptr_t>(m) >> 4) % kWaiterSlots];
}

inline std::atomic<uint32_t>* lock_word(pthread_mutex_t* m) noexcept {
  static_assert(sizeof(m->__data.__lock) == sizeof(std::atomic<uint32_t>));
  return reinterpret_cast<std::atomic<uint32_t>*>(&m->__data.__lock);
}

int lock_slow(pthread_mutex_t* m, fiber_control* self, carrier* parking, deadline d) noexcept;
int unlock_slow(pthread_mutex_t* m, fiber_control* self) noexcept;
// FUTEX_WAKE_PRIVATE of one waiter on the lock word (the second half of
// glibc's lll_unlock).
void wake_one_waiter(pthread_mutex_t* m) noexcept;

// ThreadSanitizer builds take the out-of-line paths, which tell it of each
// lock and unlock.
#if defined(__SANITIZE_THREAD__)
#define BOBBIN_OS_MUTEX_INLINE 0
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BOBBIN_OS_MUTEX_INLINE 0
#endif
#endif
#ifndef BOBBIN_OS_MUTEX_INLINE
#define BOBBIN_OS_MUTEX_INLINE 1
#endif
inline constexpr bool kInlineFastPaths = BOBBIN_OS_MUTEX_INLINE;

// pthread_mutex_lock / timedlock / clocklock for the fiber `self`, with
// glibc's results: 0, EDEADLK (an error-checking mutex `self` holds), EAGAIN
// (a recursive mutex's count would overflow), ETIMEDOUT (`d` passed).
// `parking`: the carrier `self` runs on, or null if it is pinned (then a
// wait blocks the carrier, as a thread's would). Inline here: the
// uncontended lock of a NORMAL or ADAPTIVE mutex, glibc's own steps (one
// compare-and-swap, then __owner and __nusers) when no fiber waits for it.
inline int lock(pthread_mutex_t* m, fiber_control* self, carrier* parking, deadline d) noexcept {
  const int type = m->__data.__kind & 3;
  if (kInlineFastPaths && (type == PTHREAD_MUTEX_TIMED_NP || type == PTHREAD_MUTEX_ADAPTIVE_NP) &&
      slot_of(m).waiting.load(std::memory_order_relaxed) == 0) {
    uint32_t expected = 0;
    if (lock_word(m)->compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed)) {
      __atomic_store_n(&m->__data.__owner, owner_id(self), __ATOMIC_RELAXED);
      __atomic_store_n(&m->__data.__nusers, __atomic_load_n(&m->__data.__nusers, __ATOMIC_RELAXED) + 1,
                       __ATOMIC_RELAXED);
      return 0;
    }
  }
  return lock_slow(m, self, parking, d);
}

// Whether `self` holds this recursive or error-checking mutex (those record
// their owner; a NORMAL or ADAPTIVE one is never "held" here).
bool held_by(const pthread_mutex_t* m, const fiber_control* self) noexcept;

// pthread_mutex_trylock: 0 or EBUSY (EAGAIN on a recursive overflow).
int trylock(pthread_mutex_t* m, fiber_control* self) noexcept;

// pthread_mutex_unlock: 0, or EPERM when a recursive or error-checking
// mutex is not held by `self`. Inline here: a NORMAL or ADAPTIVE mutex
// nobody waits for (glibc checks no owner for those either).
inline int unlock(pthread_mutex_t* m, fiber_control* self) noexcept {
  const int type = m->__data.__kind & 3;
  if (kInlineFastPaths && (type == PTHREAD_MUTEX_TIMED_NP || type == PTHREAD_MUTEX_ADAPTIVE_NP)) {
    __atomic_store_n(&m->__data.__owner, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&m->__data.__nusers, __atomic_load_n(&m->__data.__nusers, __ATOMIC_RELAXED) - 1,
                     __ATOMIC_RELAXED);
    if (lock_word(m)->exchange(0, std::memory_order_release) > 1) wake_one_waiter(m);
    return 0;
  }
  return unlock_slow(m, self);
}

}  // namespace os_mutex
}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_SYNC_OS_MUTEX_H_
