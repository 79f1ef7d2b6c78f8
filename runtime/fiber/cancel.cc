// Cancelling a parked fiber (see runtime/fiber/cancel.h for the protocol).
#include "runtime/fiber/cancel.h"

#include <liburing.h>

#include "runtime/sched/carrier.h"

namespace bobbin::internal {

namespace {

// Takes the busy bit (only cancellers take it; the fiber only waits for it
// to clear). Returns the word as it was.
uint32_t take_hook(fiber_control* f, uint32_t also_set) noexcept {
  uint32_t cur = f->cancel_word.load(std::memory_order_relaxed);
  for (;;) {
    if (cur & kCancelHookBusy) {
      __builtin_ia32_pause();
      cur = f->cancel_word.load(std::memory_order_relaxed);
      continue;
    }
    if (f->cancel_word.compare_exchange_weak(cur, cur | kCancelHookBusy | also_set, std::memory_order_acq_rel,
                                             std::memory_order_relaxed)) {
      return cur;
    }
  }
}

void release_hook(fiber_control* f) noexcept {
  f->cancel_word.fetch_and(~kCancelHookBusy, std::memory_order_release);
}

// With the busy bit held (taken by the first request, `old` the word before
// it): interrupts the wait the hook describes, if any, and releases the bit.
void interrupt_wait(fiber_control* f, uint32_t old) noexcept {
  if ((old & kCancelHookSet) == 0) {
    release_hook(f);  // not parked: it sees the request at its next wait
    return;
  }
  const cancel_hook h = f->hook.load();
  if (h.kind == cancel_hook::ring_op) {
    f->refs.fetch_add(1, std::memory_order_relaxed);  // for the posted request; dropped by cancel_ring_op_here
    release_hook(f);
    h.ring->post({remote_request::cancel_fiber_op, -1, reinterpret_cast<uint64_t>(f), nullptr});
    return;
  }
  wait_state expected = wait_state::waiting;
  const bool won = h.w->state.compare_exchange_strong(expected, wait_state::canceled, std::memory_order_acq_rel);
  const wake_token token = h.w->token;
  release_hook(f);
  if (!won) return;  // a notifier or the deadline got there first
  // The fiber held `lock` from linking its waiter until it was off its
  // stack: once we have held it, it can be resumed. Nothing else can wake
  // it meanwhile (its waiter is no longer `waiting`), so `lock` is alive.
  h.lock->lock();
  h.lock->unlock();
  wake(token);
}

}  // namespace

void request_cancel(fiber_control* f) noexcept {
  if (cancel_requested(f)) return;
  const uint32_t old = take_hook(f, kCancelRequested);
  if ((old & kCancelRequested) != 0) {
    release_hook(f);  // someone else was first and does the rest
    return;
  }
  interrupt_wait(f, old);
  cancel_owned_scopes(f);
  // Sequentially consistent with get_stop_token's install: either it sees
  // the request, or this sees its source.
  if (std::stop_source* s = f->stop_source.load(std::memory_order_seq_cst)) s->request_stop();
}

std::stop_token stop_token_of(fiber_control* f) {
  std::stop_source* s = f->stop_source.load(std::memory_order_acquire);
  if (s == nullptr) {
    auto* made = new std::stop_source;
    if (f->stop_source.compare_exchange_strong(s, made, std::memory_order_seq_cst)) {
      s = made;
      if (cancel_requested(f)) s->request_stop();
    } else {
      delete made;  // another caller installed one first (only the fiber itself asks, but be safe)
    }
  }
  return s->get_token();
}

void cancel_ring_op_here(carrier* on, fiber_control* f) noexcept {
  const uint32_t old = take_hook(f, 0);
  const cancel_hook h = f->hook.load();
  if ((old & kCancelHookSet) != 0 && h.kind == cancel_hook::ring_op && h.ring == on) {
    on->io().cancel(reinterpret_cast<uint64_t>(h.op), nullptr);
  }
  release_hook(f);
  release_ref(f);
}

}  // namespace bobbin::internal
