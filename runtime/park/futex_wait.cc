// A fiber's futex wait (see futex_wait.h for where it is armed and why).
//
// One wait on the futex ring, from the fiber's side:
//   1. prepare IORING_OP_FUTEX_WAIT (and, with a deadline, an
//      IORING_OP_LINK_TIMEOUT linked to it) and submit;
//   2. park: once the fiber's context is saved, the switch stores "parked"
//      in the wait's handshake word (switch_action::publish_parked);
//   3. the reaper (the carrier, or the pinning monitor for a carrier that is
//      not reaping) sees each of the wait's completions; after the last one
//      it stores "completed" there. Whichever of 2 and 3 comes second makes the
//      fiber runnable: the reaper never waits for a fiber still on its way
//      out (a wait can complete during its own submission: -EAGAIN, or a
//      wake), which on 2 cores cost a third of the CPU under contention.
// The record lives on the fiber's stack: the fiber cannot resume before the
// last completion, so nothing touches it after the fiber returns.
//
// The futex opcodes are filled in by hand: liburing 2.3 (Debian 12) predates
// its io_uring_prep_futex_* helpers (2.6), while the kernel (6.7+) has them.
#include "runtime/park/futex_wait.h"

#include <linux/futex.h>
#include <linux/time_types.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "runtime/fiber/context.h"  // BOBBIN_TSAN
#include "runtime/fiber/fiber_control.h"
#include "runtime/intercept/libc.h"
#include "runtime/io/io_wait.h"
#include "runtime/park/futex_table.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"
#include "runtime/util/check.h"
#include "runtime/util/deadline_time.h"

namespace bobbin::internal {

namespace {

// From the kernel's uapi (io_uring.h, futex.h), absent from liburing 2.3's
// copy of the header.
constexpr uint8_t kOpFutexWait = 51;
constexpr uint32_t kFutex2SizeU32 = 0x02;
constexpr uint32_t kFutex2Private = 128;
constexpr unsigned kRingEntries = 1024;

}  // namespace

struct futex_ring_wait {
  completion on_wait{&waited};
  completion on_timeout{&timeout_done};
  std::atomic<uint32_t> handshake{0};  // switch_action::publish_parked
  std::atomic<int> pending{0};  // completions still to come
  int res = 0;                  // the wait's own completion
  fiber_control* fiber = nullptr;
  carrier* home = nullptr;  // futex_resume::parking_carrier: resume there only
  const std::atomic<uint32_t>* word = nullptr;
  futex_scope scope = futex_scope::process_private;
  uint32_t bitset = ~0u;  // the wait's, so that a passed-on wake reaches the same kind of waiter
  __kernel_timespec when{};
  futex_ring* ring = nullptr;
  // While on the ring's list of woken, not yet running bound waits
  // (futex_ring::woken_bound_, guarded by its woken_lock_).
  futex_ring_wait* prev = nullptr;
  futex_ring_wait* next = nullptr;
  bool listed = false;
  bool passed_on = false;

