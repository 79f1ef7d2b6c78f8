// bobbin's pthread reader-writer lock (os_rwlock.h says for whom and why).
//
// The protocol: one 32-bit state word and one futex counter, in glibc's
// __readers and __writers_futex, and the writer in __cur_writer.
//   state   bits 0-29: how many readers hold the lock, or kWriteLocked (all
//           ones) while a writer does; bit 30: readers wait; bit 31:
//           writers wait. Readers wait on the state word itself; writers on
//           the counter, which each wake of a writer bumps first, so a
//           writer that read the counter before the wake does not sleep.
//   read    takes the lock when no writer holds it, by one compare-and-swap
//           adding one; in a writer-preferring lock, only when nobody
//           waits either (so readers queue behind a waiting writer, and a
//           reader that already holds it and asks again deadlocks: glibc's
//           "nonrecursive"). Otherwise it sets "readers wait" and waits.
//   write   takes the lock when nobody holds it. Otherwise it sets
//           "writers wait", reads the counter, checks the state again and
//           waits on the counter. A writer that has waited sets "writers
//           wait" again when it takes the lock: it cannot know whether it
//           was the last, and a stale bit costs one empty wake.
//   unlock  subtracts its share; whoever leaves the lock free with a
//           waiting bit set wakes the side the lock prefers -- every
//           reader, or one writer -- clearing that bit first, and the other
//           side if nobody was waiting on the first (the bit was stale).
//           A reader of a reader-preferring lock that takes it while
//           readers wait (they waited for a writer that has left) wakes
//           them to come in too.
// No wake is lost to a timeout: a waiter told it was woken always tries
// again before its deadline counts, and one that times out with the lock
// free and a bit set does the unlocker's wake itself (it may have been the
// one a stale bit stood for).
//
// Waits are futex_wait's (runtime/park/futex_wait.h): a fiber parks and
// resumes on the carrier it parked on unless runtime_options::
// os_lock_waiters_migrate (the rule and its reason: README "OS locks and
// waits"); a plain thread or a pinned fiber blocks. Where futex waits cannot
// park, a fiber polls on a timer (nap_for_lock), never blocking its carrier.
//
// Nothing here is glibc's code; the state word follows Rust's futex-based
// std RwLock (library/std/src/sys/sync/rwlock/futex.rs), with timeouts,
// glibc's reader preference and its EDEADLK and EAGAIN answers added.
#include "runtime/sync/os_rwlock.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>

#include "runtime/fiber/context.h"  // BOBBIN_TSAN
#include "runtime/fiber/fiber_control.h"
#include "runtime/park/futex_wait.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"
#include "runtime/sync/os_mutex.h"

