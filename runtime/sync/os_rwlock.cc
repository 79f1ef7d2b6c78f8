// bobbin's pthread reader-writer lock (os_rwlock.h says for whom and why).
//
// The protocol: one 32-bit state word, in glibc's __readers, and the writer
// in __cur_writer.
//   state   bits 0-29: how many readers hold the lock, or kWriteLocked (all
//           ones) while a writer does; bit 30: readers wait; bit 31:
//           writers wait. Every waiter waits on the state word itself, with
//           a futex bitset saying which kind it is, so a wake can pick
//           readers or writers.
//   read    takes the lock when no writer holds it, by one compare-and-swap
//           adding one; in a PREFER_WRITER_NONRECURSIVE lock only when no
//           writer waits either (a count of writers in their slow path, in
//           glibc's __writers: readers queue behind a waiting writer, and a
//           reader that already holds it and asks again deadlocks, the
//           "nonrecursive" of glibc's name); held back by that count alone,
//           it waits on the count until it drops to none. Otherwise it sets
//           "readers wait" and waits. A reader that gets in while "readers wait" is
//           set (they waited for a writer that has left) clears it and
//           wakes them to come in too.
//   write   takes the lock when nobody holds it. Otherwise it sets
//           "writers wait" and waits. A writer that has waited sets
//           "writers wait" again when it takes the lock: it cannot know
//           whether it was the last, and a stale bit costs one empty wake.
//   unlock  subtracts its share and, when that leaves the lock free with a
//           waiting bit set, clears the bit of the side it will wake -- in
//           the same compare-and-swap -- then wakes that side: every reader
//           (for the default kind) or one writer (for glibc's two
//           writer-preferring kinds, which hand a released lock to a
//           waiting writer first). If nobody of that side was waiting (the
//           bit was stale), it wakes the other side, whose bit stays set.
//           After the compare-and-swap an unlock only makes futex wakes,
//           which touch no memory: a caller may destroy and free the lock
//           as soon as it is free (POSIX allows it), even while another
//           caller's unlock is still returning. (Rust's futex RwLock, whose
//           state word this follows, bumps a writers' counter after the
//           release; a Rust borrow keeps the lock alive, a pthread lock has
//           no such guarantee.)
// Timeouts: a waiter told it was woken always tries again before its
// deadline counts. The waiting bits hold nobody back (readers look at the
// count of waiting writers, writers at the holders), so one left behind by
// a waiter that gave up costs only an empty wake. A writer that gives up
// leaves the count of waiting writers, and the last one to leave wakes the
// readers it held back, so a writer that has left never keeps readers out
// (glibc does the same when its writer times out).
//
// Waits are futex_wait's (runtime/park/futex_wait.h): a fiber parks and
// resumes on the carrier it parked on unless runtime_options::
// os_lock_waiters_migrate (the rule and its reason: README "OS locks and
// waits"); a plain thread or a pinned fiber blocks. Where the kernel cannot
// wait for a fiber (the epoll backend, kernels before 6.7), the fiber parks
// in bobbin's futex table (runtime/park/futex_table.h), which every wake
// here reaches: all of them are futex_wake() calls.
//
// Nothing here is glibc's code; the state word follows Rust's futex-based
// std RwLock (library/std/src/sys/sync/rwlock/futex.rs), with timeouts,
// glibc's preferences and its EDEADLK and EAGAIN answers added, and the
// writers' counter dropped (see unlock above).
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

// Futex bitsets of the two kinds of waiter.
constexpr uint32_t kReaderWake = 1;
constexpr uint32_t kWriterWake = 2;

inline std::atomic<uint32_t>* state_word(pthread_rwlock_t* l) {
  static_assert(sizeof(l->__data.__readers) == sizeof(std::atomic<uint32_t>));
  return reinterpret_cast<std::atomic<uint32_t>*>(&l->__data.__readers);
}
inline int writer(const pthread_rwlock_t* l) { return __atomic_load_n(&l->__data.__cur_writer, __ATOMIC_RELAXED); }
inline void set_writer(pthread_rwlock_t* l, int id) { __atomic_store_n(&l->__data.__cur_writer, id, __ATOMIC_RELAXED); }

// glibc's kinds (os_rwlock.h), in __flags, written once by init. As in
// glibc, a released lock goes to a waiting writer first for both
// writer-preferring kinds, and only PREFER_WRITER_NONRECURSIVE holds new
// readers back while a writer waits.
inline unsigned kind(const pthread_rwlock_t* l) { return __atomic_load_n(&l->__data.__flags, __ATOMIC_RELAXED); }
inline bool wakes_writers_first(unsigned k) { return k != PTHREAD_RWLOCK_PREFER_READER_NP; }
inline bool readers_wait_for_writers(unsigned k) { return k == PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP; }

