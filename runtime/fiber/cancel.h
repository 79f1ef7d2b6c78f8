// Not part of the bobbin API.
//
// Cancelling a fiber wherever it waits (the user's rules: README, "Cancellation", and bobbin/fiber.h). A request is sticky: once made, every cancellable wait the fiber
// enters returns at once with its "canceled" outcome.
//
// A parked fiber is interrupted through its cancel hook, which describes
// the one wait it is in:
//   wait_list  a waiter (on the fiber's stack) linked in a primitive's list
//              under `lock`. The canceller moves the waiter from `waiting`
//              to `canceled` (the same compare-and-swap a notifier or a
//              deadline races on, so it is woken exactly once), then takes
//              and drops `lock`: the fiber held that lock from linking the
//              waiter until it was off its stack, so afterwards it can be
//              made runnable. The fiber unlinks itself, as after a timeout.
//   ring_op    an io_uring operation on one carrier's ring. Rings are
//              single-issuer, so the canceller posts the request to that
//              carrier, which re-reads the hook and, if the fiber is still
//              in that operation, submits IORING_OP_ASYNC_CANCEL for it.
//              Re-reading on the ring's own carrier is what keeps a stale
//              request from cancelling someone else's operation at the same
//              address: that carrier reaps the completion, and the fiber
//              withdraws the hook before it can start another operation.
//
// fiber_control::cancel_word holds three bits:
//   kCancelRequested  sticky; set once, by the first canceller.
//   kCancelHookSet    the hook describes the fiber's current wait.
//   kCancelHookBusy   a canceller is reading the hook; the fiber may not
//                     leave its wait (its waiter or operation would go out
//                     of scope under the reader) until it is clear.
// The fiber publishes the hook and the first canceller sets the request
// with read-modify-writes on the same word, so exactly one of them sees the
// other: either the canceller finds the hook, or the fiber finds the
// request and does not park. Cost per cancellable park: two uncontended
// read-modify-writes on a line the fiber owns.
#ifndef BOBBIN_RUNTIME_FIBER_CANCEL_H_
#define BOBBIN_RUNTIME_FIBER_CANCEL_H_

#include <atomic>
#include <cstdint>
#include <stop_token>

#include "runtime/fiber/fiber_control.h"

namespace bobbin::internal {

inline constexpr uint32_t kCancelRequested = 1;
inline constexpr uint32_t kCancelHookSet = 2;
inline constexpr uint32_t kCancelHookBusy = 4;

inline bool cancel_requested(const fiber_control* f) noexcept {
  return (f->cancel_word.load(std::memory_order_acquire) & kCancelRequested) != 0;
}

// Publishes `h` as the wait the fiber is about to park in. False if a
// cancellation was requested first: then nothing is published and the
// caller must not park (or must cancel what it started itself).
inline bool publish_cancel_hook(fiber_control* f, const cancel_hook& h) noexcept {
  f->hook.store(h);
  const uint32_t old = f->cancel_word.fetch_or(kCancelHookSet, std::memory_order_acq_rel);
  if ((old & kCancelRequested) == 0) return true;
  f->cancel_word.fetch_and(~kCancelHookSet, std::memory_order_relaxed);
  // The canceller that set the request saw no hook; it may still hold the
  // busy bit for a moment, and the next publish must not overlap it.
  while (f->cancel_word.load(std::memory_order_acquire) & kCancelHookBusy) __builtin_ia32_pause();
  return false;
}

// Withdraws the hook after the wait, once no canceller reads it.
inline void withdraw_cancel_hook(fiber_control* f) noexcept {
  const uint32_t old = f->cancel_word.fetch_and(~kCancelHookSet, std::memory_order_acq_rel);
  if (old & kCancelHookBusy) {
    while (f->cancel_word.load(std::memory_order_acquire) & kCancelHookBusy) __builtin_ia32_pause();
  }
}

// Requests cancellation of `f` and interrupts the wait it is parked in, if
// any. Any thread or fiber; the caller holds a reference to `f`. Idempotent.
void request_cancel(fiber_control* f) noexcept;

// The std::stop_token that is stopped when `f` is cancelled, for code that
// speaks C++20's cancellation vocabulary (std::stop_callback,
// std::condition_variable_any). The stop_source is made on first use.
std::stop_token stop_token_of(fiber_control* f);

// Cancels the scopes `f` owns (runtime/fiber/scope.cc), and through them
// their children. Called by the first request_cancel of `f`.
void cancel_owned_scopes(fiber_control* f) noexcept;

// On `f`'s hook carrier, for a posted ring-op cancellation: submits the
// ASYNC_CANCEL if `f` is still in an operation on `on`'s ring, then drops
// the reference the request held.
void cancel_ring_op_here(carrier* on, fiber_control* f) noexcept;

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_FIBER_CANCEL_H_