namespace bobbin::internal::os_rwlock {

namespace {

constexpr uint32_t kCountMask = (1u << 30) - 1;
constexpr uint32_t kWriteLocked = kCountMask;
constexpr uint32_t kMaxReaders = kCountMask - 1;
constexpr uint32_t kReadersWaiting = 1u << 30;
constexpr uint32_t kWritersWaiting = 1u << 31;
constexpr uint32_t kWaiting = kReadersWaiting | kWritersWaiting;

// Loads of the state before a waiter gives up spinning and waits.
constexpr int kSpins = 40;

inline std::atomic<uint32_t>* state_word(pthread_rwlock_t* l) {
  static_assert(sizeof(l->__data.__readers) == sizeof(std::atomic<uint32_t>));
  return reinterpret_cast<std::atomic<uint32_t>*>(&l->__data.__readers);
}
inline std::atomic<uint32_t>* writer_wakes(pthread_rwlock_t* l) {
  return reinterpret_cast<std::atomic<uint32_t>*>(&l->__data.__writers_futex);
}
inline int writer(const pthread_rwlock_t* l) { return __atomic_load_n(&l->__data.__cur_writer, __ATOMIC_RELAXED); }
inline void set_writer(pthread_rwlock_t* l, int id) { __atomic_store_n(&l->__data.__cur_writer, id, __ATOMIC_RELAXED); }

// glibc's one writer-preferring kind (os_rwlock.h). Written once, by init.
inline bool prefers_writers(const pthread_rwlock_t* l) {
  return __atomic_load_n(&l->__data.__flags, __ATOMIC_RELAXED) == PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP;
}

inline uint32_t count(uint32_t s) { return s & kCountMask; }

inline bool read_lockable(uint32_t s, bool writers_first) {
  return count(s) < kMaxReaders && (!writers_first || (s & kWaiting) == 0);
}

// ThreadSanitizer cannot see these locks (bobbin's interposers stand before
// its own; rwlock_calls.cc leaves the lock to glibc when TSan's come first),
// so it is told of each. After the lock is taken, as os_mutex.cc does: a
// park between pre_lock and post_lock would lose the ordering.
#if BOBBIN_TSAN
void tsan_locked(void* l, unsigned flags) {
  __tsan_mutex_pre_lock(l, flags);
  __tsan_mutex_post_lock(l, flags, 0);
}
void tsan_try_failed(void* l, unsigned flags) {
  __tsan_mutex_pre_lock(l, flags | __tsan_mutex_try_lock);
  __tsan_mutex_post_lock(l, flags | __tsan_mutex_try_lock | __tsan_mutex_try_lock_failed, 0);
}
void tsan_pre_unlock(void* l, unsigned flags) { __tsan_mutex_pre_unlock(l, flags); }
void tsan_post_unlock(void* l, unsigned flags) { __tsan_mutex_post_unlock(l, flags); }
constexpr unsigned kTsanRead = __tsan_mutex_read_lock;
constexpr unsigned kTsanTry = __tsan_mutex_try_lock;
#else
void tsan_locked(void*, unsigned) {}
void tsan_try_failed(void*, unsigned) {}
void tsan_pre_unlock(void*, unsigned) {}
void tsan_post_unlock(void*, unsigned) {}
constexpr unsigned kTsanRead = 0;
constexpr unsigned kTsanTry = 0;
#endif

// Waits while *word == expected (futex_wait.h). A fiber whose futex waits
// cannot park naps instead, and one whose runtime has interception off
// blocks its carrier, as in glibc. Called after a possible earlier wait: it
// re-reads the carrier.
__attribute__((noinline)) futex_wait_result wait_on(const std::atomic<uint32_t>* word, uint32_t expected,
                                                    std::chrono::microseconds* nap, deadline d) {
  carrier* c = current_fiber_carrier();  // null off a fiber, and for a pinned one
  if (c != nullptr) {
    if (!c->rt()->options().intercept_blocking_calls) {
      return futex_wait_blocking(word, expected, d, futex_scope::process_private);
    }
    if (c->futex_ring_for_waits() == nullptr) {
      if (word->load(std::memory_order_acquire) != expected) return futex_wait_result::value_changed;
      if (d.expired()) return futex_wait_result::timed_out;
      nap_for_lock(c, *nap, d);
      *nap = std::min(*nap * 2, kLockNapMax);
      return futex_wait_result::woken;
    }
  }
  const futex_resume resume = c != nullptr && c->rt()->options().os_lock_waiters_migrate
                                  ? futex_resume::any_carrier
                                  : futex_resume::parking_carrier;
  return futex_wait(word, expected, d, futex_scope::process_private, wait_reason::os_lock, resume);
}

// Called by whoever saw the lock free with a waiting bit set in `s` (see
// above): wakes the side the lock prefers, or the other when nobody waited
// on the first. Stops as soon as someone holds the lock again: its unlock
// wakes the rest.
void wake_waiters(pthread_rwlock_t* l, uint32_t s) {
  std::atomic<uint32_t>* state = state_word(l);
  const bool writers_first = prefers_writers(l);
  for (;;) {
    if (count(s) != 0 || (s & kWaiting) == 0) return;
    uint32_t side;
    if (writers_first) {
      side = (s & kWritersWaiting) != 0 ? kWritersWaiting : kReadersWaiting;
    } else {
      side = (s & kReadersWaiting) != 0 ? kReadersWaiting : kWritersWaiting;
    }
    if (!state->compare_exchange_weak(s, s & ~side, std::memory_order_relaxed, std::memory_order_relaxed)) continue;
    s &= ~side;
    if (side == kWritersWaiting) {
      writer_wakes(l)->fetch_add(1, std::memory_order_release);
      if (futex_wake(writer_wakes(l), 1, futex_scope::process_private) > 0) return;
    } else {
      if (futex_wake(state, INT_MAX, futex_scope::process_private) > 0) return;
    }
  }
}

// A waiter that gives up (its deadline passed) with the lock free and a
// waiting bit set does the wake an unlocker would (see above).
void leave_after_timeout(pthread_rwlock_t* l) {
  const uint32_t s = state_word(l)->load(std::memory_order_relaxed);
  if (count(s) == 0 && (s & kWaiting) != 0) wake_waiters(l, s);
}

// One compare-and-swap taking a read lock from state `s` (read_lockable).
// A reader-preferring lock's readers that were waiting come in too.
bool take_read(pthread_rwlock_t* l, uint32_t& s, bool writers_first) {
  const uint32_t next = writers_first ? s + 1 : (s + 1) & ~kReadersWaiting;
  if (!state_word(l)->compare_exchange_weak(s, next, std::memory_order_acquire, std::memory_order_relaxed)) {
    return false;
  }
  if (!writers_first && (s & kReadersWaiting) != 0) {
    futex_wake(state_word(l), INT_MAX, futex_scope::process_private);
  }
  return true;
}

int read_lock_slow(pthread_rwlock_t* l, deadline d) {
  std::atomic<uint32_t>* state = state_word(l);
  const bool writers_first = prefers_writers(l);
  std::chrono::microseconds nap = kLockNapFirst;
  int spins = kSpins;
  for (;;) {
    uint32_t s = state->load(std::memory_order_relaxed);
    if (read_lockable(s, writers_first)) {
      if (take_read(l, s, writers_first)) return 0;
      continue;
    }
    if (count(s) == kMaxReaders) return EAGAIN;
    if (spins > 0 && (s & kWaiting) == 0) {
      spins--;
      __builtin_ia32_pause();
      continue;
    }
    if ((s & kReadersWaiting) == 0) {
      if (!state->compare_exchange_weak(s, s | kReadersWaiting, std::memory_order_relaxed,
                                        std::memory_order_relaxed)) {
        continue;
      }
      s |= kReadersWaiting;
    }
    if (wait_on(state, s, &nap, d) == futex_wait_result::timed_out) {
      leave_after_timeout(l);
      return ETIMEDOUT;
    }
  }
}

int write_lock_slow(pthread_rwlock_t* l, deadline d) {
  std::atomic<uint32_t>* state = state_word(l);
  std::atomic<uint32_t>* wakes = writer_wakes(l);
  std::chrono::microseconds nap = kLockNapFirst;
  uint32_t others_may_wait = 0;  // kWritersWaiting once this writer has waited
  int spins = kSpins;
  for (;;) {
    uint32_t s = state->load(std::memory_order_relaxed);
    if (count(s) == 0) {
      if (state->compare_exchange_weak(s, s | kWriteLocked | others_may_wait, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return 0;
      }
      continue;
    }
    if (spins > 0 && (s & kWaiting) == 0) {
      spins--;
      __builtin_ia32_pause();
      continue;
    }
    if ((s & kWritersWaiting) == 0) {
      if (!state->compare_exchange_weak(s, s | kWritersWaiting, std::memory_order_relaxed,
                                        std::memory_order_relaxed)) {
        continue;
      }
    }
    others_may_wait = kWritersWaiting;
    // The counter first, then the state again: a wake between the two
    // cleared the bit (seen here), and one after bumped the counter (seen
    // by the kernel, which then does not sleep).
    const uint32_t seen = wakes->load(std::memory_order_acquire);
    s = state->load(std::memory_order_relaxed);
    if (count(s) == 0 || (s & kWritersWaiting) == 0) continue;
    if (wait_on(wakes, seen, &nap, d) == futex_wait_result::timed_out) {
      leave_after_timeout(l);
      return ETIMEDOUT;
    }
  }
}

// Threads' ids for __cur_writer: any positive number that no other live
// thread of the process holds (never read as a kernel thread id here); the
// kernel's would cost a system call per lock.
std::atomic<int> next_thread_id{1};
thread_local int this_thread_id = 0;

}  // namespace

int caller_id() noexcept {
  if (carrier* c = tls_carrier) {
    if (fiber_control* f = c->current()) return os_mutex::owner_id(f);
  }
  int id = this_thread_id;
  if (__builtin_expect(id == 0, 0)) {
    id = next_thread_id.fetch_add(1, std::memory_order_relaxed) & INT_MAX;
    if (id == 0) id = next_thread_id.fetch_add(1, std::memory_order_relaxed) & INT_MAX;
    this_thread_id = id;
  }
  return id;
}

void init(pthread_rwlock_t* l, int kind) noexcept {
  *l = pthread_rwlock_t{};
  l->__data.__flags = static_cast<unsigned>(kind);
}

int destroy([[maybe_unused]] pthread_rwlock_t* l) noexcept {
#if BOBBIN_TSAN
  __tsan_mutex_destroy(l, 0);
#endif
  return 0;
}

int read_lock(pthread_rwlock_t* l, int self, deadline d) noexcept {
  if (writer(l) == self) return EDEADLK;
  const bool writers_first = prefers_writers(l);
  uint32_t s = state_word(l)->load(std::memory_order_relaxed);
  int r = 0;
  if (!read_lockable(s, writers_first) || !take_read(l, s, writers_first)) r = read_lock_slow(l, d);
  if (r == 0) tsan_locked(l, kTsanRead);
  return r;
}

int try_read_lock(pthread_rwlock_t* l, int self) noexcept {
  const bool writers_first = prefers_writers(l);
  uint32_t s = state_word(l)->load(std::memory_order_relaxed);
  for (;;) {
    if (!read_lockable(s, writers_first) || writer(l) == self) {
      tsan_try_failed(l, kTsanRead);
      return count(s) == kMaxReaders ? EAGAIN : EBUSY;
    }
    if (take_read(l, s, writers_first)) break;
  }
  tsan_locked(l, kTsanRead | kTsanTry);
  return 0;
}

int write_lock(pthread_rwlock_t* l, int self, deadline d) noexcept {
  if (writer(l) == self) return EDEADLK;
  uint32_t s = 0;
  if (!state_word(l)->compare_exchange_strong(s, kWriteLocked, std::memory_order_acquire,
                                              std::memory_order_relaxed)) {
    const int r = write_lock_slow(l, d);
    if (r != 0) return r;
  }
  set_writer(l, self);
  tsan_locked(l, 0);
  return 0;
}

int try_write_lock(pthread_rwlock_t* l, int self) noexcept {
  std::atomic<uint32_t>* state = state_word(l);
  uint32_t s = state->load(std::memory_order_relaxed);
  // Taken when nobody holds it, waiting bits or not (as glibc's trywrlock,
  // which does not queue behind waiters either).
  while (count(s) == 0) {
    if (state->compare_exchange_weak(s, s | kWriteLocked, std::memory_order_acquire, std::memory_order_relaxed)) {
      set_writer(l, self);
      tsan_locked(l, kTsanTry);
      return 0;
    }
  }
  tsan_try_failed(l, 0);
  return EBUSY;
}

int unlock(pthread_rwlock_t* l, int self) noexcept {
  std::atomic<uint32_t>* state = state_word(l);
  const uint32_t held = count(state->load(std::memory_order_relaxed));
  uint32_t s;
  if (held == kWriteLocked) {
    if (writer(l) != self) return EPERM;
    tsan_pre_unlock(l, 0);
    set_writer(l, 0);
    s = state->fetch_sub(kWriteLocked, std::memory_order_release) - kWriteLocked;
    tsan_post_unlock(l, 0);
  } else if (held == 0) {
    return EPERM;
  } else {
    tsan_pre_unlock(l, kTsanRead);
    s = state->fetch_sub(1, std::memory_order_release) - 1;
    tsan_post_unlock(l, kTsanRead);
  }
  if (count(s) == 0 && (s & kWaiting) != 0) wake_waiters(l, s);
  return 0;
}

}  // namespace bobbin::internal::os_rwlock
