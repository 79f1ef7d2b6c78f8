// glibc's pthread mutex protocol, run by a fiber (os_mutex.h says which
// mutexes and why).
//
// The protocol is glibc 2.36's own (nptl/pthread_mutex_lock.c,
// lowlevellock.h), followed exactly, because threads inside glibc use the
// same mutex at the same time:
//   - __lock: 0 free, 1 locked, 2 locked and maybe waited for. Lock is
//     cmpxchg(0 -> 1); failing that, xchg(2) until it returns 0, with a futex
//     wait for the value 2 between tries. Unlock is xchg(0) and, when the old
//     value was above 1, FUTEX_WAKE_PRIVATE of one waiter. No hand-off: the
//     woken waiter competes again (a thread or fiber may take the lock
//     first), which is why the wait is a loop.
//   - __owner: who holds it, written after the lock is taken and cleared
//     before it is released (glibc asserts it is 0 when it takes a NORMAL
//     mutex). A thread writes its kernel thread id; a fiber writes
//     owner_id(), negative, so that a recursive or error-checking mutex a
//     fiber holds is never taken for its carrier's, and vice versa.
//   - __count: the recursion depth of a RECURSIVE mutex.
//   - __nusers: +1 per lock, -1 per unlock (pthread_mutex_destroy returns
//     EBUSY while it is not 0), so a lock taken here and released by glibc,
//     or the reverse, balances.
// The one change: the futex wait is runtime/park/futex_wait.h's, which parks
// the fiber, and any FUTEX_WAKE on the word -- glibc's unlock on a plain
// thread, unlock() here -- makes it runnable again, on the carrier it parked
// on unless runtime_options::os_lock_waiters_migrate says any carrier (the
// rule and its reason: README "OS locks and waits").
//
// Where the kernel cannot wait for a fiber (the epoll backend, kernels
// before 6.7), the wait is in bobbin's futex table (futex_table.h), which
// every unlock of the interposers reaches; it re-checks on a timer too, for
// an unlock made inside glibc (none of the interposers sees it).
//
// Beyond glibc: a fiber tries the lock a few times before it parks (a park
// and wake cost microseconds; most critical sections are shorter), and a
// starvation guard: a fiber that has waited kStarvationNs marks the mutex
// (in a small side table: glibc's struct has no spare field) and, each time
// it is woken, retries a while between yields instead of parking again at
// the back of the kernel's queue; while a mark stands, fibers that find the
// mutex free give the waiter a turn instead of taking it. Threads are not
// asked: the OS already time-slices them.
#include "runtime/sync/os_mutex.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>

#include "runtime/fiber/context.h"  // BOBBIN_TSAN
#include "runtime/fiber/fiber_control.h"
#include "runtime/intercept/libc.h"
#include "runtime/park/futex_wait.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"

