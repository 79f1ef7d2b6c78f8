// Not part of the bobbin API.
//
// Waiting on a futex word from a fiber: the one primitive that OS locks and
// waits taken over from glibc (pthread mutexes, condition variables,
// reader-writer locks, raw futex calls) park on, so that a FUTEX_WAKE from
// anyone -- a plain thread inside glibc, a fiber, the kernel -- resumes a
// parked fiber, and the fiber's carrier runs other fibers meanwhile.
//
// Where the wait is armed. Not on the carrier's own ring: those are set up
// SINGLE_ISSUER | DEFER_TASKRUN, and a futex wake on such a ring is delivered
// only when that carrier next enters it. A carrier stuck in a pinned call
// would then hold back a fiber whose lock is already free (measured: never
// delivered in 3 s; ../shared/research/os-locks.md §0), the shape of the JDK's
// pinning deadlocks. Instead each carrier has a second ring for its fibers'
// futex waits (created on first use), set up without those flags, so the
// kernel completes a wait as soon as it is woken, whatever the carrier does.
//
// Who reaps it. The carrier itself, on every turn of its loop (a look at the
// completion queue's tail); before it sleeps it arms a poll on that ring's
// fd on its own ring, so a completion wakes it. The kernel runs a woken
// wait's completion on the thread that submitted it -- this carrier -- so a
// wake costs one hop, as a thread's futex wake does: the waker, then the
// carrier. (Stop 28's design, one ring for the runtime reaped by a thread of
// its own, cost three: the submitting carrier ran the kernel's task work,
// the reaper thread woke to reap, and the carrier woke again to run the
// fiber; the std::future row of perf/RESULTS.md lost 1% to threads there.)
// A carrier that does not reap -- stuck in a pinned call, or running one
// fiber for long -- has its completions reaped by the pinning monitor: on
// each tick it reaps a ring whose oldest completion was already waiting at
// the tick before (Go's sysmon polls the network the same way), and at once
// when it marks the carrier blocked. A woken fiber is made runnable on the
// global queue, so any carrier that is not stuck runs it, or, when the
// caller asks (futex_resume), on the carrier it parked on.
//
// Fallback, decided by the runtime (runtime_impl::futex_rings_usable): on
// the epoll backend, a kernel without IORING_OP_FUTEX_WAIT (before 6.7),
// BOBBIN_FUTEX_RING=off in the environment when the runtime starts, or a
// carrier that could not create its ring (said once on stderr), a fiber's
// futex wait parks in a table of bobbin's own that futex_wake() and the
// interposed wakes reach (runtime/park/futex_table.h). Plain threads and
// fibers inside a pinned_scope always wait in the kernel, blocking.
//
// No wake is lost to a deadline: the ring wait's timeout is linked to it, so
// the wait's own completion says whether it consumed a wake (0) or was cut
// off by the timeout (-ECANCELED), and the caller is told what happened.
#ifndef BOBBIN_RUNTIME_PARK_FUTEX_WAIT_H_
#define BOBBIN_RUNTIME_PARK_FUTEX_WAIT_H_

#include <liburing.h>

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/spin_lock.h"
#include "bobbin/wait_reason.h"

namespace bobbin::internal {

class carrier;
struct futex_ring_wait;

enum class futex_wait_result {
  woken,          // a FUTEX_WAKE (or a spurious return): re-check the word
  value_changed,  // the word did not hold `expected` when the wait began
  timed_out,      // the deadline passed first
};

// Whose futex key the wait uses: glibc's process-private locks wake with
// FUTEX_WAKE_PRIVATE; process-shared ones (and libstdc++'s std::future and
// static-init guards) with plain FUTEX_WAKE. A wake of one kind never
// reaches a wait of the other.
enum class futex_scope { process_private, shared };

// Where a fiber woken from a parked futex wait runs next.
enum class futex_resume {
  // The carrier it parked on (carrier::push_bound), as after an intercepted
  // libc call: its caller is compiled code that may keep a thread-local's
  // address across the call. While that carrier is blocked (the pinning
  // monitor says so), the wake is also passed on to another waiter, so
  // that a free lock is not left to a fiber that cannot run yet.
  parking_carrier,
  any_carrier,  // the global queue: the first carrier free runs it
};

// Whether every wake of a word can be seen by bobbin (a fiber, a thread in
// an interposed call, futex_wake(), syscall() through the interposer), or
// some may come from elsewhere (the kernel, glibc's inline system calls,
// another process). Only the futex table (futex_table.h) needs to know:
// there a wait of the second kind re-checks its word on a timer.
enum class futex_wakers { seen_by_bobbin, may_bypass_bobbin };

// Waits while *word == expected, until woken or `d` passes. On a fiber that
// is not pinned it parks (see above); elsewhere it blocks the thread. Like
// futex(2), it may return `woken` without a wake: callers re-check the word.
// Not interrupted by a cancellation (request_stop) of the fiber, as the
// locks built on it are not. `bitset` is FUTEX_WAIT_BITSET's: only a wake
// whose bitset shares a bit with it ends the wait (nonzero).
futex_wait_result futex_wait(const std::atomic<uint32_t>* word, uint32_t expected, deadline d, futex_scope scope,
                             wait_reason reason, futex_resume resume = futex_resume::any_carrier,
                             uint32_t bitset = ~0u, futex_wakers wakers = futex_wakers::seen_by_bobbin);

// The same wait blocking the calling thread, whatever it runs: for a fiber
// whose runtime has interception off (runtime_options::
// intercept_blocking_calls), whose OS-lock waits block as glibc's would.
futex_wait_result futex_wait_blocking(const std::atomic<uint32_t>* word, uint32_t expected, deadline d,
                                      futex_scope scope, uint32_t bitset = ~0u);

// futex(2) itself, never through an interposer: glibc's syscall() as found
// after bobbin's (runtime/intercept/futex_calls.cc), which would otherwise
// turn the runtime's own thread waits into parks.
long futex_syscall(const void* word, int op, uint32_t val, const void* timeout, uint32_t val3) noexcept;

// Wakes up to `n` waiters on `word` (fibers or threads) whose wait's bitset
// shares a bit with `bitset` (FUTEX_WAKE_BITSET; all of them by default);
// returns how many: fibers waiting in the futex table first, then the
// kernel's waiters for the rest of `n`. Call after changing the word. Touches no memory but the kernel's: a wake after the
// word's owner may have freed it is at worst a spurious wake of whoever
// waits there next.
int futex_wake(const std::atomic<uint32_t>* word, int n, futex_scope scope, uint32_t bitset = ~0u);

// Passes on a wake that a fiber bound to a blocked carrier got but cannot
// use (the futex ring's and the futex table's stuck wakes): wakes one
// waiter of the same kind (`bitset`: a reader-writer lock's reader or
// writer), or, when there is none, any waiter, which re-checks the word: a
// lock left free with only the other kind waiting must not wait for the
// blocked carrier either.
void pass_wake_on(const std::atomic<uint32_t>* word, futex_scope scope, uint32_t bitset);

// A carrier's futex ring: created by its carrier on the first wait of one of
// its fibers, closed after the carriers have stopped (a fiber still parked
// then is abandoned with the rest). Submitted to by that carrier only;
// reaped by it, or by the pinning monitor when it does not (see above).
// Internal to futex_wait.cc but for the carrier's and monitor's calls.
class futex_ring {
 public:
  futex_ring() = default;
  futex_ring(const futex_ring&) = delete;
  futex_ring& operator=(const futex_ring&) = delete;
  ~futex_ring();

