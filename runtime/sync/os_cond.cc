// bobbin's pthread condition variable (os_cond.h says for whom and why).
//
// The protocol. A condition variable is a FIFO of waiters under a spin lock,
// in bytes 8 to 32 of pthread_cond_t (os_cond.h says why not the first 8); each waiter lives on the stack of
// the fiber or thread that waits, and is bobbin's own parking record
// (bobbin/internal/park.h: a fiber parks, a plain thread or a pinned fiber
// sleeps on its thread's parker):
//   wait       links the waiter at the tail and releases the mutex, both
//              under the spin lock, so a signal issued by whoever takes the
//              mutex next finds the waiter; parks; then takes the mutex
//              again. The waiter is linked before the mutex is released,
//              which is why no wake-up is lost.
//   signal     claims the oldest waiter that can still be claimed (not
//              timed out, not cancelled) and wakes it: a waiter that was
//              waiting when signal was called. If that waiter is a fiber
//              bound to a carrier the pinning monitor has marked blocked,
//              the next one is woken too (and so on), so the condition goes
//              to a waiter that can run now. A woken fiber bound to a
//              carrier stays in a list of bound wakes until it runs; if the
//              monitor marks that carrier blocked meanwhile, its wake is
//              passed on the same way (pass_on_wakes_stuck_on).
//   broadcast  claims every waiter. Fibers are put in turn order, one
//              order per carrier they resume on, linked through
//              waiter::payload, and only the first of each is woken; each
//              woken fiber, once it holds the mutex again, wakes the next.
//              So the waiters contend for the mutex one (per carrier) at a
//              time, instead of all at once to find it taken (what the
//              kernel's FUTEX_CMP_REQUEUE achieved for glibc before 2.25;
//              io_uring futex waits and threads' waits would both have to
//              be requeued, and the mutex would have to be glibc's). A
//              claimed fiber cannot time out or be cancelled: it already
//              counts as woken, and waits for its turn. Waiters that block
//              a thread are woken at once (see `turns`).
//   timeout,   (timed waits only; a cancellation only of a wait under way
//   cancel     when it comes) the waiter's state moves from waiting to
//              timed_out or canceled on the same compare-and-swap a
//              signal claims it with, so a wake is either consumed (the
//              waiter returns 0) or never happened: none is lost. The
//              waiter unlinks itself and takes the mutex again.
// Memory: after a waiter has been claimed it never touches the condition
// variable again (broadcast's turn orders live in the waiters), so a woken
// thread may destroy it at once. A waiter that timed out or was cancelled
// stays linked until it unlinks itself under the spin lock (signal and
// broadcast skip it), and destroy waits for those.
//
// Where a woken fiber resumes: on the carrier it parked on (wake_token::
// home), for the reason every intercepted call does (runtime/intercept/
// fiber_calls.h), unless runtime_options::os_lock_waiters_migrate.
//
// The mutex is released and taken with the interposers' pthread_mutex_unlock
// and pthread_mutex_lock (os_cond.h: mutex_calls): on a fiber that is
// runtime/sync/os_mutex.cc, so the fiber owns it again on return; on a
// thread it is glibc's call. glibc's own wait leaves __nusers unchanged
// while it waits; this one lowers and raises it, so pthread_mutex_destroy
// during a wait answers 0 instead of EBUSY.
#include "runtime/sync/os_cond.h"

#include <sched.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "runtime/fiber/cancel.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/park/thread_parker.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"