inline uint32_t count(uint32_t s) { return s & kCountMask; }

// Writers in their slow path, waiting or about to (glibc's __writers,
// which bobbin's layout leaves free). What holds new readers back in a
// PREFER_WRITER_NONRECURSIVE lock: unlike the "writers wait" bit, which an
// unlock clears when it wakes a writer, it stays up until that writer has
// the lock, so a reader cannot slip in between the wake and the writer's
// turn (a reader that unlocks and at once locks again would otherwise keep
// every writer out for ever).
inline std::atomic<uint32_t>* waiting_writers(pthread_rwlock_t* l) {
  return reinterpret_cast<std::atomic<uint32_t>*>(&l->__data.__writers);
}

inline bool read_lockable(uint32_t s, uint32_t writers_waiting, bool behind_writers) {
  return count(s) < kMaxReaders && (!behind_writers || writers_waiting == 0);
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

// Waits while *word == expected (futex_wait.h). A fiber whose runtime has
// interception off blocks its carrier, as in glibc. Called after a possible
// earlier wait: it re-reads the carrier.
__attribute__((noinline)) futex_wait_result wait_on(const std::atomic<uint32_t>* word, uint32_t expected,
                                                    uint32_t bitset, deadline d) {
  carrier* c = current_fiber_carrier();  // null off a fiber, and for a pinned one
  if (c != nullptr && !c->rt()->options().intercept_blocking_calls) {
    return futex_wait_blocking(word, expected, d, futex_scope::process_private, bitset);
  }
  const futex_resume resume = c != nullptr && c->rt()->options().os_lock_waiters_migrate
                                  ? futex_resume::any_carrier
                                  : futex_resume::parking_carrier;
  return futex_wait(word, expected, d, futex_scope::process_private, wait_reason::os_lock, resume, bitset);
}

// The side an unlock that leaves the lock free in state `s` (some waiting
// bit set) wakes first (see above).
uint32_t side_to_wake(uint32_t s, unsigned k) {
  const uint32_t first = wakes_writers_first(k) ? kWritersWaiting : kReadersWaiting;
  return (s & first) != 0 ? first : s & kWaiting;  // else the other bit, the one set
}

int wake(const std::atomic<uint32_t>* state, uint32_t side) {
  return side == kReadersWaiting ? futex_wake(state, INT_MAX, futex_scope::process_private, kReaderWake)
                                 : futex_wake(state, 1, futex_scope::process_private, kWriterWake);
}

// After an unlock's compare-and-swap cleared `side` from the state, leaving
// `left` (see above). Touches no memory of the lock.
void wake_after_unlock(const std::atomic<uint32_t>* state, uint32_t side, uint32_t left) {
  if (wake(state, side) > 0) return;
  const uint32_t other = side == kReadersWaiting ? kWritersWaiting : kReadersWaiting;
  if ((left & other) != 0) wake(state, other);
}

// One compare-and-swap taking a read lock from state `s` (read_lockable).
// Readers that were waiting come in too (see above).
bool take_read(pthread_rwlock_t* l, uint32_t& s) {
  const uint32_t next = (s + 1) & ~kReadersWaiting;
  if (!state_word(l)->compare_exchange_weak(s, next, std::memory_order_acquire, std::memory_order_relaxed)) {
    return false;
  }
  if ((s & kReadersWaiting) != 0) futex_wake(state_word(l), INT_MAX, futex_scope::process_private, kReaderWake);
  return true;
}

int read_lock_slow(pthread_rwlock_t* l, deadline d) {
  std::atomic<uint32_t>* state = state_word(l);
  std::atomic<uint32_t>* writers = waiting_writers(l);
  const bool behind_writers = readers_wait_for_writers(kind(l));
  int spins = kSpins;
  for (;;) {
    uint32_t s = state->load(std::memory_order_seq_cst);
    const uint32_t w = behind_writers ? writers->load(std::memory_order_seq_cst) : 0;
    if (read_lockable(s, w, behind_writers)) {
      if (take_read(l, s)) return 0;
      continue;
    }
    if (count(s) == kMaxReaders) return EAGAIN;
    if (spins > 0 && (s & kWaiting) == 0 && w == 0) {
      spins--;
      __builtin_ia32_pause();
      continue;
    }
    if (w != 0 && count(s) != kWriteLocked) {
      // Held back only by waiting writers: wait until none is left (each
      // drop to none wakes the readers waiting here).
      if (wait_on(writers, w, ~0u, d) == futex_wait_result::timed_out) return ETIMEDOUT;
      continue;
    }
    if ((s & kReadersWaiting) == 0) {
      if (!state->compare_exchange_weak(s, s | kReadersWaiting, std::memory_order_relaxed,
                                        std::memory_order_relaxed)) {
        continue;
      }
      s |= kReadersWaiting;
    }
    if (wait_on(state, s, kReaderWake, d) == futex_wait_result::timed_out) return ETIMEDOUT;
  }
}

// A writer leaves the slow path, holding the lock or giving up. The last to
// leave lets the readers its waiting held back in (see waiting_writers).
void writer_stops_waiting(pthread_rwlock_t* l) {
  std::atomic<uint32_t>* writers = waiting_writers(l);
  // The kind first: once the count is down, a reader may take, release and
  // free the lock before this writer's call returns. After it, only a wake.
  const bool readers_held_back = readers_wait_for_writers(kind(l));
  if (writers->fetch_sub(1, std::memory_order_seq_cst) == 1 && readers_held_back) {
    futex_wake(writers, INT_MAX, futex_scope::process_private);
  }
}

int write_lock_slow(pthread_rwlock_t* l, deadline d) {
  std::atomic<uint32_t>* state = state_word(l);
  uint32_t others_may_wait = 0;  // kWritersWaiting once this writer has waited
  bool counted = false;          // in waiting_writers
  int spins = kSpins;
  for (;;) {
    uint32_t s = state->load(std::memory_order_relaxed);
    if (count(s) == 0) {
      if (state->compare_exchange_weak(s, s | kWriteLocked | others_may_wait, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        if (counted) writer_stops_waiting(l);
        return 0;
      }
      continue;
    }
    if (spins > 0 && (s & kWaiting) == 0) {
      spins--;
      __builtin_ia32_pause();
      continue;
    }
    if (!counted) {
      counted = true;
      waiting_writers(l)->fetch_add(1, std::memory_order_seq_cst);
      continue;  // the state again: new readers are held back from here on
    }
    if ((s & kWritersWaiting) == 0) {
      if (!state->compare_exchange_weak(s, s | kWritersWaiting, std::memory_order_relaxed,
                                        std::memory_order_relaxed)) {
        continue;
      }
      s |= kWritersWaiting;
    }
    others_may_wait = kWritersWaiting;
    if (wait_on(state, s, kWriterWake, d) == futex_wait_result::timed_out) {
      writer_stops_waiting(l);
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
  const bool behind_writers = readers_wait_for_writers(kind(l));
  uint32_t s = state_word(l)->load(std::memory_order_relaxed);
  const uint32_t w = behind_writers ? waiting_writers(l)->load(std::memory_order_seq_cst) : 0;
  int r = 0;
  if (!read_lockable(s, w, behind_writers) || !take_read(l, s)) r = read_lock_slow(l, d);
  if (r == 0) tsan_locked(l, kTsanRead);
  return r;
}

int try_read_lock(pthread_rwlock_t* l, int self) noexcept {
  const bool behind_writers = readers_wait_for_writers(kind(l));
  uint32_t s = state_word(l)->load(std::memory_order_relaxed);
  for (;;) {
    const uint32_t w = behind_writers ? waiting_writers(l)->load(std::memory_order_seq_cst) : 0;
    if (!read_lockable(s, w, behind_writers) || writer(l) == self) {
      tsan_try_failed(l, kTsanRead);
      return count(s) == kMaxReaders ? EAGAIN : EBUSY;
    }
    if (take_read(l, s)) break;
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
  uint32_t s = state->load(std::memory_order_relaxed);
  uint32_t share;
  unsigned tsan_flags;
  if (count(s) == kWriteLocked) {
    if (writer(l) != self) return EPERM;
    share = kWriteLocked;
    tsan_flags = 0;
  } else if (count(s) == 0) {
    return EPERM;
  } else {
    share = 1;
    tsan_flags = kTsanRead;
  }
  const unsigned k = kind(l);  // read before the release: the lock may be freed after it
  // TSan is told before the release, as its own interceptor does: after
  // it, another caller may destroy the lock.
  tsan_pre_unlock(l, tsan_flags);
  if (share == kWriteLocked) set_writer(l, 0);
  tsan_post_unlock(l, tsan_flags);
  uint32_t next, side;
  do {
    next = s - share;
    side = 0;
    if (count(next) == 0 && (next & kWaiting) != 0) {
      side = side_to_wake(next, k);
      next &= ~side;
    }
  } while (!state->compare_exchange_weak(s, next, std::memory_order_release, std::memory_order_relaxed));
  if (side != 0) wake_after_unlock(state, side, next);
  return 0;
}

}  // namespace bobbin::internal::os_rwlock
