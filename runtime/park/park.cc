// The parking primitive behind every bobbin sync primitive (see
// bobbin/internal/park.h for the waiter protocol).
//
// Timed waits on a fiber: the deadline is an IORING_OP_TIMEOUT on the ring
// of the carrier where the fiber parks. The fiber may be woken by a notifier
// and resume on another carrier before the timeout fires, so the timeout's
// bookkeeping (timed_wait_timer) lives on the heap with two references, one
// for the fiber and one for the ring's completion, and either side claims it
// once:
//   timer fires first:    it claims, tries waiting->timed_out on the waiter,
//                         wakes the fiber if that won, then marks itself done.
//   notifier wins first:  the resumed fiber claims the timer, so the timer's
//                         completion will not touch the (gone) waiter, and
//                         asks the timer's ring to remove the timeout.
//   both at once:         the fiber sees the timer claimed and waits for it
//                         to mark itself done before its waiter leaves scope.
#include "bobbin/internal/park.h"

#include <linux/time_types.h>
#include <sched.h>

#include "bobbin/pinning.h"
#include "runtime/fiber/cancel.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/inspect/deadlock_watch.h"
#include "runtime/park/park_timer.h"
#include "runtime/park/thread_parker.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"
#include "runtime/util/check.h"
#include "runtime/util/deadline_time.h"

namespace bobbin::internal {

namespace {

// How many times a plain thread that finds itself claimed looks again
// before it yields its core (a few microseconds: what a notifier's futex
// wake takes when it is not preempted).
constexpr int kClaimedSpins = 200;

}  // namespace

struct timed_wait_timer {
  completion on_fire{&fired};
  completion on_removed{&removed};
  std::atomic<int> refs{3};  // the fiber, the timeout's completion, the removal's
  std::atomic<bool> claimed{false};
  std::atomic<bool> done{false};
  waiter* w = nullptr;
  __kernel_timespec when{};
  carrier* owner = nullptr;