  // Whether fibers can park on this kernel and in this environment; the
  // probe runs once per process.
  static bool supported_by_kernel();
  absl::Status start();
  void close();
  int fd() const { return ring_.ring_fd; }

  // Prepares `sqes` (1 or 2: a wait and its linked timeout) with
  // prep(io_uring_sqe**) and submits them together. Its carrier's thread
  // only. There is always room: submit_prepared() leaves the submission
  // queue empty.
  template <class Prep>
  void submit(unsigned sqes, Prep&& prep);

  // Completions not reaped yet, in the queue or in the kernel's overflow
  // list (three loads). All atomic: the monitor asks while the carrier
  // advances the head (liburing's io_uring_cq_ready reads the head plainly,
  // which ThreadSanitizer rightly calls a race).
  bool has_completions() const {
    return io_uring_smp_load_acquire(ring_.cq.ktail) != io_uring_smp_load_acquire(ring_.cq.khead) ||
           io_uring_cq_has_overflow(&ring_);
  }
  // The carrier's loop: runs every completion there is, unless another
  // thread (the monitor) is reaping at the moment.
  void reap_if_free();
  // The pinning monitor's: reap_if_stalled() once per tick reaps if the
  // oldest completion was already there at its last look (the carrier is
  // not reaping); reap_for_stuck_carrier() at once.
  void reap_if_stalled();
  void reap_for_stuck_carrier();

  uint64_t waits() const { return waits_.load(std::memory_order_relaxed); }
  uint64_t reaped_by_monitor() const { return reaped_by_monitor_.load(std::memory_order_relaxed); }

  // Called by the pinning monitor once it has marked `c` blocked: passes on
  // the wake of every fiber woken from a wait that must resume on `c` and
  // has not run yet, so that the lock it was woken for goes to a waiter
  // that can run (futex_resume::parking_carrier).
  void pass_on_wakes_stuck_on(const carrier* c);

  // futex_wait.cc: the list of such woken fibers. A wait joins it when its
  // wake is consumed and leaves it when its fiber runs again.
  void track_woken(futex_ring_wait* w);
  void untrack_woken(futex_ring_wait* w);

 private:
  void pass_on(futex_ring_wait* w);  // under woken_lock_; once per wait
  void reap();  // every completion there is, waiting for reap_lock_
  unsigned run_completions(bool wait_for_lock);  // how many it reaped
  // Hands every prepared SQE to the kernel; while the completion queue is
  // full (EBUSY), reaps to make room.
  void submit_prepared();

  io_uring ring_{};
  bool ring_up_ = false;
  spin_lock reap_lock_;  // the completion queue's head, held for loads and stores only
  unsigned stalled_head_ = ~0u;  // the monitor's: the head it last saw waiting
  std::atomic<uint64_t> waits_{0};
  std::atomic<uint64_t> reaped_by_monitor_{0};
  spin_lock woken_lock_;
  futex_ring_wait* woken_bound_ = nullptr;
};

template <class Prep>
void futex_ring::submit(unsigned sqes, Prep&& prep) {
  if (io_uring_sq_space_left(&ring_) < sqes) submit_prepared();
  io_uring_sqe* batch[2] = {nullptr, nullptr};
  for (unsigned i = 0; i < sqes; i++) batch[i] = io_uring_get_sqe(&ring_);
  prep(batch);
  waits_.fetch_add(1, std::memory_order_relaxed);
  submit_prepared();
}

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_PARK_FUTEX_WAIT_H_
