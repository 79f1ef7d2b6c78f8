// bobbin/fiber.h
//
// A fiber is a lightweight thread with its own stack, run by bobbin's carrier
// threads. Write plain blocking code in it: when it waits (I/O, sleep, a
// bobbin mutex, a channel) it parks, its carrier runs other fibers, and it
// resumes later, possibly on another carrier.
//
//   bobbin::fiber<int> f = bobbin::spawn([] { return compute(); });
//   int v = f.join();                     // parks this fiber until f ends
//
//   bobbin::spawn([conn = std::move(c)]() mutable { serve(conn); }).detach();
//
// fiber<T> follows std::thread: a handle must be joined or detached before it
// is destroyed (destroying a joinable handle aborts with a message). join()
// returns the fiber's result or rethrows its exception. An exception escaping
// a detached fiber is reported (fiber id, name, what()) and terminates the
// process, as with std::thread, unless the fiber had been cancelled
// (request_stop, its scope, or runtime shutdown): then it just ends the
// fiber, quietly if it is std::system_error(operation_canceled).
//
// Blocks: join() parks the calling fiber; on a plain thread it blocks it.
// Spawn may be called from a fiber (bobbin::spawn) or from any thread
// (runtime::spawn). Cost: one heap allocation (the control block with the
// callable and its result beside it), a pooled stack (warm when one was
// recently freed on this carrier) and a run-queue push; no system call
// unless a carrier is asleep. The callable is moved into the fiber before
// its stack is taken; if no stack can be had, it is destroyed there.
// Errors: when no stack can be had (the runtime's max_fibers reached, or
// mmap failed) spawn() throws std::system_error(resource_unavailable_try_again)
// and try_spawn() returns absl::ResourceExhaustedError; nothing is leaked.
// Ordering: everything before spawn() happens-before the fiber's first
// instruction; everything the fiber did happens-before join() returns.
#ifndef BOBBIN_FIBER_H_
#define BOBBIN_FIBER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <source_location>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>

#include "absl/status/statusor.h"
#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/internal/fiber_body.h"

namespace bobbin {

class scope;

struct fiber_options {
  std::string_view name;      // shown in fiber dumps and pinning reports (copied)
  std::size_t stack_size = 0;  // 0: the runtime's default; rounded up to pages
};

template <class T = void>
class fiber {
 public:
  fiber() noexcept = default;
  fiber(fiber&& o) noexcept : control_(std::exchange(o.control_, nullptr)), body_(std::exchange(o.body_, nullptr)) {}
  fiber& operator=(fiber&& o) noexcept {
    if (control_) internal::fatal("bobbin: fiber handle overwritten while joinable; join() or detach() it first");
    control_ = std::exchange(o.control_, nullptr);
    body_ = std::exchange(o.body_, nullptr);
    return *this;
  }
  fiber(const fiber&) = delete;
  fiber& operator=(const fiber&) = delete;
  ~fiber() {
    if (control_) internal::fatal("bobbin: fiber handle destroyed while joinable; join() or detach() it first");
  }

  bool joinable() const noexcept { return control_ != nullptr; }
  uint64_t id() const noexcept { return control_ ? internal::fiber_id(control_) : 0; }
  std::string_view name() const noexcept { return control_ ? internal::fiber_name(control_) : std::string_view(); }

  // Waits for the fiber to end; returns its result or rethrows its exception.
  T join() {
    if (!control_) internal::fatal("bobbin: join() on a fiber handle that is not joinable");
    internal::join_fiber(control_);
    auto* body = body_;
    internal::fiber_control* c = std::exchange(control_, nullptr);
    body_ = nullptr;
    struct releaser {
      internal::fiber_control* c;
      ~releaser() { internal::release_fiber(c); }
    } release{c};
    if (body->error) std::rethrow_exception(body->error);
    if constexpr (!std::is_void_v<T>) return std::move(*body->value);
  }