namespace bobbin::internal::os_cond {

namespace {

// Called after the waiter parked, in functions of their own: the compiler
// must not reuse a thread-local's address computed before the park (the
// fiber may come back on another carrier with os_lock_waiters_migrate).
__attribute__((noinline)) int relock(const mutex_calls& calls, pthread_mutex_t* m) noexcept {
  return calls.lock(m);
}

// Lets a waiter that is leaving after a timeout run, then returns.
__attribute__((noinline)) void let_leavers_run() noexcept {
  if (carrier* c = current_fiber_carrier()) {
    c->yield_bound(c->current());
  } else {
    sched_yield();
  }
}

// Claims the oldest waiter that can still be claimed and unlinks it. One
// that timed out or was cancelled stays linked: it unlinks itself, and
// destroy() must see it until then.
waiter* claim_oldest(waiter_list& list) {
  for (waiter* w = list.front(); w != nullptr; w = w->next) {
    if (w->claim()) {
      list.remove(w);
      return w;
    }
  }
  return nullptr;
}

// A waiter of a condition variable, with what signal needs to pass its
// wake on if the woken fiber's carrier blocks before the fiber runs.
struct cond_waiter : waiter {
  pthread_cond_t* cv = nullptr;
  // In its bound_wake_stripe's list. Set and cleared under the stripe's
  // lock; read without it first by the woken fiber, which then skips the
  // lock when it was never listed or already taken off.
  std::atomic<bool> listed{false};
  cond_waiter* prev_wake = nullptr;
  cond_waiter* next_wake = nullptr;
};

// Fibers a signal woke that must resume on one carrier and have not run
// yet, in all condition variables and runtimes: the pinning monitor looks
// here when it marks a carrier blocked. Entries live from a signal to the
// woken fiber's next run, so the lists are short. Striped by home carrier,
// so that signals to fibers on different carriers take different locks; not
// one list per runtime, because pthread_cond_destroy, from any thread and
// knowing no runtime, must take its condition variable's entries out.
struct alignas(64) bound_wake_stripe {
  spin_lock lock;
  // Written under `lock` (release); read without it by destroy, to skip
  // an empty stripe.
  std::atomic<cond_waiter*> head{nullptr};
};
constexpr unsigned kStripes = 16;
bound_wake_stripe stripes[kStripes];

// Monitors pass wakes on one at a time; `passing` is the condition variable
// being signalled meanwhile (set under its stripe's lock, while the entry
// is taken off), which destroy waits for.
spin_lock pass_on_lock;
std::atomic<pthread_cond_t*> passing{nullptr};

bound_wake_stripe& stripe_of(const void* home) {
  return stripes[static_cast<const carrier*>(home)->index() % kStripes];
}

void link_bound_wake(bound_wake_stripe& st, cond_waiter* w) {
  cond_waiter* head = st.head.load(std::memory_order_relaxed);
  w->prev_wake = nullptr;
  w->next_wake = head;
  if (head != nullptr) head->prev_wake = w;
  st.head.store(w, std::memory_order_release);
  w->listed.store(true, std::memory_order_relaxed);
}

// The release store of `listed` is the last access to `w`: a woken fiber
// that reads it false (acquire) may leave, and its frame with it.
void unlink_bound_wake(bound_wake_stripe& st, cond_waiter* w) {
  if (w->prev_wake != nullptr) {
    w->prev_wake->next_wake = w->next_wake;
  } else {
    st.head.store(w->next_wake, std::memory_order_release);
  }
  if (w->next_wake != nullptr) w->next_wake->prev_wake = w->prev_wake;
  w->prev_wake = w->next_wake = nullptr;
  w->listed.store(false, std::memory_order_release);
}

// A broadcast's waiters, claimed, in the order they came: fibers bound to
// one carrier form one turn order (waiter::payload links it); each is
// woken by the one before it once that one holds the mutex again. A turn
// order per carrier, not one for all: a carrier stuck in a pinned call
// then delays only its own fibers, which could not run anyway. Waiters
// that block their thread (plain threads, pinned fibers) are woken at once:
// a thread kept waiting for its turn would hold its thread, for a pinned
// fiber a carrier, the whole time.
class turns {
 public:
  void add(waiter* w) {
    if (w->token.is_fiber) {
      for (order& o : orders_) {
        if (o.first == nullptr) o = {w->token.home, w, w};
        if (o.home == w->token.home) {
          if (o.last != w) o.last->payload = w;
          o.last = w;
          return;
        }
      }
    }
    // A thread, or more carriers than kOrders: at once.
    w->payload = now_;
    now_ = w;
  }
  // After the condition variable's lock is released.
  void wake_first_of_each() {
    for (order& o : orders_) {
      if (o.first != nullptr) notify(o.first);
    }
    while (waiter* w = now_) {
      now_ = static_cast<waiter*>(w->payload);
      w->payload = nullptr;  // not a turn to pass on
      notify(w);
    }
  }

