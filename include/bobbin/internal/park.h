// bobbin/internal/park.h -- not part of the bobbin API.
//
// The one parking primitive every bobbin sync primitive is built on, exposed
// only because channel<T> is a template. A `waiter` lives on the stack of the
// fiber (or plain thread) that waits; a primitive links it into its
// `waiter_list` under its spin_lock and calls park(). A notifier pops it under
// the same lock, claims it, and calls wake() after releasing the lock.
//
// Protocol (every transition of waiter::state):
//   waiting  -> claimed    by claim(), called by a notifier holding the lock.
//                          The waiter cannot leave while claimed, so the
//                          notifier may now hand over a payload. A plain
//                          thread spins briefly while claimed, then yields
//                          its core between looks (runtime/park/park.cc),
//                          so a waiter is kept claimed for long only if it
//                          is a fiber (an OS condition variable's
//                          broadcast, runtime/sync/os_cond.cc).
//   claimed  -> notified   by notify(), called AFTER the notifier released
//                          the lock: a plain thread waiter may return the
//                          moment it sees `notified` and destroy what the
//                          lock lives in (a mutex its new owner frees, an
//                          offload task on its stack), or exit, taking its
//                          thread-local parker with it. So a fiber's state
//                          is stored before its wake (it cannot run before
//                          the wake), a thread's after its unpark (it waits
//                          while claimed), and nothing of the primitive, the
//                          waiter or its thread is touched afterwards.
//   waiting  -> timed_out  by the deadline (timer completion or the thread's
//                          timed futex wait); the waiter then unlinks itself.
//   waiting  -> canceled   by a cancellation of the waiting fiber
//                          (runtime/fiber/cancel.h), in a cancellable wait;
//                          the waiter then unlinks itself.
// claim(), the deadline and a cancellation race on one compare-and-swap from
// `waiting`, so a waiter is woken exactly once.
#ifndef BOBBIN_INTERNAL_PARK_H_
#define BOBBIN_INTERNAL_PARK_H_

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/spin_lock.h"
#include "bobbin/wait_reason.h"

namespace bobbin::internal {

enum class wait_state : uint32_t { waiting = 0, claimed = 1, notified = 2, timed_out = 3, canceled = 4 };

// Who to wake: a fiber control block or a plain thread's parker.
struct wake_token {
  void* target = nullptr;
  bool is_fiber = false;
  // A fiber that must resume on the carrier it parked on (a wait inside an
  // intercepted libc call, whose caller may keep a thread-local's address
  // across the call): that carrier, set by the primitive after prepare().
  // Null: any carrier.
  void* home = nullptr;
};

struct waiter {
  waiter* next = nullptr;
  waiter* prev = nullptr;
  bool linked = false;
  std::atomic<wait_state> state{wait_state::waiting};
  wake_token token;
  void* payload = nullptr;  // primitive-specific hand-off slot (channel value)
  uintptr_t aux = 0;        // primitive-specific (channel: operation outcome)

  // Fills `token` for the calling fiber or thread. Called before linking.
  BOBBIN_API void prepare() noexcept;

  // Claims the waiter for a notifier. False if its deadline won the race.
  bool claim() noexcept {
    wait_state expected = wait_state::waiting;
    return state.compare_exchange_strong(expected, wait_state::claimed, std::memory_order_acq_rel);
  }
  // Publishes the hand-over; returns what to pass to wake(). Call with the
  // primitive's lock released.
  wake_token finish() noexcept {
    wake_token t = token;
    state.store(wait_state::notified, std::memory_order_release);
    return t;
  }
};

// An intrusive FIFO of waiters. Not thread-safe: guard it with a spin_lock.
class waiter_list {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  waiter* front() const noexcept { return head_; }
  void push_back(waiter* w) noexcept {
    w->next = nullptr;
    w->prev = tail_;
    if (tail_) tail_->next = w; else head_ = w;
    tail_ = w;
    w->linked = true;
  }
  // For a waiter that was woken and lost the race (bobbin::mutex): it goes
  // back to the head, keeping its place in line.
  void push_front(waiter* w) noexcept {
    w->prev = nullptr;
    w->next = head_;
    if (head_) head_->prev = w; else tail_ = w;
    head_ = w;
    w->linked = true;
  }
  waiter* pop_front() noexcept {
    waiter* w = head_;
    if (w) remove(w);
    return w;
  }
  void remove(waiter* w) noexcept {
    if (!w->linked) return;
    if (w->prev) w->prev->next = w->next; else head_ = w->next;
    if (w->next) w->next->prev = w->prev; else tail_ = w->prev;
    w->next = w->prev = nullptr;
    w->linked = false;
  }

 private:
  waiter* head_ = nullptr;
  waiter* tail_ = nullptr;
};

// Blocks the caller until `w` is claimed by a notifier or `d` passes, or,
// if `cancellable`, the calling fiber is cancelled (then it returns
// `canceled` at once if the cancellation came first).
// `lock` must be held on entry and `w` linked (prepared) in a list it guards;
// the lock is released once the caller is safely parked and is NOT held on
// return. On timeout or cancellation the waiter is unlinked from `list`
// before returning. On a fiber this parks the fiber; on a plain thread (or a
// pinned fiber, which is not interrupted) it blocks the thread.
BOBBIN_API wait_state park(waiter& w, spin_lock& lock, waiter_list& list, deadline d, wait_reason reason,
                           bool cancellable = true);

// Wakes a claimed waiter's fiber or thread. Call after releasing the lock.
BOBBIN_API void wake(wake_token t) noexcept;

// Pops waiters until one can be claimed; returns it (claimed: the caller
// must finish() it and wake() the token), or nullptr if none could be.
inline waiter* pop_and_claim(waiter_list& list) noexcept {
  while (waiter* w = list.pop_front()) {
    if (w->claim()) return w;
  }
  return nullptr;
}

// Finishes a claimed waiter and wakes it. Call after releasing the lock.
inline void notify(waiter* w) noexcept {
  if (w->token.is_fiber) {
    wake(w->finish());
    return;
  }
  const wake_token t = w->token;
  wake(t);
  w->state.store(wait_state::notified, std::memory_order_release);
}

// Claims every waiter in `list` with `aux` as its outcome and appends it to
// `out`; notify() each after releasing the lock.
inline void claim_all(waiter_list& list, uintptr_t aux, std::vector<waiter*>& out) {
  while (waiter* w = pop_and_claim(list)) {
    w->aux = aux;
    out.push_back(w);
  }
}
inline void notify_all(const std::vector<waiter*>& ws) noexcept {
  for (waiter* w : ws) notify(w);
}

// Called by a primitive's destructor, with its lock held, when fibers or
// threads may still wait in `lists`: writes one report to stderr naming each
// of them (fiber id, name, wait reason, spawn site) and what happens to them
// (`outcome`), instead of leaving them to hang unseen. Waiters whose
// deadline has just passed are leaving and are not named. With
// `strand_fibers`, the fibers among them are claimed and never woken: they
// stay parked for good, and neither a deadline nor a notifier can resume
// them into the freed object (for primitives that cannot give a waiter a
// truthful answer). Otherwise the caller claims and wakes them itself.
BOBBIN_API void report_destroyed_with_waiters(const char* primitive, const void* object,
                                              std::initializer_list<waiter_list*> lists, const char* outcome,
                                              bool strand_fibers) noexcept;

}  // namespace bobbin::internal

#endif  // BOBBIN_INTERNAL_PARK_H_