namespace bobbin::internal::os_mutex {

namespace {

constexpr int kTypeMask = 3;
constexpr int kRecursive = PTHREAD_MUTEX_RECURSIVE_NP;
constexpr int kErrorCheck = PTHREAD_MUTEX_ERRORCHECK_NP;

// Lock attempts before parking (bobbin::mutex measured 8 best, mutex.cc).
constexpr int kSpinAttempts = 8;
// A waiter that has waited this long asks barging fibers to let it in.
constexpr auto kStarvation = std::chrono::milliseconds(1);
// Turns a barging fiber gives a starving waiter before it takes the lock
// anyway (the waiter may be a thread, or gone).
constexpr int kPoliteYields = 64;
// Tries a starving waiter makes, yielding between them, each time it is
// woken, before it parks again.
constexpr int kStarvingPolls = 64;


// Fields glibc writes with plain stores under the lock and reads without it
// (__owner): relaxed atomics here, the same instructions on x86, so that
// ThreadSanitizer sees no race with another fiber's access.
template <class T>
T load(const T& field) {
  return __atomic_load_n(&field, __ATOMIC_RELAXED);
}
template <class T>
void store(T& field, T v) {
  __atomic_store_n(&field, v, __ATOMIC_RELAXED);
}

// ThreadSanitizer cannot see a lock taken here when bobbin is linked into
// the executable (its interposers come before TSan's, which are bypassed),
// so it is told. When bobbin is a shared library, TSan's pthread_mutex_*
// interceptors come first and have told it already: telling it again was
// reported as a double lock.
#if BOBBIN_TSAN
bool tsan_needs_telling() {
  static std::atomic<int> cache{0};
  return !libc::comes_before_bobbin("pthread_mutex_lock", cache);
}
void tsan_pre_lock(void* m, unsigned flags) {
  if (tsan_needs_telling()) __tsan_mutex_pre_lock(m, flags);
}
void tsan_post_lock(void* m, unsigned flags) {
  if (tsan_needs_telling()) __tsan_mutex_post_lock(m, flags, 0);
}
void tsan_pre_unlock(void* m) {
  if (tsan_needs_telling()) __tsan_mutex_pre_unlock(m, 0);
}
void tsan_post_unlock(void* m) {
  if (tsan_needs_telling()) __tsan_mutex_post_unlock(m, 0);
}
constexpr unsigned kTsanTry = __tsan_mutex_try_lock;
constexpr unsigned kTsanTryFailed = __tsan_mutex_try_lock_failed;
#else
void tsan_pre_lock(void*, unsigned) {}
void tsan_post_lock(void*, unsigned) {}
void tsan_pre_unlock(void*) {}
void tsan_post_unlock(void*) {}
constexpr unsigned kTsanTry = 0;
constexpr unsigned kTsanTryFailed = 0;
#endif

bool try_word(std::atomic<uint32_t>* w) {
  uint32_t expected = 0;
  return w->compare_exchange_strong(expected, 1, std::memory_order_acquire, std::memory_order_relaxed);
}

// Takes the lock word (glibc's lll_lock / lll_clocklock), parking between
// tries. 0 or ETIMEDOUT.
__attribute__((noinline)) int acquire_word(pthread_mutex_t* m, fiber_control* self, carrier* parking, deadline d) {
  carrier* c = parking;  // re-read after each wait: with os_lock_waiters_migrate the fiber may come back elsewhere
  std::atomic<uint32_t>* w = lock_word(m);
  std::atomic<uint32_t>& starving_here = slot_of(m).starving;
  std::atomic<uint32_t>& waiting_here = slot_of(m).waiting;
  // Barging: a free lock is taken at once, unless a fiber starves for it
  // (and this fiber may unmount: a pinned one only waits).
  const bool may_park = c != nullptr;
  for (int yields = 0; may_park && starving_here.load(std::memory_order_relaxed) != 0 && yields < kPoliteYields;
       yields++) {
    if (w->load(std::memory_order_relaxed) != 0) break;  // it will wait its turn below
    c->yield_bound(c->current());
  }
  // A woken waiter resumes only on its own carrier (the rule above). If
  // that is this one, it cannot run while this fiber keeps barging without
  // ever parking: while fibers wait for this mutex, let those bound here run
  // first.
  if (may_park && waiting_here.load(std::memory_order_relaxed) != 0 && c->bound_work_waiting()) {
    c->yield_bound(self);
  }
  for (int i = 0; i < kSpinAttempts; i++) {
    if (w->load(std::memory_order_relaxed) == 0 && try_word(w)) return 0;
    __builtin_ia32_pause();
  }
  const futex_resume resume = may_park && c->rt()->options().os_lock_waiters_migrate
                                  ? futex_resume::any_carrier
                                  : futex_resume::parking_carrier;
  // One clock read, on the slow path only.
  const auto first_wait = std::chrono::steady_clock::now();
  if (may_park) waiting_here.fetch_add(1, std::memory_order_relaxed);
  bool starving = false;
  int polls_left = 0;
  int result = 0;
  while (w->exchange(2, std::memory_order_acquire) != 0) {
    if (polls_left > 0) {
      // Starving: stay runnable on this carrier and retry, rather than park
      // again behind every later waiter in the kernel's FIFO queue (the
      // bargers let the lock go once they see the mark).
      if (d.expired()) {
        result = ETIMEDOUT;
        break;
      }
      polls_left--;
      c->yield_bound(c->current());
      continue;
    }
    if (futex_wait(w, 2, d, futex_scope::process_private, wait_reason::os_lock, resume, ~0u,
                   futex_wakers::may_bypass_bobbin) == futex_wait_result::timed_out) {
      result = ETIMEDOUT;
      break;
    }
    if (may_park) c = current_fiber_carrier();
    if (may_park && !starving && std::chrono::steady_clock::now() - first_wait >= kStarvation) {
      starving = true;
      starving_here.fetch_add(1, std::memory_order_relaxed);
    }
    if (starving) polls_left = kStarvingPolls;
  }
  if (starving) starving_here.fetch_sub(1, std::memory_order_relaxed);
  if (may_park) waiting_here.fetch_sub(1, std::memory_order_relaxed);
  return result;
}

// Releases the lock word (glibc's lll_unlock).
void release_word(pthread_mutex_t* m) {
  if (lock_word(m)->exchange(0, std::memory_order_release) > 1) wake_one_waiter(m);
}

void note_locked(pthread_mutex_t* m, int id, int type) {
  store(m->__data.__owner, id);
  if (type == kRecursive) store(m->__data.__count, 1u);
  store(m->__data.__nusers, load(m->__data.__nusers) + 1);
}

}  // namespace

waiter_counts waiter_slots[kWaiterSlots];

int lock_slow(pthread_mutex_t* m, fiber_control* self, carrier* parking, deadline d) noexcept {
  const int type = m->__data.__kind & kTypeMask;
  const int id = owner_id(self);
  if (type == kRecursive && load(m->__data.__owner) == id) {
    const unsigned depth = load(m->__data.__count);
    if (depth + 1 == 0) return EAGAIN;
    tsan_pre_lock(m, 0);
    store(m->__data.__count, depth + 1);
    tsan_post_lock(m, 0);
    return 0;
  }
  if (type == kErrorCheck && load(m->__data.__owner) == id) return EDEADLK;
  const int r = acquire_word(m, self, parking, d);
  if (r != 0) return r;
  // Told only once the lock is taken: ThreadSanitizer ignores the caller's
  // synchronization between pre_lock and post_lock, and a fiber switch
  // inside that window (the park) would lose its ordering.
  tsan_pre_lock(m, 0);
  note_locked(m, id, type);
  tsan_post_lock(m, 0);
  return 0;
}

bool held_by(const pthread_mutex_t* m, const fiber_control* self) noexcept {
  const int type = m->__data.__kind & kTypeMask;
  return (type == kRecursive || type == kErrorCheck) && load(m->__data.__owner) == owner_id(self);
}

int trylock(pthread_mutex_t* m, fiber_control* self) noexcept {
  const int type = m->__data.__kind & kTypeMask;
  const int id = owner_id(self);
  tsan_pre_lock(m, kTsanTry);
  if (type == kRecursive && load(m->__data.__owner) == id) {
    const unsigned depth = load(m->__data.__count);
    if (depth + 1 == 0) {
      tsan_post_lock(m, kTsanTry | kTsanTryFailed);
      return EAGAIN;
    }
    store(m->__data.__count, depth + 1);
    tsan_post_lock(m, kTsanTry);
    return 0;
  }
  // An error-checking mutex the caller holds: EBUSY, as glibc says.
  if (!try_word(lock_word(m))) {
    tsan_post_lock(m, kTsanTry | kTsanTryFailed);
    return EBUSY;
  }
  note_locked(m, id, type);
  tsan_post_lock(m, kTsanTry);
  return 0;
}

void wake_one_waiter(pthread_mutex_t* m) noexcept {
  futex_wake(lock_word(m), 1, futex_scope::process_private);
}

int unlock_slow(pthread_mutex_t* m, fiber_control* self) noexcept {
  const int type = m->__data.__kind & kTypeMask;
  const int id = owner_id(self);
  if (type == kRecursive) {
    if (load(m->__data.__owner) != id) return EPERM;
    const unsigned depth = load(m->__data.__count) - 1;
    if (depth != 0) {
      tsan_pre_unlock(m);
      store(m->__data.__count, depth);
      tsan_post_unlock(m);
      return 0;
    }
  } else if (type == kErrorCheck) {
    if (load(m->__data.__owner) != id || lock_word(m)->load(std::memory_order_relaxed) == 0) return EPERM;
  }
  // NORMAL and ADAPTIVE: no owner check, as in glibc.
  tsan_pre_unlock(m);
  store(m->__data.__owner, 0);
  store(m->__data.__nusers, load(m->__data.__nusers) - 1);
  // ThreadSanitizer is told before the release, as its own interceptor
  // does (after it, another caller may destroy the mutex), and outside the
  // window where it ignores synchronization: the wake's own (the futex
  // table's lock and hand-over, runtime/park/futex_table.cc) must be seen.
  tsan_post_unlock(m);
  release_word(m);
  return 0;
}

}  // namespace bobbin::internal::os_mutex
