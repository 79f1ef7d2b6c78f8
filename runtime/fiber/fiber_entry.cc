// A fiber's first and last moments, and the handle operations (join, detach)
// that fiber<T> calls through bobbin/internal/fiber_body.h.
#include <exception>
#include <system_error>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/fiber/cancel.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"
#include "runtime/sync/lock_cycle.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

std::string describe_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "(not a std::exception)";
  }
}

namespace {

[[noreturn]] void report_uncaught(fiber_control* f) {
  write_stderr(absl::StrCat("bobbin: uncaught exception in detached fiber ", f->id, " \"", f->name,
                            "\": ", describe_exception(f->body->error), "\n"));
  std::terminate();
}

bool is_operation_canceled(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::system_error& ex) {
    return ex.code() == std::errc::operation_canceled;
  } catch (...) {
    return false;
  }
}

// An exception escaping a detached fiber. Once the fiber was cancelled
// (request_stop, its scope, or shutdown) an exception is how much code
// leaves (`.value()` on an operation_canceled result throws), so it ends
// the fiber rather than the process: an operation_canceled error quietly,
// anything else with a line on stderr. Otherwise it terminates, as an
// exception escaping a std::thread does.
void report_detached_failure(fiber_control* f) {
  if (!cancel_requested(f)) report_uncaught(f);
  if (is_operation_canceled(f->body->error)) return;
  write_stderr(absl::StrCat("bobbin: detached fiber ", f->id, " \"", f->name,
                            "\" ended by an exception after it was cancelled: ", describe_exception(f->body->error), "\n"));
}

// Marks the fiber finished and wakes its joiners. A function of its own so
// that its locals are destroyed: fiber_exit() never returns, so nothing on
// its frame is ever destroyed.
bool finish_and_wake_joiners(fiber_control* f) {
  f->state.store(fiber_state::done, std::memory_order_relaxed);
  f->join_lock.lock();
  f->finished = true;
  const bool detached = f->detached;
  std::vector<waiter*> woken;
  claim_all(f->joiners, 0, woken);
  f->join_lock.unlock();
  notify_all(woken);
  return detached;
}

[[noreturn]] void fiber_exit(fiber_control* f) {
  // Leave the registry (and the alive count) before joiners wake, so that a
  // joiner sees the count without this fiber.
  f->rt->fiber_exited(f);
  if (g_track_mutex_holders.load(std::memory_order_relaxed)) fiber_exited_holding(f);
  if (finish_and_wake_joiners(f) && f->body->error) report_detached_failure(f);

  switch_action a{&f->ctx, switch_action::exit, f, nullptr};
  current_carrier()->switch_away(f, &a);
  fatal("bobbin: a finished fiber was resumed");
}

}  // namespace

void fiber_entry(ctx::transfer_t t) noexcept {
  finish_first_switch();
  complete_switch(t);
  fiber_control* self = current_carrier()->current();
  self->started.store(true, std::memory_order_relaxed);
  try {
    self->body->run();
  } catch (...) {
    self->body->error = std::current_exception();
  }
  fiber_exit(self);
}

void release_ref(fiber_control* f) noexcept {
  if (f->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // A lock-cycle walk may be reading it (runtime/sync/lock_cycle.cc).
  if (g_track_mutex_holders.load(std::memory_order_relaxed)) wait_out_cycle_walks();
  delete f;
}

absl::Status spawn_fiber(runtime_impl* rt, std::unique_ptr<fiber_body> body, const fiber_options& options,
                         const std::source_location& where, fiber_control** out) {
  if (rt == nullptr) {
    carrier* c = current_carrier();
    BOBBIN_CHECK(c != nullptr, "bobbin: bobbin::spawn() called off a fiber; use runtime::spawn() from a thread");
    rt = c->rt();
  }
  return rt->spawn(std::move(body), options, where, out);
}

fiber_body* join_fiber(fiber_control* f) {
  carrier* c = current_carrier();
  BOBBIN_CHECK(c == nullptr || c->current() != f, "bobbin: a fiber cannot join itself");
  f->join_lock.lock();
  if (f->finished) {
    f->join_lock.unlock();
    return f->body.get();
  }
  waiter w;
  w.prepare();
  f->joiners.push_back(&w);
  park(w, f->join_lock, f->joiners, deadline::never(), wait_reason::join, /*cancellable=*/false);
  return f->body.get();
}

bool wait_fiber(fiber_control* f, deadline d) {
  f->join_lock.lock();
  if (f->finished) {
    f->join_lock.unlock();
    return true;
  }
  if (d.expired()) {
    f->join_lock.unlock();
    return false;
  }
  waiter w;
  w.prepare();
  f->joiners.push_back(&w);
  return park(w, f->join_lock, f->joiners, d, wait_reason::join) == wait_state::notified;
}

void detach_fiber(fiber_control* f) {
  f->join_lock.lock();
  f->detached = true;
  const bool report = f->finished && f->body->error;
  f->join_lock.unlock();
  if (report) report_detached_failure(f);
  release_ref(f);
}

void release_fiber(fiber_control* f) { release_ref(f); }
void request_fiber_stop(fiber_control* f) noexcept { request_cancel(f); }
uint64_t fiber_id(const fiber_control* f) noexcept { return f->id; }
std::string_view fiber_name(const fiber_control* f) noexcept { return f->name; }

}  // namespace bobbin::internal
