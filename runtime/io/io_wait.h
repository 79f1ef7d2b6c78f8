// Not part of the bobbin API.
//
// Parking a fiber on one io_uring operation: prepare an SQE on the current
// carrier's ring, park, and resume with the completion's result. This is
// the only way fibers wait on the kernel.
#ifndef BOBBIN_RUNTIME_IO_IO_WAIT_H_
#define BOBBIN_RUNTIME_IO_IO_WAIT_H_

#include <linux/time_types.h>

#include <cerrno>

#include "bobbin/deadline.h"
#include "bobbin/wait_reason.h"
#include "runtime/fiber/cancel.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/io/ring.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"
#include "runtime/util/deadline_time.h"

namespace bobbin::internal {

struct io_wait {
  completion c{&on_complete};
  fiber_control* fiber = nullptr;
  carrier* home = nullptr;  // set: resume on this carrier only (push_bound)
  bool run_first = false;   // a sleep: resume ahead of the queue (carrier::ready_from_timer)
  int res = 0;
  uint32_t flags = 0;

  static void on_complete(completion* c, int res, uint32_t flags) {
    auto* w = reinterpret_cast<io_wait*>(c);
    w->res = res;
    w->flags = flags;
    // Completions run on the ring's own carrier (`home` when set), inside
    // its poll_io(), which wakes an idle carrier once for the whole batch.
    if (w->home != nullptr) w->home->push_bound(w->fiber, w->run_first);
    else if (w->run_first) current_carrier()->ready_from_timer(w->fiber);
    else current_carrier()->ready_from_completion(w->fiber);
  }
};

// Runs `prep(sqe)` on the calling fiber's carrier ring, linking a timeout
// for `d` when it has one, parks until the operation completes, and returns
// its result (-errno on failure). A deadline that passes turns the result
// into -ETIMEDOUT; a cancellation of the fiber (runtime/fiber/cancel.h),
// before or during the operation, into -ECANCELED. Must be called on a
// fiber. With `stay_on_carrier` the fiber resumes on `c` itself
// (carrier::push_bound). With `run_first` (a sleep) it runs ahead of the
// fibers queued on its carrier when it completes (carrier::ready_from_timer).
template <class Prep>
int await_sqe(carrier* c, Prep&& prep, wait_reason reason, deadline d, bool stay_on_carrier = false,
              bool run_first = false) {
  fiber_control* self = c->current();
  if (cancel_requested(self)) return -ECANCELED;
  io_wait w;
  w.fiber = self;
  if (stay_on_carrier) w.home = c;
  w.run_first = run_first;
  __kernel_timespec ts{};
  if (!d.is_never()) {
    if (d.expired()) return -ETIMEDOUT;
    c->io().reserve_sqes(2);  // the op and its link timeout must be submitted together
  }
  io_uring_sqe* sqe = c->io().get_sqe();
  prep(sqe);
  io_uring_sqe_set_data(sqe, &w.c);
  if (!d.is_never()) {
    sqe->flags |= IOSQE_IO_LINK;
    ts = monotonic_timespec(d);
    io_uring_sqe* t = c->io().get_sqe();
    io_uring_prep_link_timeout(t, &ts, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(t, 0);
  }
  const bool hooked = publish_cancel_hook(self, {cancel_hook::ring_op, nullptr, nullptr, c, &w.c});
  if (!hooked) {
    // Cancelled since the check above: nobody else will cancel the
    // operation just prepared, so cancel it here (same ring, in order).
    io_uring_sqe* cancel = c->io().get_sqe();
    io_uring_prep_cancel64(cancel, reinterpret_cast<uint64_t>(&w.c), 0);
    io_uring_sqe_set_data64(cancel, 0);
  }
  self->reason.store(reason, std::memory_order_relaxed);
  self->parked_at_ms.store(c->clock_ms(), std::memory_order_relaxed);
  self->state.store(fiber_state::parked, std::memory_order_relaxed);
  switch_action a{&self->ctx, switch_action::none, self, nullptr};
  c->switch_away(self, &a, /*via_scheduler=*/stay_on_carrier);
  if (hooked) withdraw_cancel_hook(self);
  if (w.res == -ECANCELED || w.res == -EINTR) {
    if (cancel_requested(self)) return -ECANCELED;
    if (!d.is_never() && d.expired()) return -ETIMEDOUT;
  }
  return w.res;
}

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_IO_IO_WAIT_H_