  void unref() {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  static void fired(completion* c, int /*res*/, uint32_t) {
    auto* t = reinterpret_cast<timed_wait_timer*>(reinterpret_cast<char*>(c) - offsetof(timed_wait_timer, on_fire));
    if (!t->claimed.exchange(true, std::memory_order_acq_rel)) {
      waiter* w = t->w;
      wake_token token = w->token;
      wait_state expected = wait_state::waiting;
      bool won = w->state.compare_exchange_strong(expected, wait_state::timed_out, std::memory_order_acq_rel);
      t->done.store(true, std::memory_order_release);
      if (won) wake(token);
    }
    t->unref();
  }
  static void removed(completion* c, int, uint32_t) {
    auto* t =
        reinterpret_cast<timed_wait_timer*>(reinterpret_cast<char*>(c) - offsetof(timed_wait_timer, on_removed));
    t->unref();
  }
};

namespace {

// Lets go of a timer whose wait ended otherwise: if it has not fired, its
// ring removes the timeout; if it is firing, waits until it is done with
// the waiter (which is about to leave scope).
void release_unfired(timed_wait_timer* timer) {
  if (!timer->claimed.exchange(true, std::memory_order_acq_rel)) {
    // The timeout is still armed: have its ring remove it.
    timer->owner->post(
        {remote_request::remove_timeout, -1, reinterpret_cast<uint64_t>(&timer->on_fire), &timer->on_removed});
    timer->unref();  // our reference; the two completions hold theirs
    return;
  }
  while (!timer->done.load(std::memory_order_acquire)) __builtin_ia32_pause();
  timer->unref();  // ours
  timer->unref();  // no removal will be posted
}

// Arms `d` for `w` on `c` with `made` (or a timer made here: null). Out of
// line, so that the untimed park does not carry its cleanup.
__attribute__((noinline)) timed_wait_timer* arm_timer(carrier* c, waiter& w, deadline d, timed_wait_timer* made) {
  // With the caller's lock held: an allocation, or an arm that submits a
  // full queue, that waits on an OS lock blocks the carrier (pinned) rather
  // than parking this fiber, which would leave every other taker of the
  // lock spinning until it ran again.
  pinned_scope no_unmount("arming a bobbin wait's deadline");
  timed_wait_timer* timer = made != nullptr ? made : new timed_wait_timer;
  timer->w = &w;
  timer->owner = c;
  timer->when = monotonic_timespec(d);
  c->io().arm_timer(timer->when, &timer->on_fire);
  return timer;
}

// `made`: the timer, made by the caller before it took `lock`
// (park_timer.h), or null to make one here when `d` is not never; set to
// null when armed (else the caller frees it, after `lock` is let go).
// Inlined into each park(): out of line, its call and the spills around
// the switch cost bobbin_condvar_ping_pong 15-21% (perf/RESULTS.md,
// the comparison against dd03734).
__attribute__((always_inline)) inline wait_state park_fiber(carrier* c, fiber_control* self, waiter& w,
                                                            spin_lock& lock, deadline d, wait_reason reason,
                                                            bool cancellable, timed_wait_timer*& made) {
  // Published before the timer is armed, so that nothing but this fiber
  // (which holds `lock`, as every notifier must) can touch `w` if a
  // cancellation came first.
  if (cancellable && !publish_cancel_hook(self, {cancel_hook::wait_list, &w, &lock, nullptr, nullptr})) {
    w.state.store(wait_state::canceled, std::memory_order_relaxed);
    return wait_state::canceled;  // with `lock` held, as after a timeout
  }
  timed_wait_timer* timer = nullptr;
  if (!d.is_never()) {
    timer = arm_timer(c, w, d, made);
    made = nullptr;
  }
  self->reason.store(reason, std::memory_order_relaxed);
  self->parked_at_ms.store(c->clock_ms() | (d.is_never() ? 0 : kParkedWithDeadline), std::memory_order_relaxed);
  self->parked_waiter.store(&w, std::memory_order_relaxed);
  self->state.store(fiber_state::parked, std::memory_order_relaxed);
  switch_action a{&self->ctx, switch_action::unlock, self, &lock};
  // A fiber bound to this carrier parks as inside any intercepted call
  // (kSanitizerSeesOnlyTheLoop). (No sanitizer interceptor is on the stack
  // of a condition variable wait here: behind TSan's, they are glibc's.)
  c->switch_away(self, &a, /*via_scheduler=*/w.token.home != nullptr);
  self->parked_waiter.store(nullptr, std::memory_order_relaxed);
  if (cancellable) withdraw_cancel_hook(self);

  wait_state result = w.state.load(std::memory_order_acquire);
  if (timer != nullptr) {
    if (result == wait_state::notified || result == wait_state::canceled) {
      release_unfired(timer);
    } else {
      timer->unref();  // ours
      timer->unref();  // no removal will be posted
    }
  }
  if (result == wait_state::timed_out || result == wait_state::canceled) {
    lock.lock();
    // list.remove() is done by the caller-supplied list below.
  }
  return result;
}

}  // namespace

void waiter::prepare() noexcept {
  // A pinned fiber waits like a plain thread: it blocks its carrier.
  carrier* c = current_fiber_carrier();
  if (c != nullptr) {
    token.target = c->current();
    token.is_fiber = true;
  } else {
    token.target = thread_parker::current();
    token.is_fiber = false;
  }
  state.store(wait_state::waiting, std::memory_order_relaxed);
}

park_timer::park_timer(carrier* c, deadline d) {
  if (d.is_never()) return;
  // Pinned: an allocator whose lock is contended must not make this wait
  // on that lock park in the table too, which would make a timer again.
  pinned_scope no_unmount("making a bobbin wait's deadline timer");
  timer_ = new timed_wait_timer;
  // Room for the timeout's SQE, so that arming it under the caller's lock
  // cannot submit a full queue (whose operations allocate).
  c->io().reserve_sqes(1);
}
park_timer::~park_timer() { delete timer_; }

namespace {

// park() for a fiber: `made` is the timer park_timer made, or null.
__attribute__((always_inline)) inline wait_state park_on_fiber(waiter& w, spin_lock& lock, waiter_list& list,
                                                               deadline d, wait_reason reason, bool cancellable,
                                                               timed_wait_timer* made) {
  carrier* c = current_carrier();
  auto* self = static_cast<fiber_control*>(w.token.target);
  BOBBIN_CHECK(c != nullptr && c->current() == self, "bobbin: waiter prepared on another fiber");
  wait_state s = park_fiber(c, self, w, lock, d, reason, cancellable, made);
  if (s == wait_state::timed_out || s == wait_state::canceled) {  // the lock is held again
    list.remove(&w);
    lock.unlock();
  }
  delete made;  // not armed (cancelled first): freed with no lock held
  return s;
}

wait_state park_thread(waiter& w, spin_lock& lock, waiter_list& list, deadline d, wait_reason reason);

}  // namespace

wait_state park(waiter& w, spin_lock& lock, waiter_list& list, deadline d, wait_reason reason, bool cancellable) {
  if (w.token.is_fiber) return park_on_fiber(w, lock, list, d, reason, cancellable, nullptr);
  return park_thread(w, lock, list, d, reason);
}

wait_state park(waiter& w, spin_lock& lock, waiter_list& list, deadline d, wait_reason reason, bool cancellable,
                park_timer& made) {
  timed_wait_timer* timer = made.timer_;
  made.timer_ = nullptr;
  // Either way an unused timer is freed with `lock` let go.
  if (w.token.is_fiber) return park_on_fiber(w, lock, list, d, reason, cancellable, timer);
  const wait_state s = park_thread(w, lock, list, d, reason);
  delete timer;  // a plain thread's wait needs none
  return s;
}

namespace {

wait_state park_thread(waiter& w, spin_lock& lock, waiter_list& list, deadline d, wait_reason reason) {
  // A plain thread (or a pinned fiber): release the lock, then sleep on this
  // thread's parker.
  lock.unlock();
  pinned_block_marker marker(reason);
  // A plain thread that can time out may then wake a fiber: while one
  // waits, the deadlock report stays quiet (runtime/inspect/deadlock_watch.h).
  // Not for OS condition variables, which every thread of the program uses
  // (bobbin's own blocking pool idles in one for seconds): the report would
  // never speak.
  struct timed_wait_count {
    bool timed;
    explicit timed_wait_count(bool t) : timed(t) {
      if (timed) g_timed_plain_thread_waits.fetch_add(1, std::memory_order_acq_rel);
    }
    ~timed_wait_count() {
      if (timed) g_timed_plain_thread_waits.fetch_sub(1, std::memory_order_acq_rel);
    }
  } counted(!d.is_never() && reason != wait_reason::os_condition_wait);
  auto* parker = static_cast<thread_parker*>(w.token.target);
  for (;;) {
    wait_state s = w.state.load(std::memory_order_acquire);
    if (s == wait_state::notified || s == wait_state::timed_out) return s;
    if (s == wait_state::claimed) {
      // A notifier is mid-hand-over: a few instructions. Never park:
      // notify() unparks a thread before it stores `notified`, so a park
      // here could consume that permit and sleep for good. Spin briefly,
      // then give the core away between looks: the kernel may have
      // preempted the notifier (a futex wake is where it often does), and
      // a thread that only spun kept it waiting for a whole time slice
      // (README "Condition variables" has what that cost).
      for (int i = 0; i < kClaimedSpins; i++) {
        __builtin_ia32_pause();
        if (w.state.load(std::memory_order_acquire) != wait_state::claimed) break;
      }
      if (w.state.load(std::memory_order_acquire) == wait_state::claimed) sched_yield();
      continue;
    }
    if (d.expired()) {
      wait_state expected = wait_state::waiting;
      if (w.state.compare_exchange_strong(expected, wait_state::timed_out, std::memory_order_acq_rel)) {
        lock.lock();
        list.remove(&w);
        lock.unlock();
        return wait_state::timed_out;
      }
      continue;  // a notifier claimed it just now
    }
    parker->park(d);
  }
}

}  // namespace

void wake(wake_token t) noexcept {
  if (t.is_fiber) {
    auto* f = static_cast<fiber_control*>(t.target);
    if (t.home != nullptr) {
      // Its switch off that carrier is complete: the notifier claimed it
      // after `lock` was released, which the switch does last.
      auto* home = static_cast<carrier*>(t.home);
      if (current_carrier() == home) {
        home->push_bound(f);
      } else {
        home->post({remote_request::resume_bound, -1, reinterpret_cast<uint64_t>(f), nullptr});
      }
      return;
    }
    f->rt->ready(f, /*next=*/true);
  } else {
    static_cast<thread_parker*>(t.target)->unpark();
  }
}

}  // namespace bobbin::internal
