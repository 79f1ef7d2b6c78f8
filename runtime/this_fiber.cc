#include "bobbin/this_fiber.h"

#include <thread>

#include "runtime/io/io_wait.h"
#include "runtime/sched/carrier.h"
#include "runtime/util/deadline_time.h"

namespace bobbin::this_fiber {

using internal::carrier;
using internal::current_carrier;

bool is_fiber() noexcept {
  carrier* c = current_carrier();
  return c != nullptr && c->current() != nullptr;
}

uint64_t id() noexcept {
  carrier* c = current_carrier();
  return c != nullptr && c->current() != nullptr ? c->current()->id : 0;
}

std::string_view name() noexcept {
  carrier* c = current_carrier();
  return c != nullptr && c->current() != nullptr ? std::string_view(c->current()->name) : std::string_view();
}

int carrier_index() noexcept {
  carrier* c = current_carrier();
  return c != nullptr && c->current() != nullptr ? static_cast<int>(c->index()) : -1;
}

void yield() noexcept {
  carrier* c = internal::current_fiber_carrier();
  if (c == nullptr) {  // a plain thread, or a pinned fiber
    std::this_thread::yield();
    return;
  }
  internal::fiber_control* self = c->current();
  self->reason.store(wait_reason::yield, std::memory_order_relaxed);
  // A yield says "let others run". When others wait here while a carrier
  // sleeps, go to the global queue and wake that carrier (as Go's Gosched
  // goes to the global queue), so fibers that compute and yield spread
  // over the carriers, which otherwise wake only for long or old queues
  // (carrier::wants_help). Otherwise stay, behind this carrier's queue.
  const bool share = c->has_local_work() && self->rt->num_idle.load(std::memory_order_relaxed) > 0;
  internal::switch_action a{&self->ctx, share ? internal::switch_action::requeue_shared : internal::switch_action::requeue,
                            self, nullptr};
  c->switch_away(self, &a);
}

bool stop_requested() noexcept {
  carrier* c = internal::current_carrier();
  return c != nullptr && c->current() != nullptr && internal::cancel_requested(c->current());
}

std::stop_token get_stop_token() {
  carrier* c = internal::current_carrier();
  if (c == nullptr || c->current() == nullptr) return {};
  return internal::stop_token_of(c->current());
}

bool sleep_until(deadline d) noexcept {
  if (d.is_never()) d = deadline(std::chrono::hours(24 * 365 * 100));
  carrier* c = internal::current_fiber_carrier();
  if (c == nullptr) {  // a plain thread, or a pinned fiber: block
    internal::pinned_block_marker marker(wait_reason::sleep);
    std::this_thread::sleep_until(d.time());
    return true;
  }
  if (d.expired()) {
    yield();
    return true;
  }
  __kernel_timespec ts = internal::monotonic_timespec(d);
  // -ETIME is the timeout firing: the normal outcome. The fiber runs next
  // once it fires, not behind the queue (carrier::ready_from_timer).
  return internal::await_sqe(
             c, [&](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, &ts, 0, IORING_TIMEOUT_ABS); },
             wait_reason::sleep, deadline::never(), /*stay_on_carrier=*/false, /*run_first=*/true) != -ECANCELED;
}

}  // namespace bobbin::this_fiber