  static void waited(completion* c, int res, uint32_t) {
    auto* w = reinterpret_cast<futex_ring_wait*>(c);
    w->res = res;
    w->one_done();
  }
  static void timeout_done(completion* c, int, uint32_t) {
    reinterpret_cast<futex_ring_wait*>(reinterpret_cast<char*>(c) - offsetof(futex_ring_wait, on_timeout))
        ->one_done();
  }
  void one_done() {
    if (pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    fiber_control* f = fiber;
    carrier* to = home;
    // A wake consumed for a fiber that must resume on its carrier: if that
    // carrier is stuck, now or before the fiber runs, one wake is passed on
    // (a spurious wake is allowed by every futex protocol), so that a lock
    // this fiber cannot take yet goes to a waiter that can run.
    if (to != nullptr && res == 0) ring->track_woken(this);
    // If the fiber has not finished leaving yet, its switch resumes it.
    if (handshake.exchange(switch_action::kHandshakeCompleted, std::memory_order_acq_rel) !=
        switch_action::kHandshakeParked) {
      return;
    }
    // `*this` may be gone from here on.
    if (to != nullptr && to == current_carrier()) {
      to->push_bound(f);  // reaped by its own carrier: no request, no eventfd
    } else if (to != nullptr) {
      to->post(remote_request{remote_request::resume_bound, -1, reinterpret_cast<uint64_t>(f), nullptr});
    } else {
      f->rt->ready(f, /*next=*/false);
    }
  }
};

namespace {

inline void tsan_release([[maybe_unused]] void* addr) {
#if BOBBIN_TSAN
  __tsan_release(addr);
#endif
}
inline void tsan_acquire([[maybe_unused]] void* addr) {
#if BOBBIN_TSAN
  __tsan_acquire(addr);
#endif
}

long raw_futex(const std::atomic<uint32_t>* word, int op, uint32_t val, const timespec* ts, uint32_t val3) {
  return futex_syscall(word, op, val, ts, val3);
}

}  // namespace

futex_wait_result futex_wait_blocking(const std::atomic<uint32_t>* word, uint32_t expected, deadline d,
                                      futex_scope scope, uint32_t bitset) {
  int op = FUTEX_WAIT_BITSET | (scope == futex_scope::process_private ? FUTEX_PRIVATE_FLAG : 0);
  timespec abs{};
  if (!d.is_never()) abs = monotonic_timespec<timespec>(d);
  long r = raw_futex(word, op, expected, d.is_never() ? nullptr : &abs, bitset);
  if (r == 0) return futex_wait_result::woken;
  if (errno == EAGAIN) return futex_wait_result::value_changed;
  if (errno == ETIMEDOUT) return futex_wait_result::timed_out;
  return futex_wait_result::woken;  // EINTR: spurious, as futex(2) allows
}

bool futex_ring::supported_by_kernel() {
  static const bool supported = [] {
    io_uring_probe* probe = io_uring_get_probe();
    if (probe == nullptr) return false;
    const bool ok = io_uring_opcode_supported(probe, kOpFutexWait) != 0;
    io_uring_free_probe(probe);
    return ok;
  }();
  return supported;
}

futex_ring::~futex_ring() { close(); }

absl::Status futex_ring::start() {
  // Plain flags on purpose: no DEFER_TASKRUN (a wake must complete while
  // its carrier is busy or stuck; see futex_wait.h).
  int r = io_uring_queue_init(kRingEntries, &ring_, 0);
  if (r < 0) return absl::UnavailableError(absl::StrCat("bobbin: futex ring: io_uring_queue_init: ", std::strerror(-r)));
  ring_up_ = true;
  return absl::OkStatus();
}

void futex_ring::close() {
  if (!ring_up_) return;
  // Waits still armed belong to fibers the shutdown abandons; closing the
  // ring cancels them without running their completions.
  io_uring_queue_exit(&ring_);
  ring_up_ = false;
}

void futex_ring::submit_prepared() {
  for (;;) {
    int r = io_uring_submit(&ring_);
    if (r >= 0 || io_uring_sq_ready(&ring_) == 0) return;
    // EBUSY/EAGAIN: the kernel could not take the submission while
    // completions wait (older kernels, or a full overflow list); reaping
    // makes room. EINTR: a signal. The prepared SQEs must still reach the
    // kernel.
    BOBBIN_CHECK(r == -EBUSY || r == -EAGAIN || r == -EINTR, "bobbin: futex ring: io_uring_submit failed");
    if (r != -EINTR) reap();
  }
}

void futex_ring::reap() { run_completions(/*wait_for_lock=*/true); }

void futex_ring::reap_if_free() {
  if (has_completions()) run_completions(/*wait_for_lock=*/false);
}

void futex_ring::reap_if_stalled() {
  if (!has_completions()) {
    stalled_head_ = ~0u;
    return;
  }
  const unsigned head = io_uring_smp_load_acquire(ring_.cq.khead);
  if (head == stalled_head_) {
    reap_for_stuck_carrier();
    stalled_head_ = ~0u;
  } else {
    stalled_head_ = head;
  }
}

void futex_ring::reap_for_stuck_carrier() {
  reaped_by_monitor_.fetch_add(run_completions(/*wait_for_lock=*/true), std::memory_order_relaxed);
}

unsigned futex_ring::run_completions(bool wait_for_lock) {
  // A batch at a time: copied out under reap_lock_, run after it is
  // released, so the lock is held for loads and stores only (the
  // completions make system calls and take other locks; a carrier that
  // finds the monitor reaping goes on with its loop).
  struct taken {
    completion* c;
    int res;
    uint32_t flags;
  };
  constexpr unsigned kBatch = 64;
  unsigned total = 0;
  for (;;) {
    if (wait_for_lock) {
      reap_lock_.lock();
    } else if (!reap_lock_.try_lock()) {
      return total;
    }
    // More completions than the queue holds (thousands of waiters woken at
    // once) wait in the kernel's overflow list, and only an enter moves
    // them into the queue; until then the ring's fd polls readable.
    if (io_uring_cq_has_overflow(&ring_)) io_uring_get_events(&ring_);
    taken batch[kBatch];
    unsigned seen = 0, n = 0, head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      if (seen == kBatch) break;
      seen++;
      if (cqe->user_data != 0) batch[n++] = {reinterpret_cast<completion*>(cqe->user_data), cqe->res, cqe->flags};
    }
    io_uring_cq_advance(&ring_, seen);
    reap_lock_.unlock();
    for (unsigned i = 0; i < n; i++) {
      tsan_acquire(batch[i].c);  // the submitter's writes (see futex_wait)
      batch[i].c->fn(batch[i].c, batch[i].res, batch[i].flags);
    }
    total += seen;
    if (seen < kBatch && !has_completions()) return total;
  }
}

futex_wait_result futex_wait(const std::atomic<uint32_t>* word, uint32_t expected, deadline d, futex_scope scope,
                             wait_reason reason, futex_resume resume, uint32_t bitset, futex_wakers wakers) {
  if (word->load(std::memory_order_acquire) != expected) return futex_wait_result::value_changed;
  if (d.expired()) return futex_wait_result::timed_out;
  carrier* c = current_fiber_carrier();
  futex_ring* ring = c != nullptr ? c->futex_ring_for_waits() : nullptr;
  if (ring == nullptr && c != nullptr) {
    // No usable futex ring: bobbin's own table (futex_table.h).
    return futex_table_wait(c, word, expected, d, scope, reason, resume, bitset, wakers);
  }
  if (ring == nullptr) {
    // A plain thread or a pinned fiber: block the thread; on a carrier the
    // mark names the wait in the pinning report.
    pinned_block_marker marker(reason);
    return futex_wait_blocking(word, expected, d, scope, bitset);
  }

  fiber_control* self = c->current();
  futex_ring_wait w;
  w.fiber = self;
  w.ring = ring;
  if (resume == futex_resume::parking_carrier) w.home = c;
  w.word = word;
  w.scope = scope;
  w.bitset = bitset;
  const bool timed = !d.is_never();
  if (timed) w.when = monotonic_timespec(d);
  w.pending.store(timed ? 2 : 1, std::memory_order_relaxed);
  // The kernel orders the submission before its completions; tell
  // ThreadSanitizer, which cannot see that (the reaper acquires in
  // run_completions before it touches the record).
  tsan_release(&w.on_wait);
  if (timed) tsan_release(&w.on_timeout);
  ring->submit(timed ? 2 : 1, [&](io_uring_sqe** sqe) {
    io_uring_sqe* wait = sqe[0];
    std::memset(wait, 0, sizeof *wait);
    wait->opcode = kOpFutexWait;
    wait->fd = static_cast<int32_t>(kFutex2SizeU32 | (scope == futex_scope::process_private ? kFutex2Private : 0));
    wait->addr = reinterpret_cast<uint64_t>(word);
    wait->addr2 = expected;
    wait->addr3 = bitset;
    io_uring_sqe_set_data(wait, &w.on_wait);
    if (timed) {
      wait->flags |= IOSQE_IO_LINK;
      io_uring_prep_link_timeout(sqe[1], &w.when, IORING_TIMEOUT_ABS);
      io_uring_sqe_set_data(sqe[1], &w.on_timeout);
    }
  });
  self->reason.store(reason, std::memory_order_relaxed);
  self->parked_at_ms.store(c->clock_ms() | (timed ? kParkedWithDeadline : 0), std::memory_order_relaxed);
  self->state.store(fiber_state::parked, std::memory_order_relaxed);
  switch_action a{&self->ctx, switch_action::publish_parked, self, nullptr};
  a.handshake = &w.handshake;
  a.resume_here = w.home != nullptr;
  // A bound resumption goes through the scheduler loop under TSan, as for
  // the intercepted calls (kSanitizerSeesOnlyTheLoop).
  c->switch_away(self, &a, /*via_scheduler=*/w.home != nullptr);
  if (w.listed) ring->untrack_woken(&w);  // set before the handshake that resumed us

  if (w.res == 0) return futex_wait_result::woken;  // it consumed a wake, even if the timeout also fired
  if (w.res == -EAGAIN) return futex_wait_result::value_changed;
  if (w.res == -ECANCELED && timed) return futex_wait_result::timed_out;
  return futex_wait_result::woken;  // anything else: spurious, the caller re-checks
}

void futex_ring::track_woken(futex_ring_wait* w) {
  woken_lock_.lock();
  w->listed = true;
  w->prev = nullptr;
  w->next = woken_bound_;
  if (woken_bound_ != nullptr) woken_bound_->prev = w;
  woken_bound_ = w;
  // Under the lock: a monitor that marked the carrier blocked before it
  // scanned the list either finds this wait there or is seen here.
  if (w->home->blocked.load(std::memory_order_relaxed)) pass_on(w);
  woken_lock_.unlock();
}

void futex_ring::untrack_woken(futex_ring_wait* w) {
  woken_lock_.lock();
  if (w->prev != nullptr) w->prev->next = w->next; else woken_bound_ = w->next;
  if (w->next != nullptr) w->next->prev = w->prev;
  w->listed = false;
  woken_lock_.unlock();
}

void futex_ring::pass_on(futex_ring_wait* w) {
  if (w->passed_on) return;
  w->passed_on = true;
  pass_wake_on(w->word, w->scope, w->bitset);
}

void pass_wake_on(const std::atomic<uint32_t>* word, futex_scope scope, uint32_t bitset) {
  if (futex_wake(word, 1, scope, bitset) == 0 && bitset != ~0u) futex_wake(word, 1, scope);
}

void futex_ring::pass_on_wakes_stuck_on(const carrier* c) {
  woken_lock_.lock();
  for (futex_ring_wait* w = woken_bound_; w != nullptr; w = w->next) {
    if (w->home == c) pass_on(w);
  }
  woken_lock_.unlock();
}

long futex_syscall(const void* word, int op, uint32_t val, const void* timeout, uint32_t val3) noexcept {
  return libc::syscall(static_cast<long>(SYS_futex), word, static_cast<long>(op), static_cast<unsigned long>(val),
                      timeout, static_cast<void*>(nullptr), static_cast<unsigned long>(val3));
}

int futex_wake(const std::atomic<uint32_t>* word, int n, futex_scope scope, uint32_t bitset) {
  const int from_table = futex_table_wake(word, n, scope, bitset);
  if (from_table >= n) return from_table;
  n -= from_table;
  int op = (bitset == ~0u ? FUTEX_WAKE : FUTEX_WAKE_BITSET) |
           (scope == futex_scope::process_private ? FUTEX_PRIVATE_FLAG : 0);
  long r = raw_futex(word, op, static_cast<uint32_t>(n), nullptr, bitset);
  return from_table + (r < 0 ? 0 : static_cast<int>(r));
}

}  // namespace bobbin::internal
