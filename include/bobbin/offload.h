// bobbin/offload.h
//
// Running work that cannot park (CPU-heavy computation, a third-party
// library's blocking call) without holding a carrier: offload() runs it on
// the runtime's blocking pool, a bounded set of OS threads, and parks the
// calling fiber until it is done. The analog of tokio's spawn_blocking and
// Python's run_in_executor.
//
//   std::string digest = bobbin::offload([&] { return sha256(big_buffer); });
//   addrinfo* ai = bobbin::offload([&] { getaddrinfo("localhost", "80", &hints, &res); return res; });
//
// Returns fn's result or rethrows its exception.
// Cancellation (fiber::request_stop): a call no pool thread has started yet
// is taken back and never runs, and offload() throws
// std::system_error(operation_canceled); a call already running is not
// interrupted (it may use the caller's stack), and offload() returns its
// result when it ends.
// Blocks: parks the calling fiber; its carrier runs other fibers meanwhile.
// From a plain thread with no runtime, bobbin::offload(fn) just calls fn
// (the thread may block); runtime::offload(fn) uses that runtime's pool and
// blocks the calling thread.
// Bounds: at most runtime_options::offload_threads threads run offloaded
// calls at once; threads are started on demand and leave after 10 s idle.
// When all are busy, calls queue in FIFO order (unbounded queue: the callers
// are parked fibers, which are cheap).
// Shutdown: runtime shutdown waits for calls already running on the pool to
// return (their fibers are then abandoned with the runtime) and drops queued
// calls that have not started.
// Cost: one queue push and one wake of a pool thread (a futex) per call.
#ifndef BOBBIN_OFFLOAD_H_
#define BOBBIN_OFFLOAD_H_

#include <exception>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>

#include "bobbin/config.h"
#include "bobbin/internal/park.h"

namespace bobbin {
namespace internal {

class runtime_impl;

// One offloaded call. The pool runs run() on a pool thread, then completes
// the waiter.
class offload_task {
 public:
  virtual void run() noexcept = 0;
  offload_task* next = nullptr;
  spin_lock lock;
  waiter_list waiters;
  bool done = false;

 protected:
  ~offload_task() = default;
};

// Runs `t` on `rt`'s pool (null: the calling fiber's runtime; inline if the
// caller is a plain thread) and returns true when it has run; false if the
// calling fiber was cancelled before a pool thread started it (it never
// runs then).
BOBBIN_API bool offload_and_wait(runtime_impl* rt, offload_task* t);

template <class F>
auto offload_on(runtime_impl* rt, F&& fn) -> std::invoke_result_t<F&> {
  using R = std::invoke_result_t<F&>;
  struct task final : offload_task {
    explicit task(F& f) : fn(f) {}
    void run() noexcept override {
      try {
        if constexpr (std::is_void_v<R>) fn();
        else value.emplace(fn());
      } catch (...) {
        error = std::current_exception();
      }
    }
    F& fn;
    std::optional<std::conditional_t<std::is_void_v<R>, char, R>> value;
    std::exception_ptr error;
  } t(fn);
  if (!offload_and_wait(rt, &t)) {
    throw std::system_error(std::make_error_code(std::errc::operation_canceled),
                            "bobbin::offload: the fiber was cancelled before the call started");
  }
  if (t.error) std::rethrow_exception(t.error);
  if constexpr (!std::is_void_v<R>) return std::move(*t.value);
}

}  // namespace internal

template <class F>
auto offload(F&& fn) -> std::invoke_result_t<F&> {
  return internal::offload_on(nullptr, fn);
}

}  // namespace bobbin

#endif  // BOBBIN_OFFLOAD_H_
