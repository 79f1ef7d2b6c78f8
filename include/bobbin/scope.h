// bobbin/scope.h
//
// Structured concurrency: a scope owns the fibers spawned into it, and none
// of them outlives it. The analog of Java's StructuredTaskScope, Python's
// asyncio.TaskGroup and Go's errgroup.
//
//   std::string a, b;
//   bobbin::scope s(bobbin::deadline(2s));     // or bobbin::scope s;
//   s.spawn([&] { a = fetch(x); });
//   s.spawn([&] { b = fetch(y); });
//   s.join();                                  // both done; rethrows the first failure
//
//   bobbin::scope::run([&](bobbin::scope& s) { ... s.spawn(...); ... });
//
// Rules:
// - join() waits for every child, including children spawned meanwhile.
// - The first child to end with an exception cancels its siblings
//   (fiber::request_stop: their waits return "canceled"; README,
//   "Cancellation"), and join() rethrows it. Every child's exception is
//   kept, in the order they ended, in exceptions().
// - A deadline: when it passes with children still running, the scope
//   cancels them, and join() throws std::system_error(std::errc::timed_out)
//   unless a child had failed first. A scope created on a fiber of another
//   scope never outlasts that scope's deadline (it inherits the earlier).
// - cancel(), from any fiber or thread, cancels every child, and children
//   spawned later start cancelled. join() then returns normally (unless a
//   child had failed before), with the children's exceptions in
//   exceptions(). Cancelling the fiber that owns the scope cancels the
//   scope the same way, and so on down the tree.
// - Leaving the scope without join() joins the children. If the block is
//   left by an exception, the children are cancelled first (as TaskGroup
//   does). A child failure that join() never reported then terminates the
//   process with a message, as an exception escaping a detached fiber does:
//   an error is never dropped silently.
// - A scope is created and joined on a fiber (its children are fibers of
//   the same runtime).
//
// Cost: one heap allocation per scope, plus a timer fiber for a scope with
// a deadline; a spawn costs what bobbin::spawn does plus a vector push
// under a spin lock. A child leaves the scope's books when it ends, so a
// server's long-lived scope holds only its live connections.
#ifndef BOBBIN_SCOPE_H_
#define BOBBIN_SCOPE_H_

#include <exception>
#include <optional>
#include <source_location>
#include <type_traits>
#include <utility>
#include <vector>

#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/fiber.h"

namespace bobbin {

namespace internal {
struct scope_state;
BOBBIN_API void scope_child_begin(scope_state* s) noexcept;
BOBBIN_API void scope_child_end(scope_state* s, std::exception_ptr failure) noexcept;
}  // namespace internal

class BOBBIN_API scope {
 public:
  scope() : scope(deadline::never()) {}
  explicit scope(deadline d);
  ~scope();
  scope(const scope&) = delete;
  scope& operator=(const scope&) = delete;

  // Runs `body(scope&)` and joins: the one-call form of the rules above.
  template <class F>
  static void run(F&& body, deadline d = deadline::never()) {
    scope s(d);
    std::forward<F>(body)(s);
    s.join();
  }

  // Starts `fn` on a new fiber owned by this scope; its return value, if
  // any, is discarded (capture where results go). Throws std::system_error
  // (resource_unavailable_try_again) when no stack can be had, as spawn().
  template <class F>
  void spawn(F&& fn, const fiber_options& options = {},
             std::source_location where = std::source_location::current()) {
    internal::scope_state* st = state_;
    reserve();
    try {
      auto child = spawn_on(
          nullptr,
          [st, fn = std::optional<std::decay_t<F>>(std::forward<F>(fn))]() mutable {
            internal::scope_child_begin(st);
            std::exception_ptr failure;
            try {
              (void)(*fn)();
            } catch (...) {
              failure = std::current_exception();
            }
            // Destroyed before the child counts as ended: join() returns
            // only after what every child captured is gone.
            fn.reset();
            internal::scope_child_end(st, std::move(failure));
          },
          options, where);
      adopt(std::exchange(child.control_, nullptr));
      child.body_ = nullptr;
    } catch (...) {
      unreserve();
      throw;
    }
  }

  // Waits for every child; then rethrows the first failure, or throws
  // std::system_error(timed_out) if the deadline cancelled the scope.
  // Not interrupted by a cancellation of the calling fiber (which cancels
  // the children instead, so they return soon).
  void join();

  // Cancels every child, now and later. Any thread or fiber; idempotent.
  void cancel() noexcept;
  bool cancelled() const noexcept;
  // The scope's deadline (its own, or an enclosing scope's if earlier).
  deadline until() const noexcept;
  // Every child exception so far, in the order the children ended.
  std::vector<std::exception_ptr> exceptions() const;

 private:
  void reserve();
  void unreserve() noexcept;
  void adopt(internal::fiber_control* child) noexcept;

  internal::scope_state* state_;
  int uncaught_at_start_;
};

}  // namespace bobbin

#endif  // BOBBIN_SCOPE_H_