 private:
  static constexpr int kOrders = 16;
  struct order {
    void* home = nullptr;
    waiter* first = nullptr;
    waiter* last = nullptr;
  };
  order orders_[kOrders];
  waiter* now_ = nullptr;
};

}  // namespace

void init(pthread_cond_t* cv, clockid_t clock) noexcept {
  std::memset(static_cast<void*>(cv), 0, sizeof *cv);  // the first word too: init is the one writer
  if (clock == CLOCK_MONOTONIC) {
    __atomic_store_n(reinterpret_cast<uint32_t*>(reinterpret_cast<char*>(cv) + kFlagsOffset), kMonotonicFlag,
                     __ATOMIC_RELAXED);
  }
}

int destroy(pthread_cond_t* cv) noexcept {
  state* s = state_of(cv);
  // Woken fibers that have not run yet: nobody passes their wake on after
  // this. A signal that listed one happened before this call (the caller's
  // own synchronisation), so a stripe read empty holds none of ours, and a
  // pass-on that emptied it set `passing` first. (A pass-on's own signal
  // could list a waiter of this cv in a stripe already scanned only if a
  // waiter was still blocked here, which POSIX leaves undefined.)
  for (bound_wake_stripe& st : stripes) {
    if (st.head.load(std::memory_order_acquire) == nullptr) continue;
    std::lock_guard l(st.lock);
    for (cond_waiter* w = st.head.load(std::memory_order_relaxed); w != nullptr;) {
      cond_waiter* after = w->next_wake;
      if (w->cv == cv) unlink_bound_wake(st, w);
      w = after;
    }
  }
  // ... and a wake the monitor took off before is passed on by now.
  while (passing.load(std::memory_order_acquire) == cv) sched_yield();
  for (;;) {
    bool waiting = false;
    bool leaving = false;
    s->lock.lock();
    for (waiter* w = s->waiters.front(); w != nullptr; w = w->next) {
      (w->state.load(std::memory_order_acquire) == wait_state::waiting ? waiting : leaving) = true;
    }
    s->lock.unlock();
    if (waiting) return EBUSY;
    if (!leaving) return 0;
    let_leavers_run();
  }
}

int wait(pthread_cond_t* cv, pthread_mutex_t* m, deadline d, bool stoppable, const mutex_calls& calls) noexcept {
  state* s = state_of(cv);
  cond_waiter w;
  w.cv = cv;
  w.prepare();
  if (w.token.is_fiber && !current_carrier()->rt()->options().intercept_blocking_calls) {
    // Interception is off for this fiber's runtime: the wait blocks the
    // carrier, as glibc's would (the mutex calls are glibc's too).
    w.token = wake_token{thread_parker::current(), /*is_fiber=*/false};
  }
  if (w.token.is_fiber) {
    carrier* c = current_carrier();
    if (!c->rt()->options().os_lock_waiters_migrate) w.token.home = c;
    // Only a wait under way is cut short by a cancellation, not one begun
    // after it: libstdc++ decides wait_for's result from the clock, not from
    // ours, so it would call again at once, and a wait that returned at once
    // every time would spin until the deadline.
    if (cancel_requested(c->current())) stoppable = false;
    c->rt()->os_condition_parks.fetch_add(1, std::memory_order_relaxed);
  }
  s->lock.lock();
  s->waiters.push_back(&w);
  // Lock order: the condition variable's spin lock, then the mutex's word.
  // Unlocking never waits (on a fiber it never parks).
  const int unlocked = calls.unlock(m);
  if (unlocked != 0) {
    s->waiters.remove(&w);  // nobody can have claimed it: we hold the lock
    s->lock.unlock();
    return unlocked;
  }
  const wait_state result = park(w, s->lock, s->waiters, d, wait_reason::os_condition_wait, stoppable);
  // *cv may be destroyed from here on (see above): only `w` is ours.
  if (w.listed.load(std::memory_order_acquire)) {
    bound_wake_stripe& st = stripe_of(w.token.home);
    std::lock_guard l(st.lock);
    if (w.listed.load(std::memory_order_relaxed)) unlink_bound_wake(st, &w);
  }
  auto* next_in_turn = static_cast<waiter*>(w.payload);
  const int relocked = relock(calls, m);
  if (next_in_turn != nullptr) notify(next_in_turn);
  if (relocked != 0) return relocked;
  return result == wait_state::notified ? 0 : ETIMEDOUT;
}

// Whether `w` is a fiber that must resume on a carrier the pinning monitor
// has marked blocked: it cannot run until that carrier's pinned call ends.
static bool resumes_on_blocked_carrier(const waiter* w) {
  return w->token.is_fiber && w->token.home != nullptr &&
         static_cast<const carrier*>(w->token.home)->blocked.load(std::memory_order_relaxed);
}

// Wakes the oldest waiter that can be claimed and, while the one claimed
// cannot run yet (its carrier is stuck), the next one too, so that the
// condition is seen by a waiter that can run now; a stuck one returns
// later, as from a spurious wake-up (POSIX allows them; every caller
// re-checks). A woken fiber bound to a carrier that is not stuck is listed
// in its bound_wake_stripe until it runs.
static void wake_one(pthread_cond_t* cv) noexcept {
  state* s = state_of(cv);
  for (;;) {
    waiter* woken = nullptr;
    s->lock.lock();
    while (waiter* w = claim_oldest(s->waiters)) {
      w->payload = woken;
      woken = w;
      if (!resumes_on_blocked_carrier(w)) break;
    }
    s->lock.unlock();
    if (woken == nullptr) return;
    // The last one claimed is the one expected to run. It is listed before
    // it is woken, so that it finds itself listed when it runs, and under
    // the stripe's lock: a monitor that marked its carrier blocked before
    // it looked at the list either finds the entry or is seen here.
    auto* runner = static_cast<cond_waiter*>(woken);
    bool runner_stuck = false;
    if (runner->token.is_fiber && runner->token.home != nullptr) {
      bound_wake_stripe& st = stripe_of(runner->token.home);
      std::lock_guard l(st.lock);
      if (resumes_on_blocked_carrier(runner)) {
        runner_stuck = true;
      } else {
        link_bound_wake(st, runner);
      }
    }
    while (waiter* w = woken) {
      woken = static_cast<waiter*>(w->payload);
      w->payload = nullptr;
      notify(w);
    }
    if (!runner_stuck) return;
  }
}

int signal(pthread_cond_t* cv) noexcept {
  wake_one(cv);
  return 0;
}

void pass_on_wakes_stuck_on(const carrier* c) noexcept {
  bound_wake_stripe& st = stripe_of(c);
  std::lock_guard one_at_a_time(pass_on_lock);
  for (;;) {
    pthread_cond_t* cv = nullptr;
    {
      std::lock_guard l(st.lock);
      for (cond_waiter* w = st.head.load(std::memory_order_relaxed); w != nullptr; w = w->next_wake) {
        if (w->token.home == c) {
          // Taken off: the fiber no longer needs to be found (it unlinks
          // nothing when it runs), and the list stays short. Its frame may
          // be gone as soon as it is unlinked (its carrier may be back
          // already), so `cv` is read first. `passing` is set before the
          // unlink too: destroy() may skip this stripe once it reads the
          // head the unlink leaves (release), and then must see `passing`.
          cv = w->cv;
          passing.store(cv, std::memory_order_relaxed);
          unlink_bound_wake(st, w);
          break;
        }
      }
    }
    if (cv == nullptr) return;
    wake_one(cv);
    passing.store(nullptr, std::memory_order_release);
  }
}

int broadcast(pthread_cond_t* cv) noexcept {
  state* s = state_of(cv);
  turns t;
  s->lock.lock();
  for (waiter* w = s->waiters.front(); w != nullptr;) {
    waiter* after = w->next;
    if (w->claim()) {
      s->waiters.remove(w);
      t.add(w);
    }
    w = after;
  }
  s->lock.unlock();
  t.wake_first_of_each();
  return 0;
}

}  // namespace bobbin::internal::os_cond