  // Waits for the fiber to end without taking its result (join() still
  // must be called, and then returns at once). True once it has ended;
  // false if `d` passed first or the calling fiber was cancelled: the
  // cancellable form of join(), which is not interrupted (it must return
  // the result).
  bool wait_until(deadline d) {
    if (!control_) internal::fatal("bobbin: wait_until() on a fiber handle that is not joinable");
    return internal::wait_fiber(control_, d);
  }
  // Cancels the fiber (the analog of std::jthread::request_stop and Java's
  // Thread.interrupt): the wait it is parked in, if any, returns at once
  // with its "canceled" outcome, and so does every cancellable wait it
  // enters from now on; this_fiber::stop_requested() turns true. The
  // request is sticky and cannot be withdrawn. It asks, it does not force:
  // the fiber ends when its code returns. Which waits are cancellable and
  // what each returns: README, "Cancellation". Any thread or fiber; cost:
  // one atomic operation, plus waking the fiber or one ring message.
  void request_stop() noexcept {
    if (control_) internal::request_fiber_stop(control_);
  }
  // Lets the fiber run on without a handle.
  void detach() {
    if (!control_) internal::fatal("bobbin: detach() on a fiber handle that is not joinable");
    internal::detach_fiber(std::exchange(control_, nullptr));
    body_ = nullptr;
  }

 private:
  template <class F>
  friend absl::StatusOr<fiber<std::invoke_result_t<std::decay_t<F>&>>> try_spawn_on(internal::runtime_impl*, F&&,
                                                                                    const fiber_options&,
                                                                                    const std::source_location&);
  friend class scope;  // takes over its children's handles
  internal::fiber_control* control_ = nullptr;
  internal::result_body<T>* body_ = nullptr;
};

// Internal: spawn on a given runtime (null: the calling fiber's runtime).
template <class F>
absl::StatusOr<fiber<std::invoke_result_t<std::decay_t<F>&>>> try_spawn_on(internal::runtime_impl* rt, F&& fn,
                                                                           const fiber_options& options,
                                                                           const std::source_location& where) {
  using R = std::invoke_result_t<std::decay_t<F>&>;
  using body_type = internal::typed_body<F, R>;
  struct maker_state {
    std::remove_reference_t<F>* fn;
    body_type* made;
  } state{std::addressof(fn), nullptr};
  const internal::body_maker make{sizeof(body_type), alignof(body_type),
                                  [](void* where, void* raw) -> internal::fiber_body* {
                                    auto* s = static_cast<maker_state*>(raw);
                                    s->made = ::new (where) body_type(std::forward<F>(*s->fn));
                                    return s->made;
                                  },
                                  &state};
  internal::fiber_control* control = nullptr;
  absl::Status status = internal::spawn_fiber(rt, make, options, where, &control);
  if (!status.ok()) return status;
  fiber<R> f;
  f.control_ = control;
  f.body_ = state.made;
  return f;
}

// Internal: spawn on `rt` (null: the calling fiber's runtime), throwing
// std::system_error (resource_unavailable_try_again) when no stack can be had.
template <class F>
fiber<std::invoke_result_t<std::decay_t<F>&>> spawn_on(internal::runtime_impl* rt, F&& fn,
                                                       const fiber_options& options,
                                                       const std::source_location& where) {
  auto f = try_spawn_on(rt, std::forward<F>(fn), options, where);
  if (!f.ok()) throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again),
                                       std::string(f.status().message()));
  return std::move(*f);
}

// Starts `fn` on a new fiber of the calling fiber's runtime. Must be called on
// a fiber; from a plain thread use runtime::spawn. Throws std::system_error
// (resource_unavailable_try_again) when no stack can be had.
template <class F>
fiber<std::invoke_result_t<std::decay_t<F>&>> spawn(F&& fn, const fiber_options& options = {},
                                                    std::source_location where = std::source_location::current()) {
  return spawn_on(nullptr, std::forward<F>(fn), options, where);
}

// As spawn(), but reports a stack shortage as absl::ResourceExhaustedError,
// for accept loops that shed load instead of unwinding.
template <class F>
absl::StatusOr<fiber<std::invoke_result_t<std::decay_t<F>&>>> try_spawn(
    F&& fn, const fiber_options& options = {}, std::source_location where = std::source_location::current()) {
  return try_spawn_on(nullptr, std::forward<F>(fn), options, where);
}

}  // namespace bobbin

#endif  // BOBBIN_FIBER_H_
