// A fiber's first and last moments, and the handle operations (join, detach)
// that fiber<T> calls through bobbin/internal/fiber_body.h.
#include <cstddef>
#include <exception>
#include <new>
#include <system_error>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/fiber/cancel.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/fiber/fiber_local.h"
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
  // Before the fiber counts as finished: a joiner sees them destroyed.
  destroy_fiber_locals(self);
  fiber_exit(self);
}

namespace {

// The block: the control block, then the body at the first offset its
// alignment allows. glibc's aligned allocation is slower than malloc, so it
// is used only for a body that needs more than malloc's alignment.
constexpr std::size_t kMallocAlign = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
static_assert(alignof(fiber_control) <= kMallocAlign);

std::size_t body_offset(std::size_t align) {
  return (sizeof(fiber_control) + align - 1) / align * align;
}

void free_block(void* block, std::size_t align) noexcept {
  if (align > kMallocAlign) {
    ::operator delete(block, std::align_val_t(align));
  } else {
    ::operator delete(block);
  }
}

}  // namespace

fiber_control* make_fiber_control(const body_maker& make) {
  const std::size_t align = make.align < alignof(fiber_control) ? alignof(fiber_control) : make.align;
  const std::size_t size = body_offset(align) + make.size;
  void* block = align > kMallocAlign ? ::operator new(size, std::align_val_t(align)) : ::operator new(size);
  fiber_body* body = nullptr;
  try {
    body = make.construct(static_cast<char*>(block) + body_offset(align), make.state);
  } catch (...) {
    free_block(block, align);
    throw;
  }
  auto* f = ::new (block) fiber_control;
  f->body = body;
  f->body_align = align;
  return f;
}

void destroy_fiber_control(fiber_control* f) noexcept {
  free_abandoned_fiber_locals(f);
  fiber_body* body = f->body;
  const std::size_t align = f->body_align;
  f->~fiber_control();
  body->~fiber_body();
  free_block(f, align);
}

void release_ref(fiber_control* f) noexcept {
  if (f->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  // A lock-cycle walk may be reading it (runtime/sync/lock_cycle.cc).
  if (g_track_mutex_holders.load(std::memory_order_relaxed)) wait_out_cycle_walks();
  destroy_fiber_control(f);
}

absl::Status spawn_fiber(runtime_impl* rt, const body_maker& make, const fiber_options& options,
                         const std::source_location& where, fiber_control** out) {
  if (rt == nullptr) {
    carrier* c = current_carrier();
    BOBBIN_CHECK(c != nullptr, "bobbin: bobbin::spawn() called off a fiber; use runtime::spawn() from a thread");
    rt = c->rt();
  }
  return rt->spawn(make, options, where, out);
}

fiber_body* join_fiber(fiber_control* f) {
  carrier* c = current_carrier();
  BOBBIN_CHECK(c == nullptr || c->current() != f, "bobbin: a fiber cannot join itself");
  f->join_lock.lock();
  if (f->finished) {
    f->join_lock.unlock();
    return f->body;
  }
  waiter w;
  w.prepare();
  f->joiners.push_back(&w);
  park(w, f->join_lock, f->joiners, deadline::never(), wait_reason::join, /*cancellable=*/false);
  return f->body;
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
