// Not part of the bobbin API.
//
// Futex waits of fibers where the kernel cannot wait for them: the epoll
// backend, kernels before 6.7 (no IORING_OP_FUTEX_WAIT), BOBBIN_FUTEX_RING=off,
// or a carrier whose futex ring could not be created. There a parked
// fiber's wait is an entry in a table of bobbin's own, keyed by the word's
// address (Go's semaphore table, runtime/sema.go, and WebKit's ParkingLot
// work the same way), and a wake has to reach the table to end it.
//
// Who reaches the table. futex_wake() (futex_wait.h) looks there before it
// asks the kernel, and every wake bobbin makes goes through it: unlocks of
// OS mutexes and reader-writer locks by fibers and threads alike (the
// plain-thread pthread_mutex_unlock path adds the table's wake after
// glibc's), and FUTEX_WAKE made through glibc's syscall() by any thread
// (libstdc++'s std::atomic::wait, std::future, static-init guards;
// runtime/intercept/futex_calls.cc). A futex requeue or FUTEX_WAKE_OP made
// there wakes every fiber waiting on the words it names: a spurious wake,
// which futex(2) allows, instead of a lost one.
//
// Wakes bobbin does not see: the kernel's (a thread's exit clears the word
// pthread_join waits on), glibc's own inline system calls (pthread_once
// finishing, an internal unlock of a user's mutex), another process's on a
// shared futex, a raw `syscall` instruction. A wait that may be ended that
// way says so (futex_wakers::may_bypass_bobbin), and re-checks on a timer:
// 1 ms after it parks, then at doubling intervals up to kRecheckMax while
// the same fiber keeps waiting on the same word (a wait begun more than an
// interval after the last re-check starts again at 1 ms). A re-check is a
// spurious wake (futex_wait_result::woken); callers re-read the word, as
// after any.
//
// Wakes stuck on a blocked carrier. A fiber woken here resumes on the
// carrier it parked on (futex_resume::parking_carrier, the rule for OS
// locks: runtime/intercept/fiber_calls.h says why). While the pinning
// monitor has that carrier marked blocked it cannot run, so its wake must
// not wait with it: a wake prefers waiters whose carrier is not blocked,
// and one that can only reach such waiters gives each its wake without
// counting it, so the rest of the count goes on to the kernel's waiters
// (plain threads). A fiber woken before its carrier blocks stays among the
// "bound wakes" until it runs; the monitor, marking the carrier blocked,
// passes each such wake on to another waiter of the word
// (futex_table_pass_on_wakes_stuck_on), as the futex ring does
// (futex_ring::pass_on_wakes_stuck_on). The stuck fiber still has its
// wake: it re-checks the word when its carrier runs again (a spurious wake).
//
// The check that the word still holds the expected value and the entry's
// insertion happen under the bucket's lock, after the bucket's count of
// waiters is raised; a waker changes the word before it calls wake, then
// (after a full fence) reads that count, and takes the lock only when it is
// not zero. So either the waiter sees the new value or the waker sees the
// waiter: no wake is lost between them, as in the kernel's futex_wait.
#ifndef BOBBIN_RUNTIME_PARK_FUTEX_TABLE_H_
#define BOBBIN_RUNTIME_PARK_FUTEX_TABLE_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "bobbin/deadline.h"
#include "bobbin/wait_reason.h"
#include "runtime/park/futex_wait.h"

namespace bobbin::internal {

class carrier;

inline constexpr std::chrono::milliseconds kRecheckFirst{1};
inline constexpr std::chrono::milliseconds kRecheckMax{128};

// Parks the calling fiber (running unpinned on `c`) in the table while
// *word == expected, until a matching futex_table_wake(), `d`, or (for
// may_bypass_bobbin) a re-check. Not interrupted by a cancellation.
futex_wait_result futex_table_wait(carrier* c, const std::atomic<uint32_t>* word, uint32_t expected, deadline d,
                                   futex_scope scope, wait_reason reason, futex_resume resume, uint32_t bitset,
                                   futex_wakers wakers);

// Wakes up to `n` fibers waiting in the table on `word` with the same
// scope and a bitset sharing a bit with `bitset`, oldest first, preferring
// those whose carrier is not blocked; returns how many of the `n` wakes it
// gave. A fiber bound to a blocked carrier that it wakes (only when no
// other is waiting here) is not counted: the caller wakes as many more
// elsewhere. Call after changing the word. Costs a fence and a load when
// none waits there.
int futex_table_wake(const void* word, int n, futex_scope scope, uint32_t bitset);

// The same for a waker whose change of the word was a locked read-modify-
// write (glibc's unlock: an xchg), a full barrier on x86-64: it skips the
// fence, a third of an uncontended plain-thread unlock's cost.
int futex_table_wake_after_locked_rmw(const void* word, int n, futex_scope scope, uint32_t bitset);

// Whether any fiber has waited in the table yet: set before its first
// entry, never cleared. For wakers outside futex_wake() that would rather
// not pay a fence on every call (the plain-thread mutex unlock); they must
// order their change of the word before this load themselves.
extern std::atomic<bool> g_futex_table_used __attribute__((visibility("hidden")));
inline bool futex_table_used() noexcept { return g_futex_table_used.load(std::memory_order_relaxed); }

// Wakes every fiber waiting in the table on `word`, whatever its scope and
// bitset (for the futex operations the table cannot mirror: requeues and
// FUTEX_WAKE_OP).
void futex_table_wake_all(const void* word);

// For the pinning monitor, after it marks `c` blocked: each fiber woken
// from the table that waits to resume on `c` has its wake passed on to
// another waiter of its word (a fiber or thread that can run), one at a
// time. Costs a spin lock and a scan of one stripe of the bound wakes.
void futex_table_pass_on_wakes_stuck_on(const carrier* c);

// Which of the table's buckets (and spin locks) `word`'s waits share; for
// tests.
unsigned futex_table_bucket_index(const void* word);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_PARK_FUTEX_TABLE_H_
